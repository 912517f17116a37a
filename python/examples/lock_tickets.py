"""Ticket selling under a Lock: ten seller processes, 100 tickets, none sold twice.

    python examples/lock_tickets.py
"""

import multiprocessing
import os

import ipcq

TICKETS, SELLERS = 100, 10


def seller(lock, left, sold):
    while True:
        with lock:
            count = left.get()
            if count > 0:
                sold.put(count)
                count -= 1
            left.put(count)
            if count == 0:
                return


def main():
    run = f"tickets-{os.getpid()}"
    lock = ipcq.Lock(f"{run}.lock")
    left, sold = ipcq.Queue(f"{run}.left", 1), ipcq.Queue(f"{run}.sold")
    left.put(TICKETS)
    sellers = [multiprocessing.Process(target=seller, args=(lock, left, sold)) for _ in range(SELLERS)]
    for process in sellers:
        process.start()
    for process in sellers:
        process.join()
    tickets = sorted(sold.get(timeout=10) for _ in range(TICKETS))
    assert tickets == list(range(1, TICKETS + 1)) and sold.empty(), "a ticket was sold twice"
    print(f"{TICKETS} tickets sold by {SELLERS} sellers, each exactly once")
    for name in (lock.name, left.name, sold.name):
        ipcq.remove(name)


if __name__ == "__main__":
    main()
