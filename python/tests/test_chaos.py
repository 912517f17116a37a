"""Consumer processes SIGKILLed at random while 100,000 items go through a bounded queue:
nothing lost, nothing duplicated.

A consumer prints each item right after `get` returned it. One killed between the two had
that item in its hands, which the broker rightly counts as taken: at most one per kill.
Everything else the broker held for it (prefetched, in flight, a parked get) comes back
and is received by someone else."""

import os
import random
import signal
import subprocess
import sys
import threading

import ipcq

ITEMS = 100_000
CONSUMERS = 4


def consumer(addr):
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ipcq, sys\n"
            f"ipcq.connect({addr!r})\n"
            "q = ipcq.Queue('chaos', 64)\n"
            "out = sys.stdout\n"
            "while True:\n"
            "    try:\n"
            "        item = q.get()\n"
            "    except ipcq.ShutDown:\n"
            "        break\n"
            "    out.write(f'{item}\\n')\n"
            "    out.flush()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def collect(process, lines):
    lines.extend(line.strip() for line in process.stdout)


def test_killed_consumers_lose_nothing_and_duplicate_nothing(broker):
    rng = random.Random(int(os.environ.get("IPCQ_CHAOS_SEED", "20261129")))
    q = ipcq.Queue("chaos", 64)
    producer = threading.Thread(target=lambda: q.put_many(range(ITEMS)))
    running, readers, lines = [], [], []

    def start():
        process = consumer(broker.addr)
        reader = threading.Thread(target=collect, args=(process, lines))
        reader.start()
        running.append(process)
        readers.append(reader)

    for _ in range(CONSUMERS):
        start()
    producer.start()
    kills = 0
    while producer.is_alive() or (q.qsize() > 0 and kills < 15):
        producer.join(rng.uniform(0.01, 0.04))
        victim = running.pop(rng.randrange(len(running)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        start()
    producer.join()
    q.close()
    for process in running:
        assert process.wait(timeout=60) == 0
    for reader in readers:
        reader.join(timeout=60)

    got = [int(line) for line in lines if line]
    assert len(got) == len(set(got)), "an item was received twice"
    missing = set(range(ITEMS)) - set(got)
    # Only items a killed consumer had in hand: at most one per kill.
    assert len(missing) <= kills, f"{len(missing)} missing after {kills} kills"
    print(f"{ITEMS} items, {kills} consumers killed, {len(missing)} in a killed consumer's hands")
    assert kills >= 5, "too few kills for the run to mean much"
    stats = broker.cli("stats", "--json").stdout.decode()
    assert '"in_flight":0' in stats.replace(" ", "")
