"""What the Python peers report of a ping-pong: percentiles of the round trips."""

import time


def round_trips(rounds, once):
    """Times `once()` `rounds` times; returns p50, p99 and p99.9 in microseconds, as the
    benchmark reads them."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        once()
        samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return {"rounds": rounds, "p50_us": pick(0.5), "p99_us": pick(0.99), "p999_us": pick(0.999)}
