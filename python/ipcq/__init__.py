"""ipcq for Python: ``multiprocessing``'s queues, locks, semaphores, events and barriers,
held by an ipcq broker, so that processes that did not fork from one another meet by name.

Start a broker (``ipcq-broker``), then in any number of processes::

    import ipcq

    jobs = ipcq.JoinableQueue("jobs", maxsize=100)
    jobs.put({"id": 7})           # pickled, as multiprocessing does
    job = jobs.get(timeout=5)     # raises queue.Empty if nothing came
    jobs.task_done()

Objects are found by name at the broker given by ``ipcq.connect(addr)``, else the
``IPCQ_ADDR`` environment variable, else the default address where ``ipcq-broker``
listens. Each process has one connection, opened on first use and opened again in a child
after ``fork``; handles can be passed to ``multiprocessing.Process`` under fork and spawn
(they are pickled as their name and address). A process that dies gives back what it held:
its locks and permits, and the items it had fetched but not yet handed out.
"""

from __future__ import annotations

import os
import pickle
import queue as _queue
import threading
import weakref
from typing import Any, Callable, Iterable, List, Optional

from . import _native
from ._native import BrokerGone, IpcqError

__all__ = [
    "connect",
    "Queue",
    "JoinableQueue",
    "Lock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
    "Delivery",
    "Pipe",
    "PipeConnection",
    "ShutDown",
    "IpcqError",
    "BrokerGone",
    "remove",
]

#: Raised by ``put`` on a closed queue, and by ``get`` on a closed queue once it is
#: drained: ``queue.ShutDown`` on Python 3.13 and later.
ShutDown = getattr(_queue, "ShutDown", None)
if ShutDown is None:

    class ShutDown(Exception):  # type: ignore[no-redef]
        """The queue was closed (``queue.ShutDown`` from Python 3.13 on)."""


_state = threading.Lock()
_addr: Optional[str] = None
_connection: Optional[_native.Connection] = None
_connection_pid: Optional[int] = None


def connect(addr: Optional[str] = None) -> None:
    """Use the broker at ``addr`` (a socket path) from now on in this process, instead of
    ``IPCQ_ADDR`` or the default address. Connects now, so that a missing broker shows
    here: raises ``BrokerGone`` with what to do."""
    global _addr, _connection, _connection_pid
    with _state:
        _addr = addr
        _connection = None
        _connection_pid = None
    _conn()


#: Every handle and delivery of this process, so that a forked child can set aside what it
#: inherited.
_live: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child shares its parent's socket. What it inherited is set aside for good
    (never used: the child opens its own connection on first use; never dropped: that
    would write on the parent's connection), and its copy of the socket is closed."""
    global _connection, _connection_pid, _state
    _state = threading.Lock()
    for obj in list(_live):
        inherited = obj._forget()
        if inherited is not None:
            _native.keep(inherited)
    if _connection is not None:
        fd = _connection.fileno()
        _native.keep(_connection)
        _connection = None
        _connection_pid = None
        try:
            if fd is not None:
                os.close(fd)
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _conn() -> _native.Connection:
    """This process's connection, opened on first use and after a fork."""
    global _connection, _connection_pid
    pid = os.getpid()
    with _state:
        if _connection is None or _connection_pid != pid:
            _connection = _native.Connection(_addr)
            _connection_pid = pid
        return _connection


class _Handle:
    """What every handle shares: it opens its object in the current process's connection
    on first use (again after a fork), and pickles as its name and parameters."""

    def __init__(self) -> None:
        self._opened: Any = None
        self._opened_pid: Optional[int] = None
        self._addr = _addr
        _live.add(self)

    def _forget(self) -> Any:
        """Lets go of the object opened in the parent (after a fork); returns it."""
        opened, self._opened = self._opened, None
        return opened

    def _open(self, connection: _native.Connection) -> Any:
        raise NotImplementedError

    @property
    def _h(self) -> Any:
        pid = os.getpid()
        if self._opened is None or self._opened_pid != pid:
            self._opened = self._open(_conn())
            self._opened_pid = pid
        return self._opened

    def _args(self) -> tuple:
        raise NotImplementedError

    def __reduce__(self):
        return (_rebuild, (type(self), self._addr, self._args()))


def _rebuild(cls, addr, args):
    """A handle in another process: the same object, through this process's connection
    (to the sender's broker, unless this process chose one)."""
    global _addr
    with _state:
        if _addr is None and addr is not None:
            _addr = addr
    return cls(*args)


class Queue(_Handle):
    """A FIFO queue held by the broker, as ``multiprocessing.Queue``: ``maxsize`` items at
    most (0: no limit), shared by every process that opens ``name``.

    Items are pickled (``dumps``/``loads`` to choose another format); with ``raw=True``
    they are ``bytes`` carried untouched, exactly as a Rust ``RawQueue`` and the ``ipcq``
    command line see them.
    """

    def __init__(
        self,
        name: str,
        maxsize: int = 0,
        *,
        raw: bool = False,
        dumps: Callable[[Any], bytes] = pickle.dumps,
        loads: Callable[[bytes], Any] = pickle.loads,
        auto_delete: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.maxsize = maxsize
        self._raw = raw
        self._dumps = dumps
        self._loads = loads
        self._auto_delete = auto_delete
        self._h  # opened now: a missing broker or a conflicting queue shows here

    def _open(self, connection):
        return connection.queue(self.name, self.maxsize, self._auto_delete)

    def _args(self):
        return (self.name, self.maxsize)

    def __reduce__(self):
        kwargs = {"raw": self._raw, "auto_delete": self._auto_delete}
        if self._dumps is not pickle.dumps or self._loads is not pickle.loads:
            kwargs.update(dumps=self._dumps, loads=self._loads)
        return (_rebuild_queue, (type(self), self._addr, self.name, self.maxsize, kwargs))

    def _encode(self, obj: Any) -> bytes:
        if self._raw:
            return bytes(obj)
        return self._dumps(obj)

    def _decode(self, data: bytes) -> Any:
        return data if self._raw else self._loads(data)

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``obj``, waiting while the queue is full (at most ``timeout`` seconds; not
        at all if not ``block``). Raises ``queue.Full`` if there was no room in time,
        ``ShutDown`` if the queue is closed."""
        data = self._encode(obj)
        try:
            self._h.put(data, _timeout(block, timeout))
        except _native.Full:
            raise _queue.Full from None
        except _native.Closed:
            raise ShutDown from None

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, block=False)``."""
        self.put(obj, block=False)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Takes the item at the head, waiting while the queue is empty (at most
        ``timeout`` seconds; not at all if not ``block``). Raises ``queue.Empty`` if none
        came in time, ``ShutDown`` once the queue is closed and drained."""
        try:
            data = self._h.get(_timeout(block, timeout))
        except _native.Empty:
            raise _queue.Empty from None
        except _native.Closed:
            raise ShutDown from None
        return self._decode(data)

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def put_many(self, objs: Iterable[Any]) -> None:
        """Puts every item, in order, in as few writes as the broker's room allows."""
        try:
            self._h.put_many([self._encode(obj) for obj in objs])
        except _native.Closed:
            raise ShutDown from None

    def get_many(self, max_items: int, block: bool = True, timeout: Optional[float] = None) -> List[Any]:
        """Takes between 1 and ``max_items`` items in one round trip, waiting for the first
        as ``get`` does."""
        try:
            items = self._h.get_many(max_items, _timeout(block, timeout))
        except _native.Empty:
            raise _queue.Empty from None
        except _native.Closed:
            raise ShutDown from None
        return [self._decode(item) for item in items]

    def get_delivery(self, block: bool = True, timeout: Optional[float] = None) -> "Delivery":
        """Takes the item at the head as a ``Delivery``: it stays this process's (counted
        in ``qsize``) until it is acknowledged, and goes back to the head of the queue if
        it is rejected, dropped, or if this process dies first. Used as a context manager,
        it is acknowledged when the block ends normally and rejected when it raises::

            with jobs.get_delivery() as job:
                work(job)

        Waits as ``get`` does. An item that does not unpickle goes to the queue's
        dead-letter queue (or back to its head), and the error is raised."""
        try:
            native = self._h.get_delivery(_timeout(block, timeout))
        except _native.Empty:
            raise _queue.Empty from None
        except _native.Closed:
            raise ShutDown from None
        try:
            item = self._decode(native.item)
        except Exception:
            native.dead_letter()
            raise
        return Delivery(native, item)

    def qsize(self) -> int:
        """Items put and not yet taken: exact, on every platform."""
        return self._h.len()

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self._h.is_full()

    def close(self) -> None:
        """Closes the queue for every process (Python 3.13's ``shutdown``): later ``put``s
        raise ``ShutDown``; ``get`` takes what is left, then raises ``ShutDown``."""
        self._h.close()

    shutdown = close

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, maxsize={self.maxsize})"


class JoinableQueue(Queue):
    """A queue with ``task_done`` and ``join``, as ``multiprocessing.JoinableQueue``."""

    def task_done(self) -> None:
        """Marks one item as processed. Raises ``ValueError`` when called more times than
        items were put."""
        try:
            self._h.task_done()
        except IpcqError as err:
            raise ValueError(str(err)) from None

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until every item put has been marked done (at most ``timeout`` seconds);
        returns whether they all were."""
        return self._h.join(timeout)


class Delivery:
    """An item taken with ``Queue.get_delivery``, held until its work is done."""

    def __init__(self, native: Any, item: Any) -> None:
        self._native = native
        #: The item.
        self.item = item
        _live.add(self)

    def _forget(self) -> Any:
        """After a fork: the parent's delivery, which this process must not answer."""
        native, self._native = self._native, None
        return native

    @property
    def deliveries(self) -> int:
        """How many times the item has been delivered, this time included."""
        return self._native.deliveries

    @property
    def redelivered(self) -> bool:
        """Whether a worker had it before and did not finish it."""
        return self._native.deliveries > 1

    def ack(self) -> None:
        """The work is done: the item leaves the queue, and counts as its ``task_done``."""
        self._native.ack()

    def reject(self) -> None:
        """Back to the head of the queue, for the next getter."""
        self._native.reject()

    def dead_letter(self) -> None:
        """To the queue's dead-letter queue (back to its head if it has none)."""
        self._native.dead_letter()

    def lease(self, seconds: float) -> None:
        """Not answered within ``seconds``, the item goes back to the queue; call again to
        extend."""
        self._native.lease(seconds)

    def __enter__(self) -> Any:
        return self.item

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.ack()
        else:
            self.reject()

    def __repr__(self) -> str:
        return f"Delivery({self.item!r}, deliveries={self.deliveries})"


def _rebuild_queue(cls, addr, name, maxsize, kwargs):
    global _addr
    with _state:
        if _addr is None and addr is not None:
            _addr = addr
    return cls(name, maxsize, **kwargs)


def _timeout(block: bool, timeout: Optional[float]) -> Optional[float]:
    if not block:
        return 0.0
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


class _Acquirable(_Handle):
    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Acquires, waiting as ``block`` and ``timeout`` say; whether it was acquired."""
        return self._h.acquire(block, timeout)

    def release(self) -> None:
        """Releases what this process holds. Raises ``ValueError`` if it holds nothing."""
        try:
            self._h.release()
        except IpcqError as err:
            raise ValueError(str(err)) from None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Lock(_Acquirable):
    """A lock between processes, as ``multiprocessing.Lock``; if its holder dies, the
    broker releases it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._h  # opened now: a missing broker or a conflict shows here

    def _open(self, connection):
        return connection.lock(self.name)

    def _args(self):
        return (self.name,)


class BoundedSemaphore(_Acquirable):
    """A semaphore of ``value`` permits, as ``multiprocessing.BoundedSemaphore``: only a
    holder releases, and a dead holder's permits come back."""

    def __init__(self, name: str, value: int = 1) -> None:
        super().__init__()
        self.name = name
        self.value = value
        self._h  # opened now: a missing broker or a conflict shows here

    def _open(self, connection):
        return connection.semaphore(self.name, self.value)

    def _args(self):
        return (self.name, self.value)


#: ipcq's semaphores are all bounded: a permit is released by the process that holds it.
Semaphore = BoundedSemaphore


class Event(_Handle):
    """An event between processes, as ``multiprocessing.Event``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._h  # opened now: a missing broker or a conflict shows here

    def _open(self, connection):
        return connection.event(self.name)

    def _args(self):
        return (self.name,)

    def set(self) -> None:
        self._h.set()

    def clear(self) -> None:
        self._h.clear()

    def is_set(self) -> bool:
        return self._h.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the flag is set (at most ``timeout`` seconds); whether it is."""
        return self._h.wait(timeout)


class Barrier(_Handle):
    """A barrier for ``parties`` processes, as ``multiprocessing.Barrier``. A party that
    times out, or dies while waiting, breaks it: ``threading.BrokenBarrierError``."""

    def __init__(self, name: str, parties: int) -> None:
        super().__init__()
        self.name = name
        self.parties = parties
        self._h  # opened now: a missing broker or a conflict shows here

    def _open(self, connection):
        return connection.barrier(self.name, self.parties)

    def _args(self):
        return (self.name, self.parties)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits until every party has come; this party's place in arrival order."""
        try:
            return self._h.wait(timeout)
        except _native.Broken as err:
            raise threading.BrokenBarrierError(str(err)) from None

    def reset(self) -> None:
        self._h.reset()


class PipeConnection(_Handle):
    """One end of a pipe, as what ``multiprocessing.Pipe`` returns: ``send``, ``recv``,
    ``poll``, ``close``. The end is held by the first process that uses it; the other end
    receives what was sent, then ``EOFError`` once this end is closed or its process has
    died."""

    def __init__(self, name: str, end: int, duplex: bool = True, maxsize: int = 0) -> None:
        super().__init__()
        if end not in (0, 1):
            raise ValueError("a pipe has ends 0 and 1")
        self.name = name
        self.end = end
        self.duplex = duplex
        self.maxsize = maxsize
        # Opened on first use, so that an end passed to a child is held by the child.

    def _open(self, connection):
        return connection.pipe(self.name, self.end, self.duplex, self.maxsize)

    def _args(self):
        return (self.name, self.end, self.duplex, self.maxsize)

    def send(self, obj: Any) -> None:
        """Sends ``obj`` (pickled), waiting while the other end's buffer is full."""
        self.send_bytes(pickle.dumps(obj))

    def recv(self) -> Any:
        """Receives the next object; ``EOFError`` once the other end is closed and
        everything it sent has been received."""
        return pickle.loads(self.recv_bytes())

    def send_bytes(self, data: bytes) -> None:
        try:
            self._h.send(bytes(data))
        except _native.Closed:
            raise BrokenPipeError(f"pipe {self.name!r} is closed") from None

    def recv_bytes(self) -> bytes:
        try:
            return self._h.recv()
        except _native.Closed:
            raise EOFError from None

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether ``recv`` would return at once, waiting up to ``timeout`` seconds (``None``:
        as long as it takes)."""
        return self._h.poll(timeout)

    def close(self) -> None:
        self._h.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def Pipe(name: str, duplex: bool = True, maxsize: int = 0):
    """The two ends of the pipe ``name``, as ``multiprocessing.Pipe(duplex)``. Each is held by
    the process that first uses it: keep one, pass the other to a child (or open it
    elsewhere with ``PipeConnection(name, end)``). With ``duplex=False``, the first end
    only receives and the second only sends, as in ``multiprocessing``."""
    return PipeConnection(name, 0, duplex, maxsize), PipeConnection(name, 1, duplex, maxsize)


def remove(name: str) -> None:
    """Removes the object ``name`` from the broker."""
    _conn().remove(name)
