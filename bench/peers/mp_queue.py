"""Python multiprocessing.Queue, the peer ipcq is measured against.

    python3 mp_queue.py throughput ITEMS SIZE PRODUCERS CONSUMERS
    python3 mp_queue.py pingpong ROUNDS SIZE

Prints one JSON object: items/s for throughput, latency percentiles in microseconds for
ping-pong. Producers and consumers are separate processes, as in ipcq's benchmark.
"""

import json
import multiprocessing as mp
import sys
import time

from timing import round_trips


def produce(q, count, size, start):
    item = b"x" * size
    start.wait()
    for _ in range(count):
        q.put(item)


def consume(q, count, done):
    for _ in range(count):
        q.get()
    done.put(time.perf_counter())


def throughput(items, size, producers, consumers):
    q = mp.Queue(1000)
    done = mp.Queue()
    start = mp.Event()
    per_producer = items // producers
    per_consumer = items // consumers
    items = per_producer * producers
    assert per_consumer * consumers == items, "items must divide evenly"
    procs = [mp.Process(target=produce, args=(q, per_producer, size, start)) for _ in range(producers)]
    procs += [mp.Process(target=consume, args=(q, per_consumer, done)) for _ in range(consumers)]
    for p in procs:
        p.start()
    t0 = time.perf_counter()
    start.set()
    end = max(done.get() for _ in range(consumers))
    for p in procs:
        p.join()
    return {"items": items, "seconds": end - t0, "items_per_sec": items / (end - t0)}


def echo(inbox, outbox, rounds):
    for _ in range(rounds):
        outbox.put(inbox.get())


def pingpong(rounds, size):
    ping, pong = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo, args=(ping, pong, rounds))
    p.start()
    item = b"x" * size
    figures = round_trips(rounds, lambda: (ping.put(item), pong.get()))
    p.join()
    return figures


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "throughput":
        items, size, producers, consumers = map(int, sys.argv[2:6])
        print(json.dumps(throughput(items, size, producers, consumers)))
    elif mode == "pingpong":
        rounds, size = map(int, sys.argv[2:4])
        print(json.dumps(pingpong(rounds, size)))
    else:
        sys.exit(f"unknown mode {mode}")
