//! Queue handles: raw bytes, and typed on top of them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_proto::{QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use crate::client::{Client, Hold};
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueOptions {
    capacity: usize,
    auto_delete: bool,
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

    /// Most items at once (0: unbounded).
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the queue goes with the last connection that opened it.
    pub fn is_auto_delete(&self) -> bool {
        self.auto_delete
    }

    /// What an `Open` asks for.
    pub(crate) fn kind(&self) -> ipcq_proto::Kind {
        ipcq_proto::Kind::Queue {
            capacity: self.capacity as u64,
            auto_delete: self.auto_delete,
        }
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

    /// Opens the queue `name` for raw bytes, creating it with `options` if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// As [`Client::queue_with`].
    pub fn raw_queue_with(&self, name: &str, options: QueueOptions) -> Result<RawQueue> {
        let handle = self.open(name, options.kind())?;
        Ok(RawQueue::new(
            self.hold(handle),
            name,
            options.get_capacity(),
        ))
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
    hold: Arc<Hold>,
    name: Arc<str>,
    capacity: usize,
}

impl RawQueue {
    /// This handle's share of its queue in the client.
    pub(crate) fn hold(&self) -> Arc<Hold> {
        Arc::clone(&self.hold)
    }
}

impl RawQueue {
    /// Puts the first of `items` at least (all of them if there are credits for them, in
    /// one write); returns how many were put.
    fn put_items(&self, items: &[&[u8]], wait: Wait) -> Result<usize> {
        let (client, handle, waker) = (self.client(), self.handle(), &self.hold.waker);
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
        let (client, handle) = (self.client(), self.handle());
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
    fn wait_fetch(&self, fetch: Fetch) -> Result<()> {
        let (client, handle, waker) = (self.client(), self.handle(), &self.hold.waker);
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
fn flushed(client: &Client, mark: Option<crate::core::Mark>) -> Result<()> {
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
