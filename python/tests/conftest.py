"""A real ipcq broker on a temporary socket for each test, and the ipcq command line."""

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

import ipcq

ROOT = pathlib.Path(__file__).resolve().parents[2]


def program(name):
    """A program of this repository's build: `cargo build` puts them in target/."""
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / name
        if path.exists():
            return str(path)
    pytest.fail(f"{name} is not built: run `cargo build` at the repository's root first")


class Broker:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addr = os.path.join(self.dir.name, "ipcq.sock")
        self.process = subprocess.Popen(
            [program("ipcq-broker"), "--addr", self.addr],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The broker logs this line once it listens.
        for line in self.process.stderr:
            if "broker listening" in line:
                break
        else:
            pytest.fail("the broker did not start")

    def cli(self, *args, input=None):
        return subprocess.run(
            [program("ipcq"), "--addr", self.addr, *args],
            input=input,
            capture_output=True,
            timeout=60,
        )

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.dir.cleanup()


@pytest.fixture
def broker():
    broker = Broker()
    os.environ["IPCQ_ADDR"] = broker.addr
    ipcq.connect(broker.addr)
    yield broker
    broker.stop()
