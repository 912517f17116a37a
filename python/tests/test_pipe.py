"""Pipes, as multiprocessing.Pipe: one end here, the other in a child process."""

import multiprocessing

import pytest

import ipcq


def _echo(end, rounds):
    for _ in range(rounds):
        end.send(end.recv() * 2)
    end.close()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_child_answers_on_its_end_then_closes_it(broker, method):
    mine, theirs = ipcq.Pipe(f"talk-{method}")
    child = multiprocessing.get_context(method).Process(target=_echo, args=(theirs, 10))
    child.start()
    for i in range(10):
        mine.send(i)
        assert mine.poll(timeout=30)
        assert mine.recv() == 2 * i
    child.join(30)
    assert child.exitcode == 0
    # Everything it sent was received; then the end of file.
    with pytest.raises(EOFError):
        mine.recv()


def test_a_simplex_pipe_sends_one_way(broker):
    reader, writer = ipcq.Pipe("oneway", duplex=False)
    writer.send_bytes(b"hello")
    assert reader.recv_bytes() == b"hello"
    assert not reader.poll()
    with pytest.raises(ipcq.IpcqError):
        reader.send("no")
    writer.close()
    with pytest.raises(EOFError):
        reader.recv()
