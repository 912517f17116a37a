//! Queue handles: raw bytes, and typed on top of them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::{Op, QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use crate::client::{unexpected, Client};
use crate::error::CodecError;
use crate::{Error, Result};

/// Room kept in a `put` frame for the request in front of the item, so that the reply that
/// later carries the item to a getter fits in a frame too.
const ITEM_OVERHEAD: usize = 64;

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
    client: Client,
    handle: u32,
    name: Arc<str>,
    capacity: usize,
}

impl RawQueue {
    pub(crate) fn new(client: Client, name: &str, handle: u32, capacity: usize) -> Self {
        RawQueue {
            client,
            handle,
            name: name.into(),
            capacity,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The capacity it was opened with; `None` for unbounded.
    pub fn capacity(&self) -> Option<usize> {
        (self.capacity != 0).then_some(self.capacity)
    }

    /// Puts an item, waiting while the queue is full. When it returns, the item is in the
    /// queue.
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
        let op = Op::Put {
            handle: self.handle,
            wait,
        };
        expect_done(self.client.call(op, &[item])?.0)
    }

    /// Puts all `items` in order, in as few round trips as the frame limit allows, waiting
    /// for room as needed. Other producers' items may come between them when the queue
    /// fills up.
    ///
    /// # Errors
    ///
    /// As [`RawQueue::put`]. On an error, the items before the failing batch are in the
    /// queue.
    pub fn put_many<I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let items: Vec<I::Item> = items.into_iter().collect();
        let budget = self.client.max_frame_len().saturating_sub(ITEM_OVERHEAD);
        let mut batch: Vec<&[u8]> = Vec::new();
        let mut used = 0;
        for item in &items {
            let item = item.as_ref();
            self.check_item(item.len())?;
            // Each item also costs up to 5 bytes for its length in the request.
            let cost = item.len() + 5;
            if !batch.is_empty() && used + cost > budget {
                self.put_batch(&batch)?;
                batch.clear();
                used = 0;
            }
            batch.push(item);
            used += cost;
        }
        if !batch.is_empty() {
            self.put_batch(&batch)?;
        }
        Ok(())
    }

    fn put_batch(&self, batch: &[&[u8]]) -> Result<()> {
        let lens = batch
            .iter()
            .map(|item| u32::try_from(item.len()).unwrap_or(u32::MAX))
            .collect();
        let op = Op::PutMany {
            handle: self.handle,
            lens,
        };
        expect_done(self.client.call(op, batch)?.0)
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
        let op = Op::Get {
            handle: self.handle,
            wait,
        };
        match self.client.call(op, &[])? {
            (Reply::Item { tag }, item) => {
                self.client.ack(tag, 1);
                Ok(item)
            }
            (other, _) => Err(unexpected(&other)),
        }
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
        let op = Op::GetMany {
            handle: self.handle,
            max: u32::try_from(max).unwrap_or(u32::MAX),
            wait,
        };
        match self.client.call(op, &[])? {
            (Reply::Items { tag, lens }, tail) => {
                let items = ipcq_proto::split_items(tail, &lens)
                    .map_err(|err| Error::Protocol(err.to_string()))?;
                self.client
                    .ack(tag, u32::try_from(items.len()).unwrap_or(u32::MAX));
                Ok(items)
            }
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Items put and not yet taken: those waiting in the queue plus those delivered to a
    /// getter that has not yet handed them to its application. Exact at the broker at the
    /// moment it answers.
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

    /// Whether a `put_nowait` would fail now: the queue holds `capacity` items, or its byte
    /// budget or the broker's is used up, or putters are already waiting.
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
        match self
            .client
            .call(
                Op::Info {
                    handle: self.handle,
                },
                &[],
            )?
            .0
        {
            Reply::QueueInfo(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// Closes the queue for everyone: later puts fail with [`Error::Closed`], parked
    /// putters wake with it, and getters take what is left, then get `Closed`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn close(&self) -> Result<()> {
        expect_done(
            self.client
                .call(
                    Op::Close {
                        handle: self.handle,
                    },
                    &[],
                )?
                .0,
        )
    }

    fn check_item(&self, len: usize) -> Result<()> {
        let max = self.client.max_frame_len();
        if len + ITEM_OVERHEAD > max {
            return Err(Error::TooLarge {
                len: len + ITEM_OVERHEAD,
                max,
            });
        }
        Ok(())
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

fn encode<T: Serialize>(item: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(item).map_err(|err| Error::Codec(CodecError(err)))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|err| Error::Codec(CodecError(err)))
}

fn expect_done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}
