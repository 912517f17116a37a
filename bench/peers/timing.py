"""What the Python peers report of a ping-pong: percentiles of the round trips."""


def round_trips(samples):
    """p50, p99 and p99.9 of `samples` (microseconds), as the benchmark reads them."""
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return {"rounds": len(samples), "p50_us": pick(0.5), "p99_us": pick(0.99), "p999_us": pick(0.999)}
