//! Pipe ends: Python's `multiprocessing.Pipe`, between processes that meet by name.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::Kind;
use serde::{de::DeserializeOwned, Serialize};

use crate::client::Client;
use crate::common::{decode, encode};
use crate::queue::RawQueue;
use crate::Result;

/// Which end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// End 0: in a simplex pipe, the receiving end.
    Zero,
    /// End 1: in a simplex pipe, the sending end.
    One,
}

impl End {
    /// The end's number, 0 or 1.
    pub fn index(self) -> u8 {
        match self {
            End::Zero => 0,
            End::One => 1,
        }
    }

    /// The other end.
    pub fn other(self) -> End {
        match self {
            End::Zero => End::One,
            End::One => End::Zero,
        }
    }
}

/// How a pipe is created; every opener must ask for the same, or get
/// [`Error::Conflict`](crate::Error::Conflict).
///
/// # Examples
///
/// ```
/// use ipcq_client::PipeOptions;
///
/// let options = PipeOptions::new().duplex(false).capacity(16);
/// assert!(!options.is_duplex());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeOptions {
    duplex: bool,
    capacity: usize,
}

impl Default for PipeOptions {
    fn default() -> Self {
        PipeOptions {
            duplex: true,
            capacity: DEFAULT_PIPE_CAPACITY,
        }
    }
}

/// Items buffered per direction of a pipe unless set otherwise.
pub const DEFAULT_PIPE_CAPACITY: usize = 1024;

impl PipeOptions {
    /// Duplex, [`DEFAULT_PIPE_CAPACITY`] items per direction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether both ends send and receive. A simplex pipe (`false`, as Python's
    /// `Pipe(duplex=False)`) has end 0 only receive and end 1 only send.
    ///
    /// Default: `true`.
    #[must_use]
    pub fn duplex(mut self, duplex: bool) -> Self {
        self.duplex = duplex;
        self
    }

    /// Items buffered per direction; a `send` waits while the other end's buffer is full.
    /// 0 means unbounded (the broker's byte budgets still apply).
    ///
    /// Default: [`DEFAULT_PIPE_CAPACITY`].
    #[must_use]
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// Whether the pipe is duplex.
    pub fn is_duplex(&self) -> bool {
        self.duplex
    }

    /// Items buffered per direction (0: unbounded).
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }
}

crate::surface::pipe_surface! {
    [] [],
    raw: {
        /// One end of a pipe, sending and receiving raw bytes.
        ///
        /// An end is held by one client at a time: another client that opens it gets
        /// [`Error::Busy`](crate::Error::Busy). It is held until [`close`](RawPipeEnd::close) or
        /// until its client's connection closes; then it stays closed, and the other end receives
        /// what was already sent and then [`Error::Closed`](crate::Error::Closed) (Python's
        /// `EOFError`), and its sends fail with `Closed`. `RawPipeEnd` is `Clone + Send + Sync`.
    },
    typed: {
        /// One end of a pipe carrying `T`s, encoded with postcard. See [`RawPipeEnd`] for the
        /// semantics; `PipeEnd<T>` is `Clone + Send + Sync` whatever `T` is.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use ipcq_client::{Client, End};
        ///
        /// let client = Client::connect_default()?;
        /// let parent = client.pipe::<String>("chat", End::Zero)?;
        /// parent.send(&"ping".to_string())?;
        /// // ... a process holding End::One answers ...
        /// let answer = parent.recv()?;
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
}

impl Client {
    /// Opens end `end` of the duplex pipe `name`, creating the pipe (with
    /// [`PipeOptions::default`]) if it does not exist, and holds that end for this client.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`](crate::Error::Busy) when another client holds that end; [`Error::Closed`](crate::Error::Closed) when the end
    /// was closed (pipes are not reopened); [`Error::Conflict`](crate::Error::Conflict) when `name` exists as
    /// something else; [`Error::Invalid`](crate::Error::Invalid) for a bad name;
    /// [`Error::Unsupported`](crate::Error::Unsupported) on NATS, which has no pipes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use ipcq_client::{Client, End};
    ///
    /// let client = Client::connect_default()?;
    /// let end = client.pipe::<u32>("numbers", End::One)?;
    /// end.send(&42)?;
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
    ) -> Result<PipeEnd<T>> {
        self.pipe_with(name, end, PipeOptions::default())
    }

    /// Opens end `end` of the pipe `name` created with `options` (duplex or simplex,
    /// buffer per direction). Typed as [`Client::pipe`].
    ///
    /// # Errors
    ///
    /// As [`Client::pipe`]; [`Error::Conflict`](crate::Error::Conflict) when the pipe exists with other options.
    pub fn pipe_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
        options: PipeOptions,
    ) -> Result<PipeEnd<T>> {
        self.raw_pipe(name, end, options).map(PipeEnd::from_raw)
    }

    /// Opens end `end` of the pipe `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`Client::pipe_with`].
    pub fn raw_pipe(&self, name: &str, end: End, options: PipeOptions) -> Result<RawPipeEnd> {
        let kind = Kind::PipeEnd {
            duplex: options.is_duplex(),
            capacity: options.get_capacity() as u64,
            end: end.index(),
        };
        let link = self.local("pipes")?;
        let handle = link.open(name, kind)?;
        let queue = RawQueue::local(link.hold(handle), name, options.get_capacity());
        Ok(RawPipeEnd::new(queue, end, options))
    }
}
