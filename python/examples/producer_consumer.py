"""Producer/consumer with a None sentinel, as in the multiprocessing tutorial: one
producer process, three consumers, every job done exactly once.

    python examples/producer_consumer.py        # a broker must listen at IPCQ_ADDR
"""

import multiprocessing
import os

import ipcq

JOBS, CONSUMERS = 1000, 3


def consumer(jobs, results):
    while True:
        job = jobs.get()
        if job is None:
            break
        results.put((job, job * job, os.getpid()))


def main():
    run = f"pc-{os.getpid()}"
    jobs, results = ipcq.Queue(f"{run}.jobs", 100), ipcq.Queue(f"{run}.results")
    workers = [
        multiprocessing.Process(target=consumer, args=(jobs, results)) for _ in range(CONSUMERS)
    ]
    for worker in workers:
        worker.start()
    for job in range(JOBS):
        jobs.put(job)
    for _ in workers:
        jobs.put(None)
    done = sorted(results.get(timeout=60) for _ in range(JOBS))
    for worker in workers:
        worker.join()
    assert [job for job, _, _ in done] == list(range(JOBS)), "a job is missing or repeated"
    assert all(square == job * job for job, square, _ in done)
    print(f"{JOBS} jobs done by {len({pid for _, _, pid in done})} consumers, each once")
    ipcq.remove(jobs.name)
    ipcq.remove(results.name)


if __name__ == "__main__":
    main()
