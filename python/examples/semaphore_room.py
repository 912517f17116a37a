"""A KTV room for 4 under a Semaphore: ten guests, never more than four inside.

    python examples/semaphore_room.py
"""

import multiprocessing
import os
import time

import ipcq

GUESTS, SEATS = 10, 4


def guest(room, door, inside, most):
    with room:
        with door:
            count = inside.get() + 1
            inside.put(count)
            most.put(max(most.get(), count))
        time.sleep(0.02)  # singing
        with door:
            inside.put(inside.get() - 1)


def main():
    run = f"ktv-{os.getpid()}"
    room, door = ipcq.Semaphore(f"{run}.room", SEATS), ipcq.Lock(f"{run}.door")
    inside, most = ipcq.Queue(f"{run}.inside", 1), ipcq.Queue(f"{run}.most", 1)
    inside.put(0)
    most.put(0)
    guests = [multiprocessing.Process(target=guest, args=(room, door, inside, most)) for _ in range(GUESTS)]
    for process in guests:
        process.start()
    for process in guests:
        process.join()
    peak = most.get()
    assert 1 <= peak <= SEATS, f"{peak} guests inside at once"
    print(f"{GUESTS} guests sang; at most {peak} at once in a room for {SEATS}")
    for name in (room.name, door.name, inside.name, most.name):
        ipcq.remove(name)


if __name__ == "__main__":
    main()
