"""A traffic light with an Event: cars wait for green, then go.

    python examples/traffic_light.py
"""

import multiprocessing
import os

import ipcq

CARS = 5


def car(number, green, passed):
    green.wait()
    passed.put(number)


def main():
    run = f"light-{os.getpid()}"
    green, passed = ipcq.Event(f"{run}.green"), ipcq.Queue(f"{run}.passed")
    cars = [multiprocessing.Process(target=car, args=(n, green, passed)) for n in range(CARS)]
    for process in cars:
        process.start()
    assert passed.empty(), "a car went on red"
    green.set()
    for process in cars:
        process.join()
    assert sorted(passed.get(timeout=10) for _ in range(CARS)) == list(range(CARS))
    print(f"light turned green; all {CARS} cars passed")
    ipcq.remove(green.name)
    ipcq.remove(passed.name)


if __name__ == "__main__":
    main()
