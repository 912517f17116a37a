//! Queue handles for the tokio client.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::tokio::sync::Notify;
use bytes::Bytes;
use ipcq_proto::{ClientMsg, Op, QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use super::{remaining, unexpected, Client, Purpose};
use crate::common::{
    average_len, check_item, credit_request, decode, encode, frames_of, lens, release_msg, Credits,
    Grant,
};
use crate::inbox::Inbox;
use crate::ops;
use crate::{Error, Result};

/// What one connection knows of one queue (or pipe end), shared by every handle on it:
/// credits (slots the broker reserved for this connection's puts) and fetched items not
/// yet handed to the application.
pub(crate) struct Local {
    client: Client,
    handle: u32,
    credits: Credits,
    /// Delivered items not yet handed out, and the application's pace.
    inbox: Inbox,
    /// Items were added to the inbox.
    arrived: Notify,
}

impl Local {
    pub(crate) fn new(client: Client, handle: u32) -> Self {
        Local {
            client,
            handle,
            credits: Credits::default(),
            inbox: Inbox::new(),
            arrived: Notify::new(),
        }
    }

    pub(crate) fn add_credits(&self, grant: Grant) {
        self.credits.add(grant);
    }

    /// Gives every unused credit back to the broker.
    pub(crate) fn release_credits(&self) {
        if let Some(msg) = release_msg(self.handle, self.credits.take_all()) {
            // If the connection is gone, so are the credits.
            let _ = self.client.send_msg(&msg);
        }
    }

    /// Takes up to `max` fetched items and acknowledges them: from now on they are the
    /// application's.
    ///
    /// # Errors
    ///
    /// The connection's error when the acknowledgement cannot be written: the broker gives
    /// the items back to the queue when it sees the connection end, so they are not handed
    /// out here too (they would be delivered twice); the rest of the buffer goes with them.
    fn take_buffered(&self, max: usize) -> Result<Vec<Bytes>> {
        let Some(taken) = self.inbox.take(max) else {
            return Ok(Vec::new());
        };
        if let Err(err) = self.send_all(&taken.acks) {
            drop(self.inbox.give_back());
            return Err(err);
        }
        Ok(taken.items)
    }

    /// Sends one-way messages (acknowledgements, returns) in one write.
    ///
    /// # Errors
    ///
    /// The connection's error when it is gone: the broker settles the deliveries itself.
    fn send_all(&self, msgs: &[ClientMsg]) -> Result<()> {
        let mut frame = Vec::new();
        for msg in msgs {
            // A few bytes each: they always fit.
            let _ = self.client.encode(msg, &[], &mut frame);
        }
        if frame.is_empty() {
            return Ok(());
        }
        self.client.send(&frame)
    }

    /// Keeps delivered items for the next gets, behind those already kept.
    pub(crate) fn receive(&self, tag: u64, items: Vec<Bytes>) {
        if items.is_empty() {
            return;
        }
        self.inbox.receive(tag, items, None);
        self.arrived.notify_waiters();
    }

    /// How many items to fetch now, at the application's recent pace (at least 1).
    fn window(&self) -> usize {
        self.inbox.window()
    }
}

impl Drop for Local {
    /// The last handle is gone: fetched items go back to the head of the queue, unused
    /// credits back to the broker.
    fn drop(&mut self) {
        // If the connection is gone, the broker gives the items back itself.
        let _ = self.send_all(&self.inbox.give_back());
        self.release_credits();
    }
}

/// A handle on a broker queue of raw bytes, for tokio: [`crate::RawQueue`]'s operations
/// as `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
/// `Clone + Send + Sync`; cloning is shallow.
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

    /// How many items a `get` may fetch in one round trip (see
    /// [`crate::RawQueue::set_prefetch`]; 1 is strict fair dispatch).
    pub fn set_prefetch(&self, items: usize) {
        self.local.inbox.set_prefetch(items);
    }

    /// The current prefetch window.
    pub fn prefetch(&self) -> usize {
        self.local.inbox.prefetch()
    }

    /// Puts an item, waiting while the queue is full. `Ok` means the item is put; a future
    /// dropped before it returns has put nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::TooLarge`] (nothing is sent), [`Error::BrokerGone`].
    pub async fn put(&self, item: &[u8]) -> Result<()> {
        self.put_wait(item, Wait::Block).await
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if there was no room in time; otherwise as [`RawQueue::put`].
    pub async fn put_timeout(&self, item: &[u8], timeout: Duration) -> Result<()> {
        self.put_wait(item, Wait::timeout(timeout)).await
    }

    /// Puts an item if there is room now (one round trip unless a slot is already held).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if there is none; otherwise as [`RawQueue::put`].
    pub async fn put_nowait(&self, item: &[u8]) -> Result<()> {
        self.put_wait(item, Wait::NoWait).await
    }

    async fn put_wait(&self, item: &[u8], wait: Wait) -> Result<()> {
        check_item(item.len(), self.client().max_frame_len())?;
        let start = Instant::now();
        loop {
            // A credit is a slot already reserved: the item goes at once, and nothing after
            // this point waits, so a dropped put has put nothing.
            if self.local.credits.take([item.len()]) == 1 {
                let mut frame = Vec::with_capacity(16 + item.len());
                let msg = ClientMsg::Send {
                    handle: self.handle(),
                };
                self.client().encode(&msg, &[item], &mut frame)?;
                return self.client().send(&frame);
            }
            // Credits left were granted for smaller items: they go back, or the slots they
            // hold could be the room this put waits for.
            self.local.release_credits();
            self.wait_room(
                item.len(),
                credit_request(item.len()),
                remaining(wait, start),
            )
            .await?;
        }
    }

    /// Waits for a slot for an item of `len` bytes; the reader adds it and the credits
    /// granted with it to this handle.
    async fn wait_room(&self, len: usize, credits: u32, wait: Wait) -> Result<()> {
        let op = Op::WaitRoom {
            handle: self.handle(),
            len: u32::try_from(len).unwrap_or(u32::MAX),
            wait,
            credits,
        };
        let call = self
            .client()
            .request(op, &[], Purpose::Room, self.handle())?;
        match call.await?.0 {
            Reply::Accepted { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Puts all `items` in order, waiting for room as needed, as many per write as there
    /// are slots. Dropped before it returns, it has put a prefix of the items.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put`]; on an error, a prefix of the items is in the queue.
    pub async fn put_many<I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let items: Vec<I::Item> = items.into_iter().collect();
        let items: Vec<&[u8]> = items.iter().map(AsRef::as_ref).collect();
        for batch in frames_of(&items, self.client().max_frame_len())? {
            let mut rest = &batch[..];
            while !rest.is_empty() {
                let credited = self.local.credits.take(rest.iter().map(|item| item.len()));
                if credited == 0 {
                    // As in `put_wait`: credits granted for smaller items go back first.
                    self.local.release_credits();
                    let want = credit_request(average_len(rest));
                    self.wait_room(rest[0].len(), want, Wait::Block).await?;
                    continue;
                }
                let (on_credit, after) = rest.split_at(credited);
                let msg = ClientMsg::SendMany {
                    handle: self.handle(),
                    lens: lens(on_credit),
                };
                let mut frame =
                    Vec::with_capacity(48 + on_credit.iter().map(|i| i.len() + 5).sum::<usize>());
                self.client().encode(&msg, on_credit, &mut frame)?;
                self.client().send(&frame)?;
                rest = after;
            }
        }
        Ok(())
    }

    /// Takes the item at the head, waiting while the queue is empty. A future dropped
    /// before it returns has taken nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the queue is closed and drained; [`Error::BrokerGone`].
    pub async fn get(&self) -> Result<Bytes> {
        Ok(self.fetch(1, Wait::Block).await?.swap_remove(0))
    }

    /// Takes the item at the head, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came in time; otherwise as [`RawQueue::get`].
    pub async fn get_timeout(&self, timeout: Duration) -> Result<Bytes> {
        Ok(self.fetch(1, Wait::timeout(timeout)).await?.swap_remove(0))
    }

    /// Takes the item at the head if there is one now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if there is none; otherwise as [`RawQueue::get`].
    pub async fn get_nowait(&self) -> Result<Bytes> {
        Ok(self.fetch(1, Wait::NoWait).await?.swap_remove(0))
    }

    /// Takes between 1 and `max` items, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `max` is 0; otherwise as [`RawQueue::get`].
    pub async fn get_many(&self, max: usize) -> Result<Vec<Bytes>> {
        self.get_many_wait(max, Wait::Block).await
    }

    /// Like [`get_many`](RawQueue::get_many), waiting at most `timeout` for the first item.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no item came in time; otherwise as [`RawQueue::get_many`].
    pub async fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<Bytes>> {
        self.get_many_wait(max, Wait::timeout(timeout)).await
    }

    async fn get_many_wait(&self, max: usize, wait: Wait) -> Result<Vec<Bytes>> {
        if max == 0 {
            return Err(Error::Invalid("get_many needs max >= 1".into()));
        }
        self.fetch(max, wait).await
    }

    /// Hands out up to `max` items (at least one): fetched ones if there are any, else
    /// those of a round trip that waits as asked and fetches up to the prefetch window.
    /// While it waits, items another task's fetch brought are taken instead, and the
    /// request is withdrawn.
    async fn fetch(&self, max: usize, wait: Wait) -> Result<Vec<Bytes>> {
        let start = Instant::now();
        loop {
            let arrived = self.local.arrived.notified();
            ::tokio::pin!(arrived);
            arrived.as_mut().enable();
            let buffered = self.local.take_buffered(max)?;
            if !buffered.is_empty() {
                return Ok(buffered);
            }
            let op = Op::GetMany {
                handle: self.handle(),
                max: u32::try_from(max.max(self.local.window())).unwrap_or(u32::MAX),
                wait: remaining(wait, start),
            };
            let call = self
                .client()
                .request(op, &[], Purpose::Get, self.handle())?;
            ::tokio::select! {
                biased;
                // Dropping `call` withdraws the request; if its answer came meanwhile, its
                // items join the buffer behind these.
                () = &mut arrived => {}
                answer = call => match answer {
                    Ok((Reply::Items { tag, lens, .. }, tail)) => {
                        let items = ipcq_proto::split_items(tail, &lens)
                            .map_err(|err| Error::Protocol(err.to_string()))?;
                        // Behind items kept from earlier answers, which came first. (Another
                        // task on this handle may take them first: then this one goes on.)
                        self.local.receive(tag, items);
                        let taken = self.local.take_buffered(max)?;
                        if !taken.is_empty() {
                            return Ok(taken);
                        }
                    }
                    Ok((other, _)) => return Err(unexpected(&other)),
                    Err(err) => {
                        // Items another task fetched meanwhile still come first (if they
                        // can still be acknowledged).
                        return match self.local.take_buffered(max) {
                            Ok(buffered) if !buffered.is_empty() => Ok(buffered),
                            _ => Err(err),
                        };
                    }
                },
            }
        }
    }

    /// Waits up to `timeout` until a `get` would return at once: an item is fetched (it
    /// stays for the next `get`) or the queue is closed and drained.
    pub(crate) async fn poll(&self, timeout: Duration) -> Result<bool> {
        if !self.local.inbox.is_empty() {
            return Ok(true);
        }
        let op = Op::GetMany {
            handle: self.handle(),
            max: u32::try_from(self.local.window()).unwrap_or(u32::MAX),
            wait: Wait::timeout(timeout),
        };
        let call = self
            .client()
            .request(op, &[], Purpose::Get, self.handle())?;
        match call.await {
            Ok((Reply::Items { tag, lens, .. }, tail)) => {
                let items = ipcq_proto::split_items(tail, &lens)
                    .map_err(|err| Error::Protocol(err.to_string()))?;
                self.local.receive(tag, items);
                Ok(true)
            }
            Ok((other, _)) => Err(unexpected(&other)),
            Err(Error::Empty) => Ok(!self.local.inbox.is_empty()),
            Err(Error::Closed) => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// Marks one item as processed, as `JoinableQueue.task_done`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when called more times than items were put;
    /// [`Error::BrokerGone`].
    pub async fn task_done(&self) -> Result<()> {
        self.client().run(ops::task_done(self.handle())).await
    }

    /// Waits until every item put has been marked done, as `JoinableQueue.join`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the queue is removed.
    pub async fn join(&self) -> Result<()> {
        self.join_for(Wait::Block).await.map(|_| ())
    }

    /// Waits at most `timeout` for [`join`](RawQueue::join); returns whether every item
    /// was marked done.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::join`].
    pub async fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_for(Wait::timeout(timeout)).await
    }

    async fn join_for(&self, wait: Wait) -> Result<bool> {
        self.client().run(ops::join(self.handle(), wait)).await
    }

    /// Items put and not yet taken (see [`crate::RawQueue::len`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn len(&self) -> Result<usize> {
        Ok(usize::try_from(self.info().await?.len).unwrap_or(usize::MAX))
    }

    /// Whether [`len`](RawQueue::len) is 0.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.info().await?.len == 0)
    }

    /// Whether a put that needs room now would fail (see [`crate::RawQueue::is_full`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_full(&self) -> Result<bool> {
        Ok(self.info().await?.full)
    }

    /// Whether the queue has been closed.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_closed(&self) -> Result<bool> {
        Ok(self.info().await?.closed)
    }

    async fn info(&self) -> Result<QueueInfo> {
        self.client().run(ops::info(self.handle())).await
    }

    /// Closes the queue for everyone (see [`crate::RawQueue::close`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn close(&self) -> Result<()> {
        self.local.release_credits();
        self.client().run(ops::close(self.handle())).await
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

/// A handle on a broker queue of `T`s (postcard), for tokio: [`crate::Queue`]'s operations
/// as `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> ipcq_client::Result<()> {
/// let client = ipcq_client::tokio::Client::connect_default().await?;
/// let jobs = client.queue::<Option<u64>>("jobs", 64).await?;
/// jobs.put(&Some(7)).await?;
/// jobs.put(&None).await?;
/// while let Some(job) = jobs.get().await? {
///     println!("job {job}");
/// }
/// # Ok(())
/// # }
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

    /// The prefetch window.
    pub fn prefetch(&self) -> usize {
        self.raw.prefetch()
    }

    /// Puts an item, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put`]; [`Error::Codec`].
    pub async fn put(&self, item: &T) -> Result<()> {
        self.raw.put(&encode(item)?).await
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put_timeout`]; [`Error::Codec`].
    pub async fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.raw.put_timeout(&encode(item)?, timeout).await
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put_nowait`]; [`Error::Codec`].
    pub async fn put_nowait(&self, item: &T) -> Result<()> {
        self.raw.put_nowait(&encode(item)?).await
    }

    /// Puts all `items` in order (see [`RawQueue::put_many`]).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put_many`]; [`Error::Codec`] (nothing is put).
    pub async fn put_many<'a, I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let encoded = items.into_iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.raw.put_many(encoded).await
    }

    /// Takes the item at the head, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::get`]; [`Error::Codec`] if the item is not a `T` (it has been taken
    /// all the same).
    pub async fn get(&self) -> Result<T> {
        decode(&self.raw.get().await?)
    }

    /// Takes the item at the head, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::get_timeout`]; [`Error::Codec`].
    pub async fn get_timeout(&self, timeout: Duration) -> Result<T> {
        decode(&self.raw.get_timeout(timeout).await?)
    }

    /// Takes the item at the head if there is one now.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::get_nowait`]; [`Error::Codec`].
    pub async fn get_nowait(&self) -> Result<T> {
        decode(&self.raw.get_nowait().await?)
    }

    /// Takes between 1 and `max` items, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::get_many`]; [`Error::Codec`].
    pub async fn get_many(&self, max: usize) -> Result<Vec<T>> {
        self.raw
            .get_many(max)
            .await?
            .iter()
            .map(|item| decode(item))
            .collect()
    }

    /// Like [`get_many`](Queue::get_many), waiting at most `timeout` for the first item.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::get_many_timeout`]; [`Error::Codec`].
    pub async fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>> {
        self.raw
            .get_many_timeout(max, timeout)
            .await?
            .iter()
            .map(|item| decode(item))
            .collect()
    }

    /// Marks one item as processed (see [`RawQueue::task_done`]).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::task_done`].
    pub async fn task_done(&self) -> Result<()> {
        self.raw.task_done().await
    }

    /// Waits until every item put has been marked done (see [`RawQueue::join`]).
    ///
    /// # Errors
    ///
    /// As [`RawQueue::join`].
    pub async fn join(&self) -> Result<()> {
        self.raw.join().await
    }

    /// Waits at most `timeout` for [`join`](Queue::join); returns whether it completed.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::join`].
    pub async fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.raw.join_timeout(timeout).await
    }

    /// Items put and not yet taken (see [`crate::RawQueue::len`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn len(&self) -> Result<usize> {
        self.raw.len().await
    }

    /// Whether [`len`](Queue::len) is 0.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_empty(&self) -> Result<bool> {
        self.raw.is_empty().await
    }

    /// Whether a `put_nowait` would fail now.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_full(&self) -> Result<bool> {
        self.raw.is_full().await
    }

    /// Whether the queue has been closed.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_closed(&self) -> Result<bool> {
        self.raw.is_closed().await
    }

    /// Closes the queue (see [`crate::RawQueue::close`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn close(&self) -> Result<()> {
        self.raw.close().await
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
