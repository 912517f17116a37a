"""ipcq.Queue from Python against multiprocessing.Queue (and faster-fifo, if installed), in
interleaved rounds: every round runs each system once, and the report gives the median of
the per-round ratios with their range, as ipcq-bench does for the Rust client.

    cargo build --release                  # the broker this script starts
    python3 bench/python_queues.py --rounds 5      # after pip install ./python

Workloads (64-byte bytes items, one producer and one consumer process): `1p1c` (one item
per call), `batch64` (put_many/get_many of 64; faster-fifo's get_many), `pingpong` (p50
round trip of one item between two processes).
"""

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 64
#: How long a get may wait (faster-fifo's default is short).
WAIT = 1e6


def broker():
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "ipcq-broker"
        if path.exists():
            break
    else:
        sys.exit("build the broker first: cargo build --release")
    directory = tempfile.mkdtemp()
    addr = os.path.join(directory, "bench.sock")
    log = open(os.path.join(directory, "broker.log"), "w")
    process = subprocess.Popen([str(path), "--addr", addr], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while not os.path.exists(addr):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit("the broker did not start")
        time.sleep(0.01)
    return process, addr


# --- the systems: each makes a queue and gives put/get (and batch) functions ------------


def ipcq_queue(addr, name, maxsize):
    import ipcq

    ipcq.connect(addr)
    return ipcq.Queue(name, maxsize, raw=True)


def make(system, addr, name, maxsize=1000):
    if system == "ipcq":
        return ipcq_queue(addr, name, maxsize)
    if system == "mp":
        return mp.Queue(maxsize)
    if system == "faster-fifo":
        import faster_fifo

        # Bounded in bytes only: room for `maxsize` items (or 1000) and their headers.
        return faster_fifo.Queue(max_size_bytes=max(maxsize, 1000) * 256)
    raise ValueError(system)


def produce(system, addr, name, q, count, batch, start):
    if system == "ipcq":
        q = ipcq_queue(addr, name, 1000)
    item = b"x" * SIZE
    start.wait()
    if batch == 1:
        for _ in range(count):
            q.put(item)
    elif system == "ipcq":
        for _ in range(count // batch):
            q.put_many([item] * batch)
    else:
        for _ in range(count // batch):
            q.put_many([item] * batch)


def consume(system, addr, name, q, count, batch, done):
    if system == "ipcq":
        q = ipcq_queue(addr, name, 1000)
    got = 0
    while got < count:
        if batch == 1:
            q.get(timeout=WAIT)
            got += 1
        elif system == "ipcq":
            got += len(q.get_many(batch, timeout=WAIT))
        else:
            got += len(q.get_many(max_messages_to_get=batch, timeout=WAIT))
    done.put(time.perf_counter())


def throughput(system, addr, items, batch, run):
    name = f"bench-{run}"
    q = make(system, addr, name)
    start, done = mp.Event(), mp.Queue()
    shared = None if system == "ipcq" else q
    procs = [
        mp.Process(target=produce, args=(system, addr, name, shared, items, batch, start)),
        mp.Process(target=consume, args=(system, addr, name, shared, items, batch, done)),
    ]
    for p in procs:
        p.start()
    time.sleep(0.2)  # both processes connected and waiting on `start`
    t0 = time.perf_counter()
    start.set()
    end = done.get()
    for p in procs:
        p.join()
    return items / (end - t0)


def echo(system, addr, name, ping, pong, rounds):
    if system == "ipcq":
        ping, pong = ipcq_queue(addr, name + ".ping", 0), ipcq_queue(addr, name + ".pong", 0)
    for _ in range(rounds):
        pong.put(ping.get(timeout=WAIT))


def pingpong(system, addr, rounds, run):
    name = f"pp-{run}"
    ping, pong = make(system, addr, name + ".ping", 0), make(system, addr, name + ".pong", 0)
    shared = (None, None) if system == "ipcq" else (ping, pong)
    p = mp.Process(target=echo, args=(system, addr, name, *shared, rounds))
    p.start()
    item = b"x" * SIZE
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ping.put(item)
        pong.get(timeout=WAIT)
        samples.append((time.perf_counter() - t0) * 1e6)
    p.join()
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    systems = ["ipcq", "mp"]
    try:
        import faster_fifo  # noqa: F401

        systems.append("faster-fifo")
    except ImportError:
        print("faster-fifo is not installed: measured without it", file=sys.stderr)
    process, addr = broker()
    figures = {}  # (workload, system) -> [one figure per round]
    try:
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            for system in systems:
                print(f"  {system}", file=sys.stderr, flush=True)
                figures.setdefault(("1p1c", system), []).append(
                    throughput(system, addr, args.items, 1, f"{r}-{system}")
                )
                if system != "mp":
                    figures.setdefault(("batch64", system), []).append(
                        throughput(system, addr, args.items * 4, 64, f"{r}-{system}-b")
                    )
                figures.setdefault(("pingpong-p50", system), []).append(
                    pingpong(system, addr, args.round_trips, f"{r}-{system}")
                )
    finally:
        process.kill()
    rows = []
    for (workload, system), values in sorted(figures.items()):
        ours = figures[(workload, "ipcq")]
        if workload == "pingpong-p50":
            ratios = [theirs / mine for mine, theirs in zip(ours, values)]
        else:
            ratios = [mine / theirs for mine, theirs in zip(ours, values)]
        rows.append(
            {
                "workload": workload,
                "system": system,
                "median": statistics.median(values),
                "unit": "µs" if workload == "pingpong-p50" else "items/s",
                "ipcq_ratio_median": statistics.median(ratios),
                "ipcq_ratio_min": min(ratios),
                "ipcq_ratio_max": max(ratios),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"\n{args.rounds} interleaved rounds; 'ipcq is': median of per-round ratios, min - max")
    print(f"{'workload':<14} {'system':<12} {'median':>12} {'unit':<8} {'ipcq is':>8}  min - max")
    for row in rows:
        ratio = "-" if row["system"] == "ipcq" else f"{row['ipcq_ratio_median']:.2f}x"
        spread = "" if row["system"] == "ipcq" else f"{row['ipcq_ratio_min']:.2f} - {row['ipcq_ratio_max']:.2f}"
        print(
            f"{row['workload']:<14} {row['system']:<12} {row['median']:>12.1f} {row['unit']:<8} {ratio:>8}  {spread}"
        )


if __name__ == "__main__":
    main()
