//! `ipcq._native`: the blocking Rust client, as the `ipcq` Python package uses it.
//!
//! Items cross as `bytes`; pickling, `queue.Full`/`queue.Empty` and the `multiprocessing`
//! names live in the Python layer (`ipcq/__init__.py`). Every call that may wait releases
//! the GIL and waits in slices of [`SLICE`], checking for signals between them, so that
//! Ctrl-C interrupts it promptly; a slice that runs out loses nothing (the broker keeps the
//! time: an item is either taken or left in the queue).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipcq_client::{
    Barrier, Client, Delivery, End, Error, Event, Lock, PipeOptions, QueueOptions, RawPipeEnd,
    RawQueue, Semaphore,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// How long a wait runs before the GIL is taken back to check for signals.
const SLICE: Duration = Duration::from_millis(50);

create_exception!(_native, IpcqError, PyException, "An ipcq operation failed.");
create_exception!(_native, Full, IpcqError, "No room in the queue.");
create_exception!(_native, Empty, IpcqError, "No item in the queue.");
create_exception!(
    _native,
    Closed,
    IpcqError,
    "The object is closed (a queue: and drained)."
);
create_exception!(_native, Broken, IpcqError, "The barrier is broken.");
create_exception!(
    _native,
    BrokerGone,
    IpcqError,
    "No broker answers, or the connection to it broke."
);

fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::Full => Full::new_err(message),
        Error::Empty => Empty::new_err(message),
        Error::Closed => Closed::new_err(message),
        Error::Broken(_) => Broken::new_err(message),
        Error::NoBroker { .. } | Error::NoAnswer { .. } | Error::BrokerGone(_) => {
            BrokerGone::new_err(message)
        }
        _ => IpcqError::new_err(message),
    }
}

/// Runs `attempt` for slices of at most [`SLICE`] until it gives an answer (`Some`) or
/// `timeout` (seconds; `None`: no limit) has run out, without the GIL, checking for
/// signals between slices. `None` when the time ran out.
fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    attempt: impl Fn(Duration) -> Result<Option<T>, Error> + Sync,
) -> PyResult<Option<T>> {
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    loop {
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE),
            None => SLICE,
        };
        if let Some(value) = py.detach(|| attempt(slice)).map_err(to_py)? {
            return Ok(Some(value));
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// A timed operation's "not yet": `Full` or `Empty` when its slice ran out.
fn not_yet<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::Full | Error::Empty) => Ok(None),
        Err(err) => Err(err),
    }
}

/// One connection to a broker.
#[pyclass(module = "ipcq._native", frozen)]
struct Connection {
    client: Client,
}

#[pymethods]
impl Connection {
    /// Connects to `addr`, or to `IPCQ_ADDR`, or to the default address.
    #[new]
    #[pyo3(signature = (addr=None))]
    fn new(py: Python<'_>, addr: Option<String>) -> PyResult<Self> {
        let addr = addr.unwrap_or_else(ipcq_client::default_addr);
        let client = py.detach(|| Client::connect(&addr)).map_err(to_py)?;
        Ok(Connection { client })
    }

    /// The address connected to.
    #[getter]
    fn addr(&self) -> String {
        self.client.addr().to_owned()
    }

    /// The socket's file descriptor, for a forked child to close its copy (see `keep`).
    fn fileno(&self) -> Option<i32> {
        self.client.socket_fd()
    }

    /// Opens (creating if needed) the queue `name`.
    #[pyo3(signature = (name, capacity=0, auto_delete=false))]
    fn queue(
        &self,
        py: Python<'_>,
        name: &str,
        capacity: usize,
        auto_delete: bool,
    ) -> PyResult<NativeQueue> {
        let options = QueueOptions::new()
            .capacity(capacity)
            .auto_delete(auto_delete);
        let queue = py
            .detach(|| self.client.raw_queue_with(name, options))
            .map_err(to_py)?;
        Ok(NativeQueue { queue })
    }

    /// Opens (creating if needed) the lock `name`.
    fn lock(&self, py: Python<'_>, name: &str) -> PyResult<NativeLock> {
        let lock = py.detach(|| self.client.lock(name)).map_err(to_py)?;
        Ok(NativeLock { lock })
    }

    /// Opens (creating if needed) the semaphore `name` of `permits` permits.
    fn semaphore(&self, py: Python<'_>, name: &str, permits: u64) -> PyResult<NativeSemaphore> {
        let semaphore = py
            .detach(|| self.client.semaphore(name, permits))
            .map_err(to_py)?;
        Ok(NativeSemaphore { semaphore })
    }

    /// Opens (creating if needed) the event `name`.
    fn event(&self, py: Python<'_>, name: &str) -> PyResult<NativeEvent> {
        let event = py.detach(|| self.client.event(name)).map_err(to_py)?;
        Ok(NativeEvent { event })
    }

    /// Opens (creating if needed) the barrier `name` of `parties` parties.
    fn barrier(&self, py: Python<'_>, name: &str, parties: u64) -> PyResult<NativeBarrier> {
        let barrier = py
            .detach(|| self.client.barrier(name, parties))
            .map_err(to_py)?;
        Ok(NativeBarrier { barrier })
    }

    /// Opens end `end` (0 or 1) of the pipe `name`, creating the pipe if need be, and holds
    /// that end for this connection.
    fn pipe(
        &self,
        py: Python<'_>,
        name: &str,
        end: u8,
        duplex: bool,
        capacity: usize,
    ) -> PyResult<NativePipe> {
        let end = if end == 0 { End::Zero } else { End::One };
        let options = PipeOptions::new().duplex(duplex).capacity(capacity);
        let pipe = py
            .detach(|| self.client.raw_pipe(name, end, options))
            .map_err(to_py)?;
        Ok(NativePipe { pipe })
    }

    /// Removes the object `name` from the broker.
    fn remove(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.client.remove(name)).map_err(to_py)
    }
}

/// A queue of raw bytes.
#[pyclass(module = "ipcq._native", frozen)]
struct NativeQueue {
    queue: RawQueue,
}

#[pymethods]
impl NativeQueue {
    /// Puts `item`, waiting at most `timeout` seconds for room (`None`: as long as it
    /// takes; 0: not at all). Raises `Full` when there was no room in time.
    #[pyo3(signature = (item, timeout=None))]
    fn put(&self, py: Python<'_>, item: &[u8], timeout: Option<f64>) -> PyResult<()> {
        if timeout == Some(0.0) {
            return py.detach(|| self.queue.put_nowait(item)).map_err(to_py);
        }
        let put = sliced(py, timeout, |slice| {
            not_yet(self.queue.put_timeout(item, slice))
        })?;
        put.ok_or_else(|| to_py(Error::Full))
    }

    /// Puts every item, in order, waiting for room as needed.
    fn put_many(&self, py: Python<'_>, items: Vec<Vec<u8>>) -> PyResult<()> {
        py.detach(|| self.queue.put_many(&items)).map_err(to_py)
    }

    /// Takes the item at the head, waiting at most `timeout` seconds (as `put`). Raises
    /// `Empty` when none came in time, `Closed` once the queue is closed and drained.
    #[pyo3(signature = (timeout=None))]
    fn get<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let item = if timeout == Some(0.0) {
            py.detach(|| self.queue.get_nowait()).map_err(to_py)?
        } else {
            sliced(py, timeout, |slice| not_yet(self.queue.get_timeout(slice)))?
                .ok_or_else(|| to_py(Error::Empty))?
        };
        Ok(PyBytes::new(py, &item))
    }

    /// Takes between 1 and `max` items, waiting at most `timeout` seconds for the first.
    #[pyo3(signature = (max, timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let items = sliced(py, timeout, |slice| {
            not_yet(self.queue.get_many_timeout(max, slice))
        })?
        .ok_or_else(|| to_py(Error::Empty))?;
        Ok(items.iter().map(|item| PyBytes::new(py, item)).collect())
    }

    /// Takes the item at the head as a delivery, held until it is acknowledged, waiting
    /// as `get` does.
    #[pyo3(signature = (timeout=None))]
    fn get_delivery(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<NativeDelivery> {
        let delivery = if timeout == Some(0.0) {
            py.detach(|| self.queue.get_delivery_nowait())
                .map_err(to_py)?
        } else {
            sliced(py, timeout, |slice| {
                not_yet(self.queue.get_delivery_timeout(slice))
            })?
            .ok_or_else(|| to_py(Error::Empty))?
        };
        Ok(NativeDelivery {
            item: delivery.item().to_vec(),
            deliveries: delivery.deliveries(),
            delivery: Mutex::new(Some(delivery)),
        })
    }

    /// Items put and not yet taken.
    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.queue.len()).map_err(to_py)
    }

    /// Whether a put that needs room now would fail.
    fn is_full(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.queue.is_full()).map_err(to_py)
    }

    /// Closes the queue for everyone.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.queue.close()).map_err(to_py)
    }

    /// One item processed (`JoinableQueue.task_done`).
    fn task_done(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.queue.task_done()).map_err(to_py)
    }

    /// Waits until every item put has been marked done; `False` if `timeout` ran out.
    #[pyo3(signature = (timeout=None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let joined = sliced(py, timeout, |slice| {
            self.queue
                .join_timeout(slice)
                .map(|joined| joined.then_some(()))
        })?;
        Ok(joined.is_some())
    }
}

/// An item held until its work is done (see `ipcq_client::Delivery`). Dropped without an
/// answer, it goes back to the head of its queue.
#[pyclass(module = "ipcq._native", frozen)]
struct NativeDelivery {
    item: Vec<u8>,
    deliveries: u32,
    /// `None` once answered.
    delivery: Mutex<Option<Delivery>>,
}

impl NativeDelivery {
    fn answer(&self, py: Python<'_>, how: fn(Delivery) -> Result<(), Error>) -> PyResult<()> {
        let delivery = self
            .delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match delivery {
            Some(delivery) => py.detach(|| how(delivery)).map_err(to_py),
            None => Err(IpcqError::new_err("this delivery was already answered")),
        }
    }
}

#[pymethods]
impl NativeDelivery {
    /// The item's bytes.
    #[getter]
    fn item<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.item)
    }

    /// How many times it has been delivered, this time included.
    #[getter]
    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Done: it leaves the queue, and counts as its `task_done`.
    fn ack(&self, py: Python<'_>) -> PyResult<()> {
        self.answer(py, Delivery::ack)
    }

    /// Back to the head of the queue.
    fn reject(&self, py: Python<'_>) -> PyResult<()> {
        self.answer(py, Delivery::reject)
    }

    /// To the queue's dead-letter queue (back to the head if it has none).
    fn dead_letter(&self, py: Python<'_>) -> PyResult<()> {
        self.answer(py, Delivery::dead_letter)
    }

    /// Leases it for `seconds` from now, or extends its lease.
    fn lease(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let mut delivery = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        match delivery.as_mut() {
            Some(delivery) => py
                .detach(|| delivery.lease(Duration::from_secs_f64(seconds.max(0.0))))
                .map_err(to_py),
            None => Err(IpcqError::new_err("this delivery was already answered")),
        }
    }
}

/// One end of a pipe.
#[pyclass(module = "ipcq._native", frozen)]
struct NativePipe {
    pipe: RawPipeEnd,
}

#[pymethods]
impl NativePipe {
    /// Sends `item` to the other end, waiting for room as `Queue.put` does.
    #[pyo3(signature = (item, timeout=None))]
    fn send(&self, py: Python<'_>, item: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let sent = sliced(py, timeout, |slice| {
            not_yet(self.pipe.send_timeout(item, slice))
        })?;
        sent.ok_or_else(|| to_py(Error::Full))
    }

    /// Receives the next item, waiting as `Queue.get` does; `Closed` at the end.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let item = sliced(py, timeout, |slice| not_yet(self.pipe.recv_timeout(slice)))?
            .ok_or_else(|| to_py(Error::Empty))?;
        Ok(PyBytes::new(py, &item))
    }

    /// Whether `recv` would return at once, waiting up to `timeout` seconds for that.
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let ready = sliced(py, timeout, |slice| {
            self.pipe.poll(slice).map(|ready| ready.then_some(()))
        })?;
        Ok(ready.is_some())
    }

    /// Closes this end for good.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.pipe.close()).map_err(to_py)
    }
}

/// Waits for a permit of `acquire` in slices; `True` when acquired.
fn acquire_sliced(
    py: Python<'_>,
    block: bool,
    timeout: Option<f64>,
    attempt: impl Fn(Option<Duration>) -> Result<bool, Error> + Sync,
) -> PyResult<bool> {
    if !block {
        return py.detach(|| attempt(None)).map_err(to_py);
    }
    let acquired = sliced(py, timeout, |slice| {
        attempt(Some(slice)).map(|acquired| acquired.then_some(()))
    })?;
    Ok(acquired.is_some())
}

/// A lock held by this connection.
#[pyclass(module = "ipcq._native", frozen)]
struct NativeLock {
    lock: Lock,
}

#[pymethods]
impl NativeLock {
    /// Acquires; `False` if it did not come (not `block`, or `timeout` ran out).
    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        acquire_sliced(py, block, timeout, |slice| {
            let acquired = match slice {
                None => self.lock.try_acquire()?,
                Some(slice) => self.lock.acquire_timeout(slice)?,
            };
            Ok(acquired.is_some())
        })
    }

    /// Releases the lock this connection holds.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.lock.release()).map_err(to_py)
    }
}

/// A bounded semaphore whose permits are held by this connection.
#[pyclass(module = "ipcq._native", frozen)]
struct NativeSemaphore {
    semaphore: Semaphore,
}

#[pymethods]
impl NativeSemaphore {
    /// Takes a permit; `False` if none came.
    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        acquire_sliced(py, block, timeout, |slice| {
            let acquired = match slice {
                None => self.semaphore.try_acquire()?,
                Some(slice) => self.semaphore.acquire_timeout(slice)?,
            };
            Ok(acquired.is_some())
        })
    }

    /// Gives back a permit this connection holds.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.semaphore.release()).map_err(to_py)
    }
}

/// An event.
#[pyclass(module = "ipcq._native", frozen)]
struct NativeEvent {
    event: Event,
}

#[pymethods]
impl NativeEvent {
    fn set(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.event.set()).map_err(to_py)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.event.clear()).map_err(to_py)
    }

    fn is_set(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.event.is_set()).map_err(to_py)
    }

    /// Waits for the flag; whether it is set (`False`: `timeout` ran out).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let set = sliced(py, timeout, |slice| {
            self.event.wait_timeout(slice).map(|set| set.then_some(()))
        })?;
        Ok(set.is_some())
    }
}

/// A barrier.
#[pyclass(module = "ipcq._native", frozen)]
struct NativeBarrier {
    barrier: Barrier,
}

#[pymethods]
impl NativeBarrier {
    /// Waits for every party; this party's place. A timeout breaks the barrier.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u64> {
        match timeout {
            Some(timeout) => py
                .detach(|| {
                    self.barrier
                        .wait_timeout(Duration::from_secs_f64(timeout.max(0.0)))
                })
                .map_err(to_py),
            None => py.detach(|| self.barrier.wait()).map_err(to_py),
        }
    }

    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.barrier.reset()).map_err(to_py)
    }

    #[getter]
    fn parties(&self) -> u64 {
        self.barrier.parties()
    }
}

/// Objects a forked child inherited from its parent: never used, never dropped (dropping
/// one would write on, or read from, the parent's connection). A static is never
/// destroyed, not even at exit.
static KEPT: Mutex<Vec<Py<PyAny>>> = Mutex::new(Vec::new());

/// Keeps `object` alive, untouched, until the process exits.
#[pyfunction]
fn keep(object: Py<PyAny>) {
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(object);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(keep, m)?)?;
    let py = m.py();
    m.add_class::<Connection>()?;
    m.add_class::<NativeQueue>()?;
    m.add_class::<NativeDelivery>()?;
    m.add_class::<NativePipe>()?;
    m.add_class::<NativeLock>()?;
    m.add_class::<NativeSemaphore>()?;
    m.add_class::<NativeEvent>()?;
    m.add_class::<NativeBarrier>()?;
    m.add("IpcqError", py.get_type::<IpcqError>())?;
    m.add("Full", py.get_type::<Full>())?;
    m.add("Empty", py.get_type::<Empty>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    m.add("BrokerGone", py.get_type::<BrokerGone>())?;
    m.add("Broken", py.get_type::<Broken>())?;
    Ok(())
}
