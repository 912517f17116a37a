//! The NATS JetStream backend (feature `nats`): what a [`Client`](crate::Client) of a
//! `nats://` address does, on `ipcq-nats`. Each operation is one `async fn`, which the
//! tokio client awaits and the blocking client runs to its end with [`block`], on a
//! runtime of its own.
//!
//! What has no form here — pipes, barriers, selects, leases — fails with
//! [`Error::Unsupported`]; docs/scale-out.md says why.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::{ObjectDetail, ObjectStats, QueueInfo, QueueStats, Wait};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::connect::ConnectOptions;
use crate::core::Settlement;
use crate::delivery::{BoxFuture, Settle};
use crate::inbox::Delivered;
use crate::{Error, QueueOptions, Result};

/// The error for `what`, which NATS queues and clients do not do.
pub(crate) fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!(
        "{what} on NATS (see docs/scale-out.md for what the NATS backend does)"
    ))
}

/// This crate's error for one of `ipcq-nats`.
fn from_nats(err: ipcq_nats::Error) -> Error {
    use ipcq_nats::Error as E;
    match err {
        E::Full(_) => Error::Full,
        E::Empty(_) => Error::Empty,
        E::Closed(_) => Error::Closed,
        E::Conflict(message) => Error::Conflict(message),
        E::NotFound(message) => Error::NotFound(message),
        E::BadName(message) | E::Invalid(message) => Error::Invalid(message),
        other => Error::Nats(other.to_string()),
    }
}

/// The blocking client's runtime for its NATS connections: one per process, one worker
/// thread, started with the first `nats://` connection and never stopped (so that no
/// handle is ever dropped after it).
fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ipcq-nats")
                .enable_all()
                .build()
                .map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| Error::Io(std::io::Error::other(err.clone())))
}

/// Runs `operation` to its end on the blocking client's runtime. Called from inside
/// another runtime (a blocking call in async code), it waits on a thread of its own,
/// since a runtime's thread must not block on another.
pub(crate) fn block<T: Send>(operation: impl Future<Output = Result<T>> + Send) -> Result<T> {
    let runtime = runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(operation);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(operation))
            .join()
            .unwrap_or_else(|_| Err(Error::Nats("a NATS operation panicked".into())))
    })
}

/// How long a `Wait` may wait (`None`: as long as it takes).
fn timeout_of(wait: Wait) -> Option<Duration> {
    match wait {
        Wait::Block => None,
        Wait::NoWait => Some(Duration::ZERO),
        Wait::Micros(micros) => Some(Duration::from_micros(micros)),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which client drives a NATS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// The blocking client: calls run on [`runtime`] through [`block`].
    Blocking,
    /// The tokio client: calls are awaited on the caller's runtime.
    Tokio,
}

/// A client of NATS JetStream; clones share the connection.
#[derive(Clone)]
pub(crate) struct Remote {
    inner: Arc<RemoteInner>,
}

struct RemoteInner {
    connection: ipcq_nats::Connection,
    addr: String,
    driver: Driver,
    /// Settlements of the tokio client's deliveries, which `Delivery::ack` cannot await:
    /// [`Remote::flush`] does.
    settling: Mutex<Vec<JoinHandle<Result<()>>>>,
    /// The permits this client holds, by lock or semaphore (as a local broker's are held
    /// by the connection, not by a handle): released when the last clone of the client
    /// goes, if not before.
    held: Mutex<HashMap<String, Vec<ipcq_nats::LockGuard>>>,
}

impl Remote {
    /// Connects to the NATS server(s) at `addr` within `options`' time limit.
    pub(crate) async fn connect(
        addr: &str,
        options: &ConnectOptions,
        driver: Driver,
    ) -> Result<Remote> {
        let timeout = options.timeout.max(Duration::from_millis(1));
        let mut nats = ipcq_nats::async_nats::ConnectOptions::new().connection_timeout(timeout);
        if let Some(set) = &options.nats {
            nats = set(nats);
        }
        let connecting = ipcq_nats::Connection::connect_with(addr, nats);
        let connection = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => {
                return Err(Error::Nats(format!("cannot connect to {addr}: {err}")));
            }
            Err(_) => {
                return Err(crate::connect::no_answer(
                    addr,
                    timeout,
                    "connecting to NATS",
                ))
            }
        };
        let remote = Remote {
            inner: Arc::new(RemoteInner {
                connection,
                addr: addr.to_owned(),
                driver,
                settling: Mutex::new(Vec::new()),
                held: Mutex::new(HashMap::new()),
            }),
        };
        // A server without JetStream fails here rather than at the first queue.
        match tokio::time::timeout(timeout, remote.ping()).await {
            Ok(answer) => answer.map(|()| remote),
            Err(_) => Err(crate::connect::no_answer(
                addr,
                timeout,
                "asking for JetStream",
            )),
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub(crate) fn max_frame_len(&self) -> usize {
        self.inner.connection.max_payload()
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        self.inner.connection.ping().await.map_err(from_nats)
    }

    /// The queues, with the figures JetStream keeps (the others are 0).
    pub(crate) async fn stats(&self) -> Result<Vec<ObjectStats>> {
        let queues = self.inner.connection.queues().await.map_err(from_nats)?;
        Ok(queues.into_iter().map(figures).collect())
    }

    pub(crate) async fn lookup(&self, name: &str) -> Result<ObjectStats> {
        match self
            .inner
            .connection
            .lookup(name)
            .await
            .map_err(from_nats)?
        {
            Some(info) => Ok(figures(info)),
            None => Err(Error::NotFound(format!("no queue is named '{name}'"))),
        }
    }

    pub(crate) async fn remove(&self, name: &str) -> Result<()> {
        self.inner.connection.remove(name).await.map_err(from_nats)
    }

    /// Opens queue `name`. Auto-delete has no form on NATS (a stream outlives its
    /// clients): asking for it is refused rather than ignored.
    pub(crate) async fn queue(&self, name: &str, options: &QueueOptions) -> Result<RemoteQueue> {
        if options.is_auto_delete() {
            return Err(unsupported("auto-delete queues"));
        }
        let mut nats = ipcq_nats::QueueOptions::new().capacity(options.get_capacity());
        if let Some(dead_letter) = options.get_dead_letter() {
            nats = nats.dead_letter(dead_letter);
        }
        if options.get_max_deliveries() > 0 {
            nats = nats.max_deliveries(options.get_max_deliveries());
        }
        let queue = self
            .inner
            .connection
            .queue_with(name, &nats)
            .await
            .map_err(from_nats)?;
        Ok(RemoteQueue {
            inner: Arc::new(QueueInner {
                queue,
                remote: self.clone(),
                held: Mutex::new(HashMap::new()),
                next_tag: AtomicU64::new(1),
            }),
        })
    }

    pub(crate) async fn lock(&self, name: &str) -> Result<RemotePermits> {
        let lock = self.inner.connection.lock(name).await.map_err(from_nats)?;
        Ok(RemotePermits {
            permits: Arc::new(Permits::Lock(Box::new(lock))),
            key: format!("lock {name}"),
            remote: self.clone(),
        })
    }

    pub(crate) async fn semaphore(&self, name: &str, permits: u64) -> Result<RemotePermits> {
        let semaphore = self
            .inner
            .connection
            .semaphore(name, permits)
            .await
            .map_err(from_nats)?;
        Ok(RemotePermits {
            permits: Arc::new(Permits::Semaphore(semaphore)),
            key: format!("semaphore {name}"),
            remote: self.clone(),
        })
    }

    pub(crate) async fn event(&self, name: &str) -> Result<RemoteEvent> {
        let event = self.inner.connection.event(name).await.map_err(from_nats)?;
        Ok(RemoteEvent {
            event: Arc::new(event),
        })
    }

    /// Waits for the settlements handed to tasks so far (the tokio client's `flush`).
    pub(crate) async fn flush(&self) -> Result<()> {
        let settling = std::mem::take(&mut *lock(&self.inner.settling));
        let mut first_error = Ok(());
        for task in settling {
            let outcome = task
                .await
                .unwrap_or_else(|err| Err(Error::Nats(format!("a settlement failed: {err}"))));
            if first_error.is_ok() {
                first_error = outcome;
            }
        }
        first_error
    }

    /// Runs `settlement` to its end now (blocking client), or in a task of the caller's
    /// runtime that [`Remote::flush`] awaits (tokio client, whose settling methods cannot
    /// wait).
    fn settle(&self, settlement: impl Future<Output = Result<()>> + Send + 'static) -> Result<()> {
        let caller = tokio::runtime::Handle::try_current();
        let (Driver::Tokio, Ok(caller)) = (self.inner.driver, caller) else {
            return block(settlement);
        };
        let task = caller.spawn(settlement);
        let mut settling = lock(&self.inner.settling);
        settling.retain(|task| !task.is_finished());
        settling.push(task);
        Ok(())
    }

    fn drop_in_runtime<T>(&self, value: T) {
        self.inner.drop_in_runtime(value);
    }
}

impl RemoteInner {
    /// Drops `value`, whose drop tells the server something, where it can: in the
    /// blocking client's runtime, or in the caller's.
    fn drop_in_runtime<T>(&self, value: T) {
        if self.driver == Driver::Blocking {
            if let Ok(runtime) = runtime() {
                let _inside = runtime.enter();
                drop(value);
                return;
            }
        }
        drop(value);
    }
}

impl Drop for RemoteInner {
    /// The client is gone: so are its permits (their keys are deleted now, rather than
    /// expiring).
    fn drop(&mut self) {
        let held = std::mem::take(&mut *lock(&self.held));
        self.drop_in_runtime(held);
    }
}

/// A NATS queue's figures as `stats` reports a queue's; what JetStream does not keep is 0.
fn figures(info: ipcq_nats::QueueInfo) -> ObjectStats {
    let len = info.len as u64;
    let in_flight = info.in_flight as u64;
    ObjectStats {
        name: info.name,
        detail: ObjectDetail::Queue(QueueStats {
            ready: len.saturating_sub(in_flight),
            in_flight,
            reserved: 0,
            capacity: info.capacity as u64,
            bytes: info.bytes,
            getters: 0,
            putters: 0,
            total_put: info.total_put,
            total_got: 0,
            closed: info.closed,
            auto_delete: false,
            redelivered: 0,
            dead_lettered: 0,
            holders: Vec::new(),
            shared_memory: false,
            torn_writes: 0,
        }),
    }
}

/// A queue on JetStream; clones share the deliveries held.
#[derive(Clone)]
pub(crate) struct RemoteQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    queue: ipcq_nats::Queue,
    remote: Remote,
    /// Deliveries handed out and not yet settled, by tag (their heartbeats run meanwhile).
    held: Mutex<HashMap<u64, ipcq_nats::Delivery>>,
    next_tag: AtomicU64,
}

impl RemoteQueue {
    pub(crate) fn max_frame_len(&self) -> usize {
        self.inner.remote.max_frame_len()
    }

    /// Puts the first of `items` (one publish, confirmed); returns 1.
    pub(crate) async fn put_items(&self, items: &[&[u8]], wait: Wait) -> Result<usize> {
        let Some(item) = items.first() else {
            return Ok(0);
        };
        self.inner
            .queue
            .put_timeout(Bytes::copy_from_slice(item), timeout_of(wait))
            .await
            .map_err(from_nats)?;
        Ok(1)
    }

    /// One item: acknowledged before it is returned (`ack`), or held as a delivery.
    pub(crate) async fn fetch(&self, _max: usize, wait: Wait, ack: bool) -> Result<Vec<Delivered>> {
        let queue = &self.inner.queue;
        if ack {
            let item = queue
                .get_timeout(timeout_of(wait))
                .await
                .map_err(from_nats)?;
            return Ok(vec![Delivered {
                tag: 0,
                item,
                earlier: 0,
            }]);
        }
        let delivery = queue
            .get_delivery_timeout(timeout_of(wait))
            .await
            .map_err(from_nats)?;
        let earlier = delivery.deliveries().map_err(from_nats)? - 1;
        let item = delivery.item().clone();
        let tag = self.inner.next_tag.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.held).insert(tag, delivery);
        Ok(vec![Delivered { tag, item, earlier }])
    }

    /// Who settles this queue's deliveries.
    pub(crate) fn settler(&self) -> Arc<dyn Settle> {
        Arc::clone(&self.inner) as Arc<dyn Settle>
    }

    pub(crate) async fn info(&self) -> Result<QueueInfo> {
        let queue = &self.inner.queue;
        let len = queue.len().await.map_err(from_nats)? as u64;
        let capacity = queue.capacity() as u64;
        Ok(QueueInfo {
            len,
            capacity,
            full: capacity != 0 && len >= capacity,
            closed: queue.is_closed().await.map_err(from_nats)?,
        })
    }

    pub(crate) async fn close(&self) -> Result<()> {
        self.inner.queue.close().await.map_err(from_nats)
    }

    pub(crate) async fn task_done(&self) -> Result<()> {
        self.inner.queue.task_done().await.map_err(from_nats)
    }

    pub(crate) async fn join_for(&self, wait: Wait) -> Result<bool> {
        self.inner
            .queue
            .join_timeout(timeout_of(wait))
            .await
            .map_err(from_nats)
    }
}

impl QueueInner {
    fn take(&self, tag: u64) -> Option<ipcq_nats::Delivery> {
        lock(&self.held).remove(&tag)
    }
}

impl Settle for QueueInner {
    fn settle(&self, tag: u64, how: Settlement) -> Result<()> {
        let Some(delivery) = self.take(tag) else {
            return Ok(());
        };
        self.remote.settle(async move {
            match how {
                Settlement::Finish => delivery.ack().await,
                Settlement::Return => delivery.reject().await,
                Settlement::DeadLetter => delivery.dead_letter().await,
            }
            .map_err(from_nats)
        })
    }

    fn lease(&self, _tag: u64, _lease: Duration) -> Result<()> {
        Err(unsupported(
            "leases (a delivery is kept while its worker lives, by heartbeats)",
        ))
    }

    fn finish_checked(&self, tag: u64) -> Result<()> {
        self.settle(tag, Settlement::Finish)
    }

    fn finish_checked_async(&self, tag: u64) -> BoxFuture {
        let delivery = self.take(tag);
        Box::pin(async move {
            match delivery {
                Some(delivery) => delivery.ack().await.map_err(from_nats),
                None => Ok(()),
            }
        })
    }
}

impl Drop for QueueInner {
    /// Deliveries still held (their `Delivery` values were forgotten) go back now.
    fn drop(&mut self) {
        let held = std::mem::take(&mut *lock(&self.held));
        self.remote.drop_in_runtime(held);
    }
}

/// What a lock or semaphore is on NATS.
enum Permits {
    Lock(Box<ipcq_nats::Lock>),
    Semaphore(ipcq_nats::Semaphore),
}

/// A lock or semaphore on NATS, whose permits its client holds.
#[derive(Clone)]
pub(crate) struct RemotePermits {
    permits: Arc<Permits>,
    /// Where the client keeps the permits it holds of it.
    key: String,
    remote: Remote,
}

impl RemotePermits {
    /// A permit if one came in time, with whether its previous holder died holding it.
    pub(crate) async fn acquire(&self, wait: Wait) -> Result<Option<bool>> {
        let timeout = timeout_of(wait);
        let guard = match &*self.permits {
            Permits::Lock(lock) => lock.acquire_timeout(timeout).await,
            Permits::Semaphore(semaphore) => semaphore.acquire_timeout(timeout).await,
        }
        .map_err(from_nats)?;
        Ok(guard.map(|guard| {
            let owner_died = guard.owner_died();
            self.held().entry(self.key.clone()).or_default().push(guard);
            owner_died
        }))
    }

    pub(crate) async fn release(&self) -> Result<()> {
        let Some(guard) = self.take() else {
            return Err(Error::Invalid("this client holds none of it".into()));
        };
        guard.release().await.map_err(from_nats)
    }

    /// Releases a permit without waiting (a guard's drop): its release is sent from a task.
    pub(crate) fn release_on_drop(&self) {
        let guard = self.take();
        self.remote.drop_in_runtime(guard);
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Vec<ipcq_nats::LockGuard>>> {
        lock(&self.remote.inner.held)
    }

    /// The permit this client took last.
    fn take(&self) -> Option<ipcq_nats::LockGuard> {
        self.held().get_mut(&self.key).and_then(Vec::pop)
    }
}

/// An event on NATS.
#[derive(Clone)]
pub(crate) struct RemoteEvent {
    event: Arc<ipcq_nats::Event>,
}

impl RemoteEvent {
    pub(crate) async fn set(&self) -> Result<()> {
        self.event.set().await.map_err(from_nats)
    }

    pub(crate) async fn clear(&self) -> Result<()> {
        self.event.clear().await.map_err(from_nats)
    }

    pub(crate) async fn wait_for(&self, wait: Wait) -> Result<bool> {
        self.event
            .wait_timeout(timeout_of(wait))
            .await
            .map_err(from_nats)
    }
}
