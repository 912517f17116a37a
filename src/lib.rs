//! ipcq: an inter-process message broker for one machine.
//!
//! A broker owns named bounded FIFO queues and serves them over a local socket (a Unix
//! domain socket; a named pipe on Windows). Processes that did not fork from one another
//! meet by name and use them as they would Python's `multiprocessing.Queue`: `put`/`get`,
//! with timed and non-blocking variants, and with nothing lost when a process dies.
//!
//! # Layout
//!
//! - [`Client`], [`Queue`], [`RawQueue`], [`PipeEnd`], [`RawPipeEnd`], [`Lock`],
//!   [`Semaphore`], [`Event`], [`Barrier`], [`Error`]: the blocking client (crate
//!   `ipcq-client`);
//! - [`tokio`] (feature `tokio`, on by default): the same for tokio, as `async fn`s;
//! - [`broker`] (feature `broker`, on by default): the embeddable broker (crate
//!   `ipcq-broker`);
//! - the programs `ipcq-broker` (the broker process) and `ipcq` (the command line) are in
//!   the package `ipcq-cli` (`cli/`), so that linking this library compiles none of what
//!   only they need.
//!
//! # Hello, world!
//!
//! ```no_run
//! use ipcq::broker::{Broker, Config};
//! use ipcq::Client;
//!
//! let broker = Broker::start(Config::new().addr("/tmp/ipcq-hello.sock"))?;
//! let client = Client::connect(broker.addr())?;
//! let queue = client.queue::<String>("greetings", 10)?;
//! queue.put(&"Hello, world!".to_string())?;
//! assert_eq!(queue.get()?, "Hello, world!");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub use ipcq_client::{
    default_addr, stats, Acquired, Barrier, Client, CodecError, ConnectOptions, Delivery, End,
    Error, Event, Lock, LockGuard, PipeEnd, PipeOptions, Queue, QueueOptions, RawPipeEnd, RawQueue,
    Result, Select, Semaphore, SemaphoreGuard, ADDR_ENV, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PIPE_CAPACITY, DEFAULT_PREFETCH,
};

/// The NATS client crate (feature `nats`), for [`ConnectOptions::nats`].
#[cfg(feature = "nats")]
pub use ipcq_client::async_nats;

/// The tokio client (feature `tokio`, on by default): the blocking client's operations as
/// cancel-safe `async fn`s.
#[cfg(feature = "tokio")]
pub use ipcq_client::tokio;

/// The embeddable broker: [`Broker`](broker::Broker) runs one on its own thread,
/// [`serve`](broker::serve) on the caller's tokio runtime.
#[cfg(feature = "broker")]
pub mod broker {
    pub use ipcq_broker::{serve, Broker, Config, Error, DEFAULT_SLOT_SIZE};
}

/// The README's examples, compiled as doctests so that they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
