//! Queue handles: raw bytes, and typed on top of them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_proto::{QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use crate::client::{Backend, Client, Hold, Link};
use crate::common::{check_item, decode, encode, frames_of};
use crate::core::{Fetch, GetStep, Progress, PutStep};
use crate::inbox::Delivered;
use crate::ops::{self, unexpected};
use crate::{Error, Result};

/// How a queue is created; every opener must ask for the same, or get
/// [`Error::Conflict`](crate::Error::Conflict).
///
/// By default a queue lives in the broker until it is removed (`ipcq rm`, or
/// [`Client::remove`](crate::Client::remove)), so items wait for consumers that start
/// later, and a run that was interrupted leaves its items (a `None` sentinel too) for the
/// next. An *auto-delete* queue (as RabbitMQ's) is removed, with whatever it still holds,
/// when the last client connection that opened it closes: for programs whose producers and
/// consumers run together and whose queue should not outlive them.
///
/// # Examples
///
/// ```
/// use ipcq_client::QueueOptions;
///
/// let options = QueueOptions::new().capacity(100).auto_delete(true);
/// assert_eq!(options.get_capacity(), 100);
/// assert!(options.is_auto_delete());
/// ```
///
/// A *dead-letter queue* takes the items that cannot be done: those a worker sends there
/// ([`Delivery::dead_letter`](crate::Delivery::dead_letter), or an item a typed
/// `get_delivery` cannot decode), and, with [`max_deliveries`](QueueOptions::max_deliveries),
/// those that came back that many times (their workers died or rejected them) instead of
/// looping forever. It is an ordinary queue, created unbounded if it does not exist, that
/// anyone can read (`ipcq get`); each item keeps its delivery count.
///
/// ```
/// use ipcq_client::QueueOptions;
///
/// let options = QueueOptions::new().capacity(100).dead_letter("jobs.failed").max_deliveries(3);
/// assert_eq!(options.get_dead_letter(), Some("jobs.failed"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueOptions {
    capacity: usize,
    auto_delete: bool,
    dead_letter: Option<Name>,
    max_deliveries: u32,
    slot_size: u32,
}

/// An object name held inline, so that options stay `Copy`. A name longer than any the
/// broker accepts is kept as too long, and refused when the queue is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    len: usize,
    bytes: [u8; ipcq_proto::MAX_NAME_LEN],
}

impl Name {
    fn new(name: &str) -> Self {
        let mut bytes = [0; ipcq_proto::MAX_NAME_LEN];
        let len = name.len();
        if len <= bytes.len() {
            bytes[..len].copy_from_slice(name.as_bytes());
        }
        Name { len, bytes }
    }

    /// The name; `None` if it was too long to keep.
    fn as_str(&self) -> Option<&str> {
        let bytes = self.bytes.get(..self.len)?;
        // Copied whole from a `&str`: always UTF-8.
        std::str::from_utf8(bytes).ok()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str().unwrap_or("<too long>"), f)
    }
}

impl QueueOptions {
    /// Unbounded, living until removed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Most items at once (waiting, and on their way to getters); a `put` waits while the
    /// queue is full. 0 means unbounded (the broker's byte budgets still apply).
    ///
    /// Default: 0.
    #[must_use]
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// Whether the queue is removed, with what it holds, when the last client connection
    /// that opened it closes.
    ///
    /// Default: `false`.
    #[must_use]
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.auto_delete = auto_delete;
        self
    }

    /// The queue that takes the items that cannot be done (see above).
    ///
    /// Default: none; a delivery sent to the dead letters then goes back to the head.
    #[must_use]
    pub fn dead_letter(mut self, queue: &str) -> Self {
        self.dead_letter = Some(Name::new(queue));
        self
    }

    /// Deliveries after which an item that comes back goes to the dead-letter queue
    /// instead of the head of this one (0: no limit). Needs a
    /// [`dead_letter`](QueueOptions::dead_letter) queue.
    ///
    /// Default: 0.
    #[must_use]
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = deliveries;
        self
    }

    /// The largest item the queue's ring in shared memory carries (Linux; see the
    /// README, "Through shared memory"), if this open makes the queue: a ring has
    /// capacity × (this + 16, rounded up to 64) bytes, so a queue of large items wants a
    /// small capacity (a ring over the broker's `--max-shm-bytes` is not made). Larger
    /// items turn the queue over to the socket. At most 16 MiB; 0 for the broker's
    /// default (496 bytes). Not a parameter of the queue: opens of an existing queue may
    /// give any.
    ///
    /// Default: 0.
    #[must_use]
    pub fn shared_slot_size(mut self, bytes: u32) -> Self {
        self.slot_size = bytes;
        self
    }

    /// Most items at once (0: unbounded).
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }

    /// The dead-letter queue, if there is one.
    pub fn get_dead_letter(&self) -> Option<&str> {
        self.dead_letter.as_ref().and_then(Name::as_str)
    }

    /// Deliveries before an item goes to the dead-letter queue (0: no limit).
    pub fn get_max_deliveries(&self) -> u32 {
        self.max_deliveries
    }

    /// Whether the queue goes with the last connection that opened it.
    pub fn is_auto_delete(&self) -> bool {
        self.auto_delete
    }

    /// What an `Open` asks for.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a delivery limit without a dead-letter queue.
    pub(crate) fn kind(&self) -> Result<ipcq_proto::Kind> {
        if self.max_deliveries > 0 && self.dead_letter.is_none() {
            return Err(Error::Invalid(
                "max_deliveries needs a dead_letter queue to send items to".into(),
            ));
        }
        let dead_letter = match &self.dead_letter {
            None => None,
            Some(name) => Some(ipcq_proto::DeadLetter {
                queue: name
                    .as_str()
                    .ok_or_else(|| {
                        Error::Invalid("the dead-letter queue's name is too long".into())
                    })?
                    .to_owned(),
                max_deliveries: self.max_deliveries,
            }),
        };
        Ok(ipcq_proto::Kind::Queue {
            capacity: self.capacity as u64,
            auto_delete: self.auto_delete,
            dead_letter,
            slot_size: self.slot_size,
        })
    }
}

impl Client {
    /// Opens the queue `name` for items of type `T`, creating it with `capacity` (0 for
    /// unbounded) if it does not exist. Items are encoded with postcard.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` exists with another capacity or as another kind;
    /// [`Error::Invalid`] for a bad name (empty, over 255 bytes, control characters).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = ipcq_client::Client::connect_default()?;
    /// let results = client.queue::<(u32, f64)>("results", 0)?;
    /// assert_eq!(results.capacity(), None); // unbounded
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Queue<T>> {
        self.raw_queue(name, capacity).map(Queue::from_raw)
    }

    /// Opens the queue `name` for items of type `T`, creating it with `options` if it does
    /// not exist: its capacity, and whether it is removed when the last client that opened
    /// it disconnects.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` exists with other options or as another kind;
    /// otherwise as [`Client::queue`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use ipcq_client::{Client, QueueOptions};
    ///
    /// let client = Client::connect_default()?;
    /// // Gone, with anything left in it, once this client and the others using it exit.
    /// let jobs = client.queue_with::<Option<u32>>("jobs", QueueOptions::new().capacity(100).auto_delete(true))?;
    /// jobs.put(&Some(7))?;
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn queue_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Queue<T>> {
        self.raw_queue_with(name, options).map(Queue::from_raw)
    }

    /// Opens the queue `name` for raw bytes, carried untouched (this is how the `ipcq`
    /// command line sees queues).
    ///
    /// # Errors
    ///
    /// As [`Client::queue`].
    pub fn raw_queue(&self, name: &str, capacity: usize) -> Result<RawQueue> {
        self.raw_queue_with(name, QueueOptions::new().capacity(capacity))
    }
}

/// A handle on a broker queue whose items are raw bytes, carried untouched.
///
/// Raw queues interoperate with the `ipcq` command line and with programs in other
/// languages. `RawQueue` is `Clone + Send + Sync`; cloning is shallow.
///
/// # Examples
///
/// ```no_run
/// let client = ipcq_client::Client::connect_default()?;
/// let lines = client.raw_queue("lines", 0)?;
/// lines.put(b"hello")?;
/// assert_eq!(&lines.get()?[..], b"hello");
/// # Ok::<(), ipcq_client::Error>(())
/// ```
#[derive(Clone)]
pub struct RawQueue {
    at: QueueAt,
    name: Arc<str>,
    capacity: usize,
}

impl Hold {
    /// Puts the first of `items` at least (all of them if there are credits for them, in
    /// one write); returns how many were put.
    pub(crate) fn put_items(&self, items: &[&[u8]], wait: Wait) -> Result<usize> {
        let (client, handle, waker) = (&self.client, self.handle, &self.waker);
        if let Some(lane) = &self.lane {
            if let Some(put) = lane.put(client.stream(), items, wait)? {
                return Ok(put);
            }
        }
        loop {
            match client.with_core(|core| core.put_step(handle, items, wait))? {
                // On slots already reserved: the put needs no answer.
                PutStep::Sent(n, mark) => return client.flush(mark).map(|()| n),
                // Credits asked for earlier are on their way: they come at once.
                PutStep::Await(id) => {
                    let _ = client.flush_all();
                    client.wait(waker, |core| core.poll_settled(id, handle, Some(waker)))?;
                }
                PutStep::Room(id) => {
                    let _ = client.flush_all();
                    match client.wait(waker, |core| core.poll(id, Some(waker)))?.0 {
                        Reply::Accepted { .. } => {}
                        other => return Err(unexpected(&other)),
                    }
                }
            }
        }
    }

    /// Hands out up to `max` items (at least one): fetched ones if there are any, else
    /// those of a round trip that waits as asked and fetches up to the prefetch window.
    /// While it waits, items another thread's answer brought are taken instead, and the
    /// request is withdrawn.
    pub(crate) fn fetch(&self, max: usize, wait: Wait, ack: bool) -> Result<Vec<Delivered>> {
        let (client, handle) = (&self.client, self.handle);
        // A get that waits for acknowledgement needs the broker's bookkeeping: the socket.
        // So do items fetched over it earlier, which come first.
        let lane = self.lane.as_ref().filter(|_| ack);
        if let Some(lane) = lane.filter(|_| !client.with_core(|core| core.has_items(handle))) {
            if let Some(items) = lane.take(client.stream(), max, wait)? {
                let delivered = items.into_iter().map(|item| Delivered {
                    tag: 0,
                    item,
                    earlier: 0,
                });
                return Ok(delivered.collect());
            }
        }
        loop {
            let step =
                client.with_core(|core| core.get_step(handle, max, wait, Instant::now(), ack))?;
            let fetch = match step {
                // Theirs once acknowledged.
                GetStep::Items(items, mark) => return flushed(client, mark).map(|()| items),
                GetStep::Wait(fetch) => fetch,
            };
            if let Err(err) = self.wait_fetch(fetch) {
                // Items that arrived before the error still come first (if they can still
                // be acknowledged).
                let step = client.with_core(|core| {
                    core.get_step(handle, max, Wait::NoWait, Instant::now(), ack)
                });
                return match step {
                    Ok(GetStep::Items(items, mark)) => flushed(client, mark).map(|()| items),
                    Ok(GetStep::Wait(fetch)) => {
                        client.with_core(|core| core.abandon(fetch.id()));
                        Err(err)
                    }
                    Err(_) => Err(err),
                };
            }
        }
    }

    /// Waits until `fetch` is answered or items arrive otherwise (then withdraws it).
    pub(crate) fn wait_fetch(&self, fetch: Fetch) -> Result<()> {
        let (client, handle, waker) = (&self.client, self.handle, &self.waker);
        let _ = client.flush_all();
        match client.wait(waker, |core| core.poll_fetch(fetch, handle, Some(waker)))? {
            Progress::Answer(Reply::Items { .. }) => Ok(()),
            Progress::Answer(other) => Err(unexpected(&other)),
            Progress::Moved => {
                if let Fetch::Own(id) = fetch {
                    client.with_core(|core| core.abandon(id));
                }
                Ok(())
            }
        }
    }
}

/// Writes up to `mark`, if there is one.
fn flushed(client: &Link, mark: Option<crate::core::Mark>) -> Result<()> {
    mark.map_or(Ok(()), |mark| client.flush(mark))
}

crate::surface::queue_surface! {
    [] [],
    queue: {
        /// A handle on a broker queue of `T`s, encoded with postcard.
        ///
        /// The methods mirror Python's `multiprocessing.Queue`: `put`/`get` wait, `_timeout`
        /// variants wait at most a given time, `_nowait` variants never wait. `Queue<T>` is
        /// `Clone + Send + Sync` whatever `T` is; cloning is shallow.
        ///
        /// # Examples
        ///
        /// A `None` per consumer ends the stream, as in Python:
        ///
        /// ```no_run
        /// let client = ipcq_client::Client::connect_default()?;
        /// let jobs = client.queue::<Option<u64>>("jobs", 64)?;
        /// jobs.put(&Some(7))?;
        /// jobs.put(&None)?;
        /// while let Some(job) = jobs.get()? {
        ///     println!("job {job}");
        /// }
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
}
