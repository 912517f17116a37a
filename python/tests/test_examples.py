"""The examples, each run as its own program against the test's broker."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "example, says",
    [
        ("producer_consumer.py", "each once"),
        ("lock_tickets.py", "each exactly once"),
        ("semaphore_room.py", "in a room for 4"),
        ("traffic_light.py", "all 5 cars passed"),
        ("worker_pool.py", "all 200 jobs done"),
    ],
)
def test_example(broker, example, says):
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert run.returncode == 0, run.stderr
    assert says in run.stdout
