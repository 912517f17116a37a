"""A worker pool with a joinable queue and a results queue: the parent joins the job queue,
which returns exactly when every job is done, then collects the results.

    python examples/worker_pool.py
"""

import multiprocessing
import os

import ipcq

JOBS, WORKERS = 200, 4


def worker(jobs, results):
    while True:
        with jobs.get_delivery() as job:  # acknowledged (and task_done) when the block ends
            if job is None:
                return
            results.put((job, sum(range(job))))


def main():
    run = f"pool-{os.getpid()}"
    jobs, results = ipcq.JoinableQueue(f"{run}.jobs", 64), ipcq.Queue(f"{run}.results")
    pool = [multiprocessing.Process(target=worker, args=(jobs, results)) for _ in range(WORKERS)]
    for process in pool:
        process.start()
    for job in range(JOBS):
        jobs.put(job)
    assert jobs.join(timeout=120), "the jobs did not finish"
    answers = dict(results.get(timeout=10) for _ in range(JOBS))
    for _ in pool:
        jobs.put(None)
    for process in pool:
        process.join()
    assert answers == {job: sum(range(job)) for job in range(JOBS)}
    print(f"all {JOBS} jobs done by {WORKERS} workers")
    ipcq.remove(jobs.name)
    ipcq.remove(results.name)


if __name__ == "__main__":
    main()
