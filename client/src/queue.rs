//! Queue handles: raw bytes, and typed on top of them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar};
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::{ClientMsg, Op, QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use crate::client::{unexpected, Client, Detached};
use crate::common::{
    average_len, check_item, credit_request, decode, encode, frames_of, lens, release_msg, Credits,
    Grant,
};
use crate::inbox::Inbox;
use crate::ops;
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

/// What one connection knows of one queue, shared by every handle on it: credits (slots
/// the broker reserved for this connection's puts) and prefetched items (delivered to this
/// connection, not yet handed to the application).
pub(crate) struct Local {
    client: Client,
    handle: u32,
    credits: Credits,
    /// Delivered items not yet handed out, and the application's pace.
    inbox: Inbox,
    /// The id of the prefetch request in flight, 0 if none.
    outstanding: AtomicU64,
    /// The id of the credit request in flight, 0 if none.
    reserving: AtomicU64,
    /// Threads waiting for that prefetch wait here.
    waker: Arc<Condvar>,
}

impl Local {
    pub(crate) fn new(client: Client, handle: u32) -> Self {
        Local {
            client,
            handle,
            credits: Credits::default(),
            inbox: Inbox::new(),
            outstanding: AtomicU64::new(0),
            reserving: AtomicU64::new(0),
            waker: Arc::new(Condvar::new()),
        }
    }

    /// Gives every unused credit back to the broker.
    pub(crate) fn release_credits(&self) {
        let Some(msg) = release_msg(self.handle, self.credits.take_all()) else {
            return;
        };
        let mut frame = Vec::with_capacity(16);
        // A `Release` always fits in a frame; if the connection is gone, so are the credits.
        if self.client.encode(&msg, &[], &mut frame).is_ok() {
            let _ = self.client.send(&frame);
        }
    }

    pub(crate) fn waker(&self) -> Arc<Condvar> {
        Arc::clone(&self.waker)
    }

    pub(crate) fn handle(&self) -> u32 {
        self.handle
    }

    /// Whether items wait in the buffer (called with the client's state locked: the buffer
    /// lock is always taken after it, never before).
    pub(crate) fn has_buffered(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Items delivered to this handle, in arrival order (called by the reader).
    pub(crate) fn receive(&self, tag: u64, items: Vec<Bytes>, ready: u64) {
        self.inbox.receive(tag, items, Some(ready));
    }

    /// The prefetch in flight has been answered (called by the reader).
    pub(crate) fn prefetch_answered(&self) {
        self.outstanding.store(0, Ordering::Release);
    }

    /// The credit request in flight has been answered (called by the reader).
    pub(crate) fn reserve_answered(&self, grant: Grant) {
        self.credits.add(grant);
        self.reserving.store(0, Ordering::Release);
    }

    /// After spending credits: if few are left, appends a request for more to `frame` (sent
    /// with the puts), so that the answer is back before they run out.
    fn encode_reserve(self: &Arc<Self>, item_len: usize, frame: &mut Vec<u8>) {
        let want = credit_request(item_len);
        if self.credits.count() >= u64::from(want / 2) {
            return;
        }
        let op = Op::Reserve {
            handle: self.handle,
            credits: want,
            len: u32::try_from(item_len).unwrap_or(u32::MAX),
        };
        self.encode_detached(Detached::Reserve, &self.reserving, op, frame);
    }

    /// Appends a request whose answer nobody waits for (the reader settles it into this
    /// handle) to `frame`, unless one of its kind is in flight: `in_flight` holds its id.
    fn encode_detached(
        self: &Arc<Self>,
        kind: Detached,
        in_flight: &AtomicU64,
        op: Op,
        frame: &mut Vec<u8>,
    ) {
        let id = self.client.next_id();
        if in_flight
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let registered = self
            .client
            .register(
                id,
                Arc::clone(&self.waker),
                Some(self),
                Some((kind, self.handle)),
            )
            .and_then(|()| {
                self.client
                    .encode(&ClientMsg::Request { id, op }, &[], frame)
            });
        if registered.is_err() {
            in_flight.store(0, Ordering::Release);
        }
    }

    /// Waits for the credit request in flight, if any. Returns whether there was one.
    fn await_reserve(&self) -> Result<bool> {
        let reserving = self.reserving.load(Ordering::Acquire);
        if reserving == 0 {
            return Ok(false);
        }
        self.client.wait_answered(reserving, &self.waker)?;
        Ok(true)
    }

    /// Takes up to `max` prefetched items. In one write, acknowledges them and, if the
    /// buffer runs low, asks for more.
    ///
    /// # Errors
    ///
    /// The connection's error when the acknowledgement cannot be written: the broker gives
    /// the items back to the queue when it sees the connection end, so they are not handed
    /// out here too (they would be delivered twice); the rest of the buffer goes with them.
    fn take_buffered(self: &Arc<Self>, max: usize) -> Result<Vec<Bytes>> {
        let Some(taken) = self.inbox.take(max) else {
            return Ok(Vec::new());
        };
        let mut frame = Vec::new();
        self.encode_all(&taken.acks, &mut frame);
        if let Some(n) = taken.fetch_ahead() {
            self.encode_prefetch(n, &mut frame);
        }
        if let Err(err) = self.client.send_one_way(&frame) {
            drop(self.inbox.give_back());
            return Err(err);
        }
        Ok(taken.items)
    }

    /// How many items to fetch now, at the application's recent pace (at least 1).
    fn window(&self) -> usize {
        self.inbox.window()
    }

    /// Appends a prefetch request for up to `n` items to `frame`, unless one is in flight.
    /// The prefetch takes only what the queue holds now (it never waits), so it never
    /// captures items that arrive later, while the application may not be asking.
    fn encode_prefetch(self: &Arc<Self>, n: usize, frame: &mut Vec<u8>) {
        let op = Op::GetMany {
            handle: self.handle,
            max: u32::try_from(n).unwrap_or(u32::MAX),
            wait: Wait::NoWait,
        };
        self.encode_detached(Detached::Prefetch, &self.outstanding, op, frame);
    }

    /// Appends one-way messages (acknowledgements, returns) to `frame`.
    fn encode_all(&self, msgs: &[ClientMsg], frame: &mut Vec<u8>) {
        for msg in msgs {
            // A few bytes each: they always fit.
            let _ = self.client.encode(msg, &[], frame);
        }
    }
}

impl Drop for Local {
    /// The last handle on this queue is gone: prefetched items go back to the head of the
    /// queue for other getters, and unused credits back to the broker.
    fn drop(&mut self) {
        // Answers still on their way would come to a handle that no longer exists; wait for
        // them (they never wait in the broker), and the reader sends their items and credits
        // back.
        for id in [&self.outstanding, &self.reserving] {
            let id = id.load(Ordering::Acquire);
            if id != 0 {
                let _ = self.client.wait_answered(id, &self.waker);
            }
        }
        let mut frame = Vec::new();
        self.encode_all(&self.inbox.give_back(), &mut frame);
        if !frame.is_empty() {
            let _ = self.client.send(&frame);
        }
        self.release_credits();
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
    local: Arc<Local>,
    name: Arc<str>,
    capacity: usize,
}

impl RawQueue {
    pub(crate) fn new(local: Arc<Local>, name: &str, capacity: usize) -> Self {
        RawQueue {
            local,
            name: name.into(),
            capacity,
        }
    }

    fn client(&self) -> &Client {
        &self.local.client
    }

    fn handle(&self) -> u32 {
        self.local.handle
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
        self.local.inbox.set_prefetch(items);
    }

    /// The current prefetch window (see [`set_prefetch`](RawQueue::set_prefetch)).
    pub fn prefetch(&self) -> usize {
        self.local.inbox.prefetch()
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
        self.check_item(item.len())?;
        loop {
            // A credit is a slot already reserved: the put needs no answer.
            if self.local.credits.take([item.len()]) == 1 {
                let mut frame = Vec::with_capacity(32 + item.len());
                self.client().encode(
                    &ClientMsg::Send {
                        handle: self.handle(),
                    },
                    &[item],
                    &mut frame,
                )?;
                self.local.encode_reserve(item.len(), &mut frame);
                return self.client().send_one_way(&frame);
            }
            // Credits asked for earlier may be on their way: they come at once.
            if !self.local.await_reserve()? {
                break;
            }
        }
        // Credits left were granted for smaller items: they go back, or the slots they hold
        // could be the room this put waits for.
        self.local.release_credits();
        // A put that may wait asks for credits for the puts that follow it.
        let credits = if wait == Wait::NoWait {
            0
        } else {
            credit_request(item.len())
        };
        let op = Op::Put {
            handle: self.handle(),
            wait,
            credits,
        };
        self.accepted(self.client().call(op, &[item])?.0)
    }

    fn accepted(&self, reply: Reply) -> Result<()> {
        match reply {
            Reply::Accepted { .. } => {
                self.local.credits.add(Grant::of(&reply));
                Ok(())
            }
            other => Err(unexpected(&other)),
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
            self.put_batch(&batch)?;
        }
        Ok(())
    }

    /// Puts one frame's worth: as many items as there are credits in one write, the rest
    /// in one round trip that asks for more credits.
    fn put_batch(&self, batch: &[&[u8]]) -> Result<()> {
        let mut rest = batch;
        while !rest.is_empty() {
            let credited = self.local.credits.take(rest.iter().map(|item| item.len()));
            if credited == 0 {
                // Credits asked for earlier may be on their way: they come at once.
                if self.local.await_reserve()? {
                    continue;
                }
                // As in `put_wait`: credits granted for smaller items go back first.
                self.local.release_credits();
                let op = Op::PutMany {
                    handle: self.handle(),
                    lens: lens(rest),
                    credits: credit_request(average_len(batch)),
                };
                return self.accepted(self.client().call(op, rest)?.0);
            }
            let (on_credit, after) = rest.split_at(credited);
            let msg = ClientMsg::SendMany {
                handle: self.handle(),
                lens: lens(on_credit),
            };
            let mut frame =
                Vec::with_capacity(48 + on_credit.iter().map(|i| i.len() + 5).sum::<usize>());
            self.client().encode(&msg, on_credit, &mut frame)?;
            self.local
                .encode_reserve(average_len(on_credit), &mut frame);
            self.client().send_one_way(&frame)?;
            rest = after;
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

    /// Hands out up to `max` items (at least one): prefetched ones if there are any, else
    /// those of a round trip that waits as asked and fetches up to the prefetch window.
    fn fetch(&self, max: usize, wait: Wait) -> Result<Vec<Bytes>> {
        loop {
            let buffered = self.local.take_buffered(max)?;
            if !buffered.is_empty() {
                return Ok(buffered);
            }
            if let Err(err) = self.refill(max.max(self.local.window()), wait) {
                // Items that arrived before the error still come first (if they can still
                // be acknowledged).
                return match self.local.take_buffered(max) {
                    Ok(buffered) if !buffered.is_empty() => Ok(buffered),
                    _ => Err(err),
                };
            }
        }
    }

    /// Waits up to `timeout` until a `get` would return at once: an item is prefetched
    /// (fetching one if needed; it stays for the next `get`) or the queue is closed and
    /// drained.
    pub(crate) fn poll(&self, timeout: Duration) -> Result<bool> {
        let wait = Wait::timeout(timeout);
        loop {
            if self.local.has_buffered() {
                return Ok(true);
            }
            match self.refill(self.local.window(), wait) {
                Ok(()) => {}
                Err(Error::Empty) => return Ok(self.local.has_buffered()),
                Err(Error::Closed) => return Ok(true),
                Err(err) => return Err(err),
            }
        }
    }

    /// With the buffer empty: waits for the prefetch in flight, if any (it is answered at
    /// once, and its items come before anything a new request could get); otherwise asks
    /// for up to `max` items, waiting as `wait` says, until they or other items are in the
    /// buffer.
    fn refill(&self, max: usize, wait: Wait) -> Result<()> {
        let outstanding = self.local.outstanding.load(Ordering::Acquire);
        if outstanding != 0 {
            return self.client().wait_answered(outstanding, &self.local.waker);
        }
        let id = self.client().next_id();
        let op = Op::GetMany {
            handle: self.handle(),
            max: u32::try_from(max).unwrap_or(u32::MAX),
            wait,
        };
        let mut frame = Vec::with_capacity(32);
        self.client()
            .encode(&ClientMsg::Request { id, op }, &[], &mut frame)?;
        self.client()
            .fetch_into(id, &frame, &self.local)
            .map(|_| ())
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
        self.local.release_credits();
        self.client().run(ops::close(self.handle()))
    }

    fn check_item(&self, len: usize) -> Result<()> {
        check_item(len, self.client().max_frame_len())
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
