"""Handles passed to multiprocessing children, a client after fork, Ctrl-C, the ipcq
command line and Rust programs on the same queues."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

import ipcq


def _produce(q, start, count):
    for i in range(start, start + count):
        q.put(i)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_handles_pass_to_child_processes(broker, method):
    q = ipcq.Queue(f"numbers-{method}")
    q.qsize()  # the parent's connection is open before a fork
    context = multiprocessing.get_context(method)
    children = [context.Process(target=_produce, args=(q, i * 100, 100)) for i in range(3)]
    for child in children:
        child.start()
    got = sorted(q.get(timeout=30) for _ in range(300))
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert got == list(range(300))


def test_ctrl_c_interrupts_a_blocked_get_and_loses_nothing(broker):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ipcq, sys\n"
            f"ipcq.connect({broker.addr!r})\n"
            "q = ipcq.Queue('waiting')\n"
            "print('ready', flush=True)\n"
            "q.get()\n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    # Blocked in the broker: it shows the waiting get.
    deadline = time.monotonic() + 30
    while b'"getters": 1' not in broker.cli("stats", "--json").stdout.replace(b'":1', b'": 1'):
        assert time.monotonic() < deadline, "the child never waited"
        time.sleep(0.01)
    interrupted = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=5)
    assert "KeyboardInterrupt" in err
    # Within a fraction of a second (waits run in 50 ms slices), interpreter exit included.
    assert time.monotonic() - interrupted < 1.0
    # Nothing was taken on the way out: an item put now is there.
    q = ipcq.Queue("waiting")
    q.put("still here")
    assert q.qsize() == 1
    assert q.get(timeout=5) == "still here"


def test_rust_and_python_share_a_queue_in_bytes_mode(broker):
    q = ipcq.Queue("lines", raw=True)
    for i in range(50):
        assert broker.cli("put", "lines", f"line {i}").returncode == 0
    assert [q.get(timeout=5) for _ in range(50)] == [f"line {i}".encode() for i in range(50)]
    q.put(b"from python")
    out = broker.cli("get", "lines")
    assert out.returncode == 0
    assert out.stdout.strip() == b"from python"
    assert q.qsize() == 0
