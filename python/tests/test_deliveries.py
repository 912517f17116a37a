"""The acknowledging get: a job held until its work is done."""

import pytest

import ipcq


def test_a_delivery_used_as_a_context_manager_is_acknowledged(broker):
    jobs = ipcq.JoinableQueue("jobs")
    jobs.put({"id": 1})
    with jobs.get_delivery() as job:
        assert job == {"id": 1}
        assert jobs.qsize() == 1, "held, not done"
    assert jobs.qsize() == 0
    # The acknowledgement was the job's task_done.
    assert jobs.join(timeout=10)


def test_a_job_that_fails_goes_back_marked_redelivered(broker):
    jobs = ipcq.Queue("jobs")
    jobs.put("flaky")
    with pytest.raises(RuntimeError):
        with jobs.get_delivery():
            raise RuntimeError("the work failed")
    again = jobs.get_delivery(timeout=10)
    assert (again.item, again.deliveries, again.redelivered) == ("flaky", 2, True)
    again.ack()
    with pytest.raises(ipcq.IpcqError):
        again.ack()
    assert jobs.qsize() == 0


def test_an_item_that_does_not_unpickle_is_not_lost(broker):
    jobs = ipcq.Queue("jobs")
    ipcq.Queue("jobs", raw=True).put(b"not a pickle")
    with pytest.raises(Exception):
        jobs.get_delivery()
    # No dead-letter queue: back at the head, for a reader that understands it.
    assert ipcq.Queue("jobs", raw=True).get(timeout=5) == b"not a pickle"
