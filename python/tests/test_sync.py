"""Locks, semaphores, events and barriers between processes."""

import multiprocessing
import threading

import pytest

import ipcq


def test_a_lock_is_a_context_manager_and_not_reentrant(broker):
    lock = ipcq.Lock("lock")
    with lock:
        assert not lock.acquire(block=False)
        assert not lock.acquire(timeout=0.05)
    assert lock.acquire(block=False)
    lock.release()
    with pytest.raises(ValueError):
        lock.release()


def test_a_semaphore_counts_its_permits(broker):
    rooms = ipcq.Semaphore("rooms", 2)
    assert ipcq.Semaphore is ipcq.BoundedSemaphore
    assert rooms.acquire()
    assert rooms.acquire()
    assert not rooms.acquire(block=False)
    rooms.release()
    with rooms:
        assert not rooms.acquire(timeout=0.05)
    rooms.release()
    with pytest.raises(ValueError):
        rooms.release()


def test_an_event(broker):
    light = ipcq.Event("light")
    assert not light.is_set()
    assert not light.wait(timeout=0.05)
    light.set()
    assert light.wait()
    assert light.is_set()
    light.clear()
    assert not light.is_set()


def _party(barrier, places):
    places.put(barrier.wait(timeout=30))


def test_a_barrier_across_processes(broker):
    barrier = ipcq.Barrier("start", 3)
    places = ipcq.Queue("places")
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_party, args=(barrier, places)) for _ in range(2)]
    for child in children:
        child.start()
    mine = barrier.wait(timeout=30)
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert sorted([mine, places.get(timeout=10), places.get(timeout=10)]) == [0, 1, 2]


def test_a_barrier_that_times_out_is_broken(broker):
    barrier = ipcq.Barrier("lonely", 2)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.05)
    barrier.reset()
