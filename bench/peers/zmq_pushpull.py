"""ZeroMQ PUSH/PULL over ipc:// (pyzmq): two processes, no broker between them.

    python3 zmq_pushpull.py throughput ITEMS SIZE
    python3 zmq_pushpull.py pingpong ROUNDS SIZE

One producer process PUSHes ITEMS items of SIZE bytes, one at a time, to one consumer
process that PULLs them (ZeroMQ's default high-water mark, 1000 messages, bounds what is
in between, as ipcq's benchmark queue holds 1000). Ping-pong: a PAIR socket each way.
Prints one JSON object, as mp_queue.py does.
"""

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

import zmq

from timing import round_trips


def produce(endpoint, count, size, start):
    push = zmq.Context().socket(zmq.PUSH)
    push.connect(endpoint)
    item = b"x" * size
    start.wait()
    for _ in range(count):
        push.send(item)
    push.close(linger=-1)


def consume(endpoint, count, ready, done):
    pull = zmq.Context().socket(zmq.PULL)
    pull.bind(endpoint)
    ready.set()
    for _ in range(count):
        pull.recv()
    done.put(time.perf_counter())


def throughput(items, size):
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = "ipc://" + os.path.join(tmp, "push.ipc")
        ready, start, done = mp.Event(), mp.Event(), mp.Queue()
        consumer = mp.Process(target=consume, args=(endpoint, items, ready, done))
        consumer.start()
        ready.wait()
        producer = mp.Process(target=produce, args=(endpoint, items, size, start))
        producer.start()
        t0 = time.perf_counter()
        start.set()
        end = done.get()
        producer.join()
        consumer.join()
    return {"items": items, "seconds": end - t0, "items_per_sec": items / (end - t0)}


def echo(endpoint, rounds, ready):
    pair = zmq.Context().socket(zmq.PAIR)
    pair.bind(endpoint)
    ready.set()
    for _ in range(rounds):
        pair.send(pair.recv())
    pair.close(linger=-1)


def pingpong(rounds, size):
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = "ipc://" + os.path.join(tmp, "pair.ipc")
        ready = mp.Event()
        p = mp.Process(target=echo, args=(endpoint, rounds, ready))
        p.start()
        ready.wait()
        pair = zmq.Context().socket(zmq.PAIR)
        pair.connect(endpoint)
        item = b"x" * size
        figures = round_trips(rounds, lambda: (pair.send(item), pair.recv()))
        p.join()
    return figures


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "throughput":
        items, size = map(int, sys.argv[2:4])
        print(json.dumps(throughput(items, size)))
    elif mode == "pingpong":
        rounds, size = map(int, sys.argv[2:4])
        print(json.dumps(pingpong(rounds, size)))
    else:
        sys.exit(f"unknown mode {mode}")
