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
    pub(crate) fn new(hold: Arc<Hold>, name: &str, capacity: usize) -> Self {
        RawQueue {
            hold,
            name: name.into(),
            capacity,
        }
    }

    fn client(&self) -> &Client {
        &self.hold.client
    }

    fn handle(&self) -> u32 {
        self.hold.handle
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The capacity it was opened with; `None` for unbounded.
    pub fn capacity(&self) -> Option<usize> {
        (self.capacity != 0).then_some(self.capacity)
    }

    /// How many items a `get` may fetch in one round trip (default
    /// [`DEFAULT_PREFETCH`](crate::DEFAULT_PREFETCH)). Fetched items wait in this client until `get` hands them
    /// out; until then they count in [`len`](RawQueue::len), other getters cannot have
    /// them, and they go back to the head of the queue if the connection closes or the
    /// last handle on this queue is dropped. 1 is strict fair dispatch: an item leaves the
    /// queue only when a `get` asks for it.
    ///
    /// The setting is shared by every handle on this queue from the same [`Client`].
    pub fn set_prefetch(&self, items: usize) {
        self.client()
            .with_core(|core| core.set_prefetch(self.handle(), items));
    }

    /// The current prefetch window (see [`set_prefetch`](RawQueue::set_prefetch)).
    pub fn prefetch(&self) -> usize {
        self.client().with_core(|core| core.prefetch(self.handle()))
    }

    /// Puts an item, waiting while the queue is full. When it returns, the item is in the
    /// broker's socket on a slot reserved for it, or in the queue: a process may exit right
    /// after `put` without losing it.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the queue is closed; [`Error::TooLarge`] if the item does not fit
    /// in a frame (nothing is sent); [`Error::BrokerGone`].
    pub fn put(&self, item: &[u8]) -> Result<()> {
        self.put_wait(item, Wait::Block)
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if there was no room in time; otherwise as [`RawQueue::put`].
    pub fn put_timeout(&self, item: &[u8], timeout: Duration) -> Result<()> {
        self.put_wait(item, Wait::timeout(timeout))
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if there is none; otherwise as [`RawQueue::put`].
    pub fn put_nowait(&self, item: &[u8]) -> Result<()> {
        self.put_wait(item, Wait::NoWait)
    }

    fn put_wait(&self, item: &[u8], wait: Wait) -> Result<()> {
        check_item(item.len(), self.client().max_frame_len())?;
        self.put_items(&[item], wait).map(|_| ())
    }

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

    /// Puts all `items` in order, waiting for room as needed, in one write per frame's
    /// worth of items where credits allow and one round trip per frame otherwise. Other
    /// producers' items may come between them when the queue fills up.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put`]. On an error, the items before the failing frame are in the
    /// queue.
    pub fn put_many<I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let items: Vec<I::Item> = items.into_iter().collect();
        let items: Vec<&[u8]> = items.iter().map(AsRef::as_ref).collect();
        for batch in frames_of(&items, self.client().max_frame_len())? {
            let mut rest = &batch[..];
            while !rest.is_empty() {
                let put = self.put_items(rest, Wait::Block)?;
                rest = &rest[put..];
            }
        }
        Ok(())
    }

    /// Takes the item at the head, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the queue is closed and every item has been taken;
    /// [`Error::BrokerGone`].
    pub fn get(&self) -> Result<Bytes> {
        self.get_wait(Wait::Block)
    }

    /// Takes the item at the head, waiting at most `timeout` for one. The broker keeps the
    /// time: an item that arrives as the time runs out is either returned or left in the
    /// queue, never lost.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came in time; otherwise as [`RawQueue::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<Bytes> {
        self.get_wait(Wait::timeout(timeout))
    }

    /// Takes the item at the head if there is one now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if there is none; otherwise as [`RawQueue::get`].
    pub fn get_nowait(&self) -> Result<Bytes> {
        self.get_wait(Wait::NoWait)
    }

    fn get_wait(&self, wait: Wait) -> Result<Bytes> {
        let mut items = self.fetch(1, wait)?;
        Ok(items.swap_remove(0))
    }

    /// Takes between 1 and `max` items from the head in one round trip, waiting while the
    /// queue is empty. Returns what is there, up to `max` (fewer if they would not fit in
    /// one frame).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `max` is 0; otherwise as [`RawQueue::get`].
    pub fn get_many(&self, max: usize) -> Result<Vec<Bytes>> {
        self.get_many_wait(max, Wait::Block)
    }

    /// Like [`get_many`](RawQueue::get_many), waiting at most `timeout` for the first item.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came in time; otherwise as [`RawQueue::get_many`].
    pub fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<Bytes>> {
        self.get_many_wait(max, Wait::timeout(timeout))
    }

    fn get_many_wait(&self, max: usize, wait: Wait) -> Result<Vec<Bytes>> {
        if max == 0 {
            return Err(Error::Invalid("get_many needs max >= 1".into()));
        }
        self.fetch(max, wait)
    }

    /// Hands out up to `max` items (at least one): fetched ones if there are any, else
    /// those of a round trip that waits as asked and fetches up to the prefetch window.
    /// While it waits, items another thread's answer brought are taken instead, and the
    /// request is withdrawn.
    fn fetch(&self, max: usize, wait: Wait) -> Result<Vec<Bytes>> {
        let (client, handle) = (self.client(), self.handle());
        loop {
            let step = client.with_core(|core| core.get_step(handle, max, wait, Instant::now()))?;
            let fetch = match step {
                // Theirs once acknowledged.
                GetStep::Items(items, mark) => return client.flush(mark).map(|()| items),
                GetStep::Wait(fetch) => fetch,
            };
            if let Err(err) = self.wait_fetch(fetch) {
                // Items that arrived before the error still come first (if they can still
                // be acknowledged).
                let step = client
                    .with_core(|core| core.get_step(handle, max, Wait::NoWait, Instant::now()));
                return match step {
                    Ok(GetStep::Items(items, mark)) => client.flush(mark).map(|()| items),
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

    /// Waits up to `timeout` until a `get` would return at once: an item is fetched (it
    /// stays for the next `get`) or the queue is closed and drained.
    pub(crate) fn poll(&self, timeout: Duration) -> Result<bool> {
        let (client, handle) = (self.client(), self.handle());
        let wait = Wait::timeout(timeout);
        loop {
            if client.with_core(|core| core.has_items(handle)) {
                return Ok(true);
            }
            let fetch = client.with_core(|core| {
                let window = core.window(handle);
                core.fetch(handle, window, wait)
            })?;
            match self.wait_fetch(fetch) {
                Ok(()) => {}
                Err(Error::Empty) => return Ok(client.with_core(|core| core.has_items(handle))),
                Err(Error::Closed) => return Ok(true),
                Err(err) => return Err(err),
            }
        }
    }

    /// Marks one item as processed, as `JoinableQueue.task_done`: once every item put has
    /// been marked, [`join`](RawQueue::join) returns. Any client may mark items of the queue.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when called more times than items were put;
    /// [`Error::BrokerGone`].
    pub fn task_done(&self) -> Result<()> {
        self.client().run(ops::task_done(self.handle()))
    }

    /// Waits until every item put on the queue has been marked done
    /// ([`task_done`](RawQueue::task_done)), as `JoinableQueue.join`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the queue is removed.
    pub fn join(&self) -> Result<()> {
        self.join_for(Wait::Block).map(|_| ())
    }

    /// Waits at most `timeout` for [`join`](RawQueue::join); returns whether every item
    /// was marked done.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::join`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_for(Wait::timeout(timeout))
    }

    fn join_for(&self, wait: Wait) -> Result<bool> {
        self.client().run(ops::join(self.handle(), wait))
    }

    /// Items put and not yet taken: those waiting in the queue plus those delivered to a
    /// getter (including items prefetched by a client) that has not yet handed them to its
    /// application. Exact at the broker at the moment it answers.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn len(&self) -> Result<usize> {
        Ok(usize::try_from(self.info()?.len).unwrap_or(usize::MAX))
    }

    /// Whether [`len`](RawQueue::len) is 0.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.info()?.len == 0)
    }

    /// Whether a put that needs room now would fail: the items and the slots reserved for
    /// producers' credits fill the capacity, or the queue's or the broker's byte budget is
    /// used up, or putters are already waiting. A queue short of its byte budget may still
    /// refuse an item larger than what is left of it.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_full(&self) -> Result<bool> {
        Ok(self.info()?.full)
    }

    /// Whether the queue has been closed.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_closed(&self) -> Result<bool> {
        Ok(self.info()?.closed)
    }

    fn info(&self) -> Result<QueueInfo> {
        self.client().run(ops::info(self.handle()))
    }

    /// Closes the queue for everyone: later puts fail with [`Error::Closed`], parked
    /// putters wake with it, and getters take what is left, then get `Closed`. Puts that
    /// other clients made on slots reserved before the close still land.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn close(&self) -> Result<()> {
        self.client()
            .with_core(|core| core.release_credits(self.handle()));
        self.client().run(ops::close(self.handle()))
    }
}

impl fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawQueue")
            .field("name", &self.name)
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

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
pub struct Queue<T> {
    raw: RawQueue,
    // `fn() -> T`: the handle holds no `T`, so it is `Send + Sync` for any `T`.
    _items: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    pub(crate) fn from_raw(raw: RawQueue) -> Self {
        Queue {
            raw,
            _items: PhantomData,
        }
    }

    /// The raw handle on the same queue.
    pub fn raw(&self) -> &RawQueue {
        &self.raw
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The capacity it was opened with; `None` for unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.raw.capacity()
    }

    /// Sets the prefetch window (see [`RawQueue::set_prefetch`]).
    pub fn set_prefetch(&self, items: usize) {
        self.raw.set_prefetch(items);
    }

    /// The prefetch window (see [`RawQueue::set_prefetch`]).
    pub fn prefetch(&self) -> usize {
        self.raw.prefetch()
    }

    /// Puts an item, waiting while the queue is full. When it returns, the item is in the
    /// queue.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::TooLarge`], [`Error::Codec`], [`Error::BrokerGone`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.raw.put(&encode(item)?)
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if there was no room in time; otherwise as [`Queue::put`].
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.raw.put_timeout(&encode(item)?, timeout)
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if there is none; otherwise as [`Queue::put`].
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.raw.put_nowait(&encode(item)?)
    }

    /// Puts all `items` in order, in as few round trips as the frame limit allows.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put_many`].
    pub fn put_many<'a, I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let encoded = items.into_iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.raw.put_many(encoded)
    }

    /// Takes the item at the head, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the queue is closed and drained; [`Error::Codec`] if the item
    /// is not a `T` (it has been taken all the same); [`Error::BrokerGone`].
    pub fn get(&self) -> Result<T> {
        decode(&self.raw.get()?)
    }

    /// Takes the item at the head, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came in time; otherwise as [`Queue::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        decode(&self.raw.get_timeout(timeout)?)
    }

    /// Takes the item at the head if there is one now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if there is none; otherwise as [`Queue::get`].
    pub fn get_nowait(&self) -> Result<T> {
        decode(&self.raw.get_nowait()?)
    }

    /// Takes between 1 and `max` items in one round trip, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::get_many`] and [`Queue::get`].
    pub fn get_many(&self, max: usize) -> Result<Vec<T>> {
        self.raw
            .get_many(max)?
            .iter()
            .map(|item| decode(item))
            .collect()
    }

    /// Like [`get_many`](Queue::get_many), waiting at most `timeout` for the first item.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came in time; otherwise as [`Queue::get_many`].
    pub fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>> {
        self.raw
            .get_many_timeout(max, timeout)?
            .iter()
            .map(|item| decode(item))
            .collect()
    }

    /// Marks one item as processed (see [`RawQueue::task_done`]).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::task_done`].
    pub fn task_done(&self) -> Result<()> {
        self.raw.task_done()
    }

    /// Waits until every item put has been marked done (see [`RawQueue::join`]).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::join`].
    pub fn join(&self) -> Result<()> {
        self.raw.join()
    }

    /// Waits at most `timeout` for [`join`](Queue::join); returns whether it completed.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::join`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.raw.join_timeout(timeout)
    }

    /// Items put and not yet taken (see [`RawQueue::len`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn len(&self) -> Result<usize> {
        self.raw.len()
    }

    /// Whether [`len`](Queue::len) is 0.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_empty(&self) -> Result<bool> {
        self.raw.is_empty()
    }

    /// Whether a `put_nowait` would fail now (see [`RawQueue::is_full`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_full(&self) -> Result<bool> {
        self.raw.is_full()
    }

    /// Whether the queue has been closed.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_closed(&self) -> Result<bool> {
        self.raw.is_closed()
    }

    /// Closes the queue (see [`RawQueue::close`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn close(&self) -> Result<()> {
        self.raw.close()
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            raw: self.raw.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.raw.name)
            .field("capacity", &self.raw.capacity())
            .finish_non_exhaustive()
    }
}
