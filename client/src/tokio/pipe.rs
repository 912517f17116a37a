//! Pipe ends for the tokio client.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::Kind;
use serde::{de::DeserializeOwned, Serialize};

use super::{Client, RawQueue};
use crate::common::{decode, encode};
use crate::pipe::{End, PipeOptions};
use crate::Result;

/// One end of a pipe of raw bytes, for tokio: [`crate::RawPipeEnd`]'s operations as
/// `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
#[derive(Clone)]
pub struct RawPipeEnd {
    queue: RawQueue,
    end: End,
    options: PipeOptions,
}

impl RawPipeEnd {
    pub(crate) fn new(queue: RawQueue, end: End, options: PipeOptions) -> Self {
        RawPipeEnd {
            queue,
            end,
            options,
        }
    }

    /// The pipe's name.
    pub fn name(&self) -> &str {
        self.queue.name()
    }

    /// Which end this is.
    pub fn end(&self) -> End {
        self.end
    }

    /// How the pipe was created.
    pub fn options(&self) -> PipeOptions {
        self.options
    }

    /// Sends an item to the other end, waiting while its buffer is full.
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::send`].
    pub async fn send(&self, item: &[u8]) -> Result<()> {
        self.queue.put(item).await
    }

    /// Sends, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::send_timeout`].
    pub async fn send_timeout(&self, item: &[u8], timeout: Duration) -> Result<()> {
        self.queue.put_timeout(item, timeout).await
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::send_nowait`].
    pub async fn send_nowait(&self, item: &[u8]) -> Result<()> {
        self.queue.put_nowait(item).await
    }

    /// Receives the next item from the other end, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::recv`].
    pub async fn recv(&self) -> Result<Bytes> {
        self.queue.get().await
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::recv_timeout`].
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Bytes> {
        self.queue.get_timeout(timeout).await
    }

    /// Receives if an item is there now.
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::recv_nowait`].
    pub async fn recv_nowait(&self) -> Result<Bytes> {
        self.queue.get_nowait().await
    }

    /// Whether `recv` would return at once, waiting up to `timeout` for that (see
    /// [`crate::RawPipeEnd::poll`]).
    ///
    /// # Errors
    ///
    /// As [`crate::RawPipeEnd::poll`].
    pub async fn poll(&self, timeout: Duration) -> Result<bool> {
        self.queue.poll(timeout).await
    }

    /// Closes this end for good (see [`crate::RawPipeEnd::close`]).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`](crate::Error::BrokerGone).
    pub async fn close(&self) -> Result<()> {
        self.queue.close().await
    }
}

impl fmt::Debug for RawPipeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPipeEnd")
            .field("name", &self.name())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// One end of a pipe carrying `T`s (postcard), for tokio. See [`RawPipeEnd`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> ipcq_client::Result<()> {
/// use ipcq_client::End;
///
/// let client = ipcq_client::tokio::Client::connect_default().await?;
/// let parent = client.pipe::<String>("chat", End::Zero).await?;
/// parent.send(&"ping".to_string()).await?;
/// let answer = parent.recv().await?;
/// # Ok(())
/// # }
/// ```
pub struct PipeEnd<T> {
    raw: RawPipeEnd,
    _items: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> PipeEnd<T> {
    pub(crate) fn from_raw(raw: RawPipeEnd) -> Self {
        PipeEnd {
            raw,
            _items: PhantomData,
        }
    }

    /// The raw end.
    pub fn raw(&self) -> &RawPipeEnd {
        &self.raw
    }

    /// The pipe's name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// Which end this is.
    pub fn end(&self) -> End {
        self.raw.end()
    }

    /// Sends an item (see [`RawPipeEnd::send`]).
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::send`], and [`Error::Codec`](crate::Error::Codec).
    pub async fn send(&self, item: &T) -> Result<()> {
        self.raw.send(&encode(item)?).await
    }

    /// Sends, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::send_timeout`].
    pub async fn send_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.raw.send_timeout(&encode(item)?, timeout).await
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::send_nowait`].
    pub async fn send_nowait(&self, item: &T) -> Result<()> {
        self.raw.send_nowait(&encode(item)?).await
    }

    /// Receives the next item (see [`RawPipeEnd::recv`]).
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::recv`], and [`Error::Codec`](crate::Error::Codec).
    pub async fn recv(&self) -> Result<T> {
        decode(&self.raw.recv().await?)
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::recv_timeout`].
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        decode(&self.raw.recv_timeout(timeout).await?)
    }

    /// Receives if an item is there now.
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::recv_nowait`].
    pub async fn recv_nowait(&self) -> Result<T> {
        decode(&self.raw.recv_nowait().await?)
    }

    /// Whether `recv` would return at once (see [`RawPipeEnd::poll`]).
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::poll`].
    pub async fn poll(&self, timeout: Duration) -> Result<bool> {
        self.raw.poll(timeout).await
    }

    /// Closes this end (see [`RawPipeEnd::close`]).
    ///
    /// # Errors
    ///
    /// As [`RawPipeEnd::close`].
    pub async fn close(&self) -> Result<()> {
        self.raw.close().await
    }
}

impl<T> Clone for PipeEnd<T> {
    fn clone(&self) -> Self {
        PipeEnd {
            raw: self.raw.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for PipeEnd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeEnd")
            .field("name", &self.raw.name())
            .field("end", &self.raw.end)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens end `end` of the duplex pipe `name` (as [`crate::Client::pipe`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe`].
    pub async fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
    ) -> Result<PipeEnd<T>> {
        self.pipe_with(name, end, PipeOptions::default()).await
    }

    /// Opens end `end` of the pipe `name` created with `options`.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe_with`].
    pub async fn pipe_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
        options: PipeOptions,
    ) -> Result<PipeEnd<T>> {
        self.raw_pipe(name, end, options)
            .await
            .map(PipeEnd::from_raw)
    }

    /// Opens end `end` of the pipe `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe_with`].
    pub async fn raw_pipe(&self, name: &str, end: End, options: PipeOptions) -> Result<RawPipeEnd> {
        let kind = Kind::PipeEnd {
            duplex: options.is_duplex(),
            capacity: options.get_capacity() as u64,
            end: end.index(),
        };
        let handle = self.open(name, kind).await?;
        let queue = RawQueue::new(self.hold(handle), name, options.get_capacity());
        Ok(RawPipeEnd::new(queue, end, options))
    }
}
