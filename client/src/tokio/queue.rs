//! Queue handles for the tokio client.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_proto::{QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use super::{remaining, unexpected, Client, Hold};
use crate::common::{check_item, decode, encode, frames_of};
use crate::core::{Fetch, GetStep, Progress, PutStep};
use crate::ops;
use crate::queue::QueueOptions;
use crate::{Error, Result};

impl Client {
    /// Opens the queue `name` for items of type `T` (postcard), creating it with
    /// `capacity` (0 for unbounded) if it does not exist.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue`].
    pub async fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Queue<T>> {
        self.raw_queue(name, capacity).await.map(Queue::from_raw)
    }

    /// Opens the queue `name` for items of type `T`, creating it with `options` if it does
    /// not exist (as [`crate::Client::queue_with`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue_with`].
    pub async fn queue_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Queue<T>> {
        self.raw_queue_with(name, options)
            .await
            .map(Queue::from_raw)
    }

    /// Opens the queue `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue`].
    pub async fn raw_queue(&self, name: &str, capacity: usize) -> Result<RawQueue> {
        self.raw_queue_with(name, QueueOptions::new().capacity(capacity))
            .await
    }

    /// Opens the queue `name` for raw bytes, creating it with `options` if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue_with`].
    pub async fn raw_queue_with(&self, name: &str, options: QueueOptions) -> Result<RawQueue> {
        let handle = self.open(name, options.kind()).await?;
        Ok(RawQueue::new(
            self.hold(handle),
            name,
            options.get_capacity(),
        ))
    }
}

/// A handle on a broker queue of raw bytes, for tokio: [`crate::RawQueue`]'s operations
/// as `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
/// `Clone + Send + Sync`; cloning is shallow.
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

    /// How many items a `get` may fetch in one round trip (see
    /// [`crate::RawQueue::set_prefetch`]; 1 is strict fair dispatch).
    pub fn set_prefetch(&self, items: usize) {
        self.client()
            .with_core(|core| core.set_prefetch(self.handle(), items));
    }

    /// The current prefetch window.
    pub fn prefetch(&self) -> usize {
        self.client().with_core(|core| core.prefetch(self.handle()))
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
        self.put_items(&[item], wait).await.map(|_| ())
    }

    /// Puts the first of `items` at least (all of them if there are credits for them, in
    /// one write); returns how many were put. Items are handed to the connection only on
    /// slots already reserved, with no await point after: a dropped put has put nothing.
    async fn put_items(&self, items: &[&[u8]], wait: Wait) -> Result<usize> {
        let (client, handle) = (self.client(), self.handle());
        let start = Instant::now();
        loop {
            let wait = remaining(wait, start);
            match client.with_core(|core| core.put_step(handle, items, wait))? {
                PutStep::Sent(n, _) => return client.send().map(|()| n),
                // Credits asked for earlier are on their way: they come at once.
                PutStep::Await(id) => {
                    let _ = client.send();
                    client
                        .wait(|core, waker| core.poll_settled(id, handle, Some(waker)))
                        .await?;
                }
                // Dropped while waiting, the request is withdrawn; room granted to it stays
                // with this client's next puts.
                PutStep::Room(id) => {
                    let _ = client.send();
                    match client.call(id).await?.0 {
                        Reply::Accepted { .. } => {}
                        other => return Err(unexpected(&other)),
                    }
                }
            }
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
                let put = self.put_items(rest, Wait::Block).await?;
                rest = &rest[put..];
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
        let (client, handle) = (self.client(), self.handle());
        let start = Instant::now();
        loop {
            let wait = remaining(wait, start);
            let step = client.with_core(|core| core.get_step(handle, max, wait, Instant::now()))?;
            let fetch = match step {
                // Theirs once acknowledged (the acknowledgement is handed to the connection
                // with no await point after).
                GetStep::Items(items, _) => return client.send().map(|()| items),
                GetStep::Wait(fetch) => fetch,
            };
            if let Err(err) = self.wait_fetch(fetch).await {
                // Items another task fetched meanwhile still come first (if they can still
                // be acknowledged).
                let step = client
                    .with_core(|core| core.get_step(handle, max, Wait::NoWait, Instant::now()));
                return match step {
                    Ok(GetStep::Items(items, _)) => client.send().map(|()| items),
                    Ok(GetStep::Wait(fetch)) => {
                        drop(Withdraw { client, fetch });
                        Err(err)
                    }
                    Err(_) => Err(err),
                };
            }
        }
    }

    /// Waits until `fetch` is answered or items arrive otherwise. Its own request is
    /// withdrawn when it ends either way, or when the future is dropped: items of an answer
    /// already on its way join the inbox for the next get.
    async fn wait_fetch(&self, fetch: Fetch) -> Result<()> {
        let (client, handle) = (self.client(), self.handle());
        let _ = client.send();
        let _withdraw = Withdraw { client, fetch };
        match client
            .wait(|core, waker| core.poll_fetch(fetch, handle, Some(waker)))
            .await?
        {
            Progress::Answer(Reply::Items { .. }) | Progress::Moved => Ok(()),
            Progress::Answer(other) => Err(unexpected(&other)),
        }
    }

    /// Waits up to `timeout` until a `get` would return at once: an item is fetched (it
    /// stays for the next `get`) or the queue is closed and drained.
    pub(crate) async fn poll(&self, timeout: Duration) -> Result<bool> {
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
            match self.wait_fetch(fetch).await {
                Ok(()) => {}
                Err(Error::Empty) => return Ok(client.with_core(|core| core.has_items(handle))),
                Err(Error::Closed) => return Ok(true),
                Err(err) => return Err(err),
            }
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
        self.client()
            .with_core(|core| core.release_credits(self.handle()));
        self.client().run(ops::close(self.handle())).await
    }
}

/// Withdraws a getter's own request when it stops waiting (answered, or dropped).
struct Withdraw<'a> {
    client: &'a Client,
    fetch: Fetch,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Fetch::Own(id) = self.fetch {
            // Nothing if it was answered; otherwise it is cancelled, and its answer settled.
            self.client.with_core(|core| core.abandon(id));
            let _ = self.client.send();
        }
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
