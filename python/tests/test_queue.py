"""Queues as multiprocessing users know them, against a real broker."""

import queue
import time

import pytest

import ipcq


def test_items_round_trip_pickled_in_order(broker):
    q = ipcq.Queue("jobs", maxsize=10)
    items = [None, 1, "two", {"three": [3.0]}, (4, b"four")]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items)
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_full_and_empty_are_the_standard_library_exceptions(broker):
    q = ipcq.Queue("small", maxsize=2)
    q.put(1)
    q.put(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.2)
    assert time.monotonic() - start >= 0.15
    assert q.get_nowait() == 1
    assert q.get(block=False) == 2
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_a_closed_queue_drains_then_shuts_down(broker):
    q = ipcq.Queue("closing")
    q.put("last")
    q.close()
    with pytest.raises(ipcq.ShutDown):
        q.put("more")
    assert q.get() == "last"
    with pytest.raises(ipcq.ShutDown):
        q.get()
    if hasattr(queue, "ShutDown"):
        assert ipcq.ShutDown is queue.ShutDown


def test_batches(broker):
    q = ipcq.Queue("batches")
    q.put_many(range(100))
    got = []
    while len(got) < 100:
        got.extend(q.get_many(64))
    assert got == list(range(100))


def test_a_joinable_queue_joins_when_every_item_is_done(broker):
    q = ipcq.JoinableQueue("tasks")
    q.put("a")
    q.put("b")
    assert not q.join(timeout=0.05)
    q.get()
    q.task_done()
    q.get()
    q.task_done()
    assert q.join(timeout=10)
    with pytest.raises(ValueError):
        q.task_done()


def test_bytes_mode_carries_items_untouched(broker):
    q = ipcq.Queue("raw", raw=True)
    q.put(b"\x00\x01binary")
    q.put(bytearray(b"more"))
    assert q.get() == b"\x00\x01binary"
    assert q.get() == b"more"


def test_custom_serialization(broker):
    import json

    q = ipcq.Queue("json", dumps=lambda o: json.dumps(o).encode(), loads=json.loads)
    q.put({"a": 1})
    assert ipcq.Queue("json", raw=True).get() == b'{"a": 1}'
    q.put([1, 2])
    assert q.get() == [1, 2]


def test_no_broker_says_how_to_start_one(broker):
    with pytest.raises(ipcq.BrokerGone, match="ipcq-broker"):
        ipcq.connect(broker.addr + ".nobody-here")
    ipcq.connect(broker.addr)
