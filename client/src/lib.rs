//! Clients of the ipcq broker.
//!
//! ipcq gives processes that did not fork from one another the primitives of Python's
//! `multiprocessing`, held by a broker on the same machine: named bounded FIFO queues with
//! blocking, timed and non-blocking `put`/`get`.
//!
//! # Layout
//!
//! - [`Client`]: one connection to a broker, shared by threads; [`ConnectOptions`]: its
//!   time limit for connecting and the users it trusts to serve the address. With the
//!   feature `nats`, a `nats://` address connects to NATS JetStream instead, with the same
//!   API (what has no form there fails with [`Error::Unsupported`]; see
//!   `docs/scale-out.md`);
//! - [`Queue<T>`]: a typed queue handle (postcard-encoded items); [`RawQueue`]: the same
//!   over raw bytes, as the `ipcq` command line uses;
//! - [`PipeEnd<T>`] / [`RawPipeEnd`]: one end of a two-ended pipe ([`End`], [`PipeOptions`]);
//! - [`Lock`], [`Semaphore`], [`Event`], [`Barrier`]: synchronisation that a dead process
//!   never leaves stuck; joinable queues (`task_done`, `join`);
//! - [`Delivery`]: an item taken with `get_delivery`, held until its work is done
//!   (acknowledge, reject, dead-letter, lease), so that a job survives its worker;
//! - [`Select`]: the first item from any of several queues, for the blocking client;
//! - [`Error`]: everything that can fail, with `Full`, `Empty` and `Closed` as values.
//!
//! Inside, the protocol is written once and driven twice:
//!
//! - `core`: one connection's protocol state with no I/O — request ids and waiters,
//!   each handle's credits, fetched items and fetch windows, acknowledgements,
//!   withdrawals, what a dead connection fails with. It takes operations and the broker's
//!   bytes and yields bytes to write and waiters to wake; its unit tests script the
//!   broker's messages;
//! - `client` (blocking) and `tokio`: the two drivers of the core. The blocking one reads
//!   the socket on the thread that waits (no reader thread, no wake-up when nobody
//!   sleeps); the tokio one reads in a task and polls the core from its futures;
//! - `queue`, `pipe`, `sync` (and their `tokio::` twins): the handles, whose thin methods
//!   are written once in `surface` (macros expanded with `fn` and with `async fn`);
//! - `nats` (feature `nats`): the NATS backend, on `ipcq-nats`. Each public type holds
//!   its backend (a local connection, `Link`, or NATS), and the surface macros choose at
//!   the few steps that differ (put, fetch, info, close, join, acquire, release, waits);
//! - `ops` (each one-shot request and how its answer reads), `inbox` (delivered items not
//!   yet handed out, and how many to fetch next), `common` (credits counted in slots and
//!   bytes, the pace of gets, frames of items, the handshake), `connect` (address checks,
//!   server identity, time limits).
//!
//! # Hello, world!
//!
//! ```no_run
//! use ipcq_client::Client;
//!
//! // Connects to IPCQ_ADDR, or to where `ipcq-broker` listens by default.
//! let client = Client::connect_default()?;
//! let greetings = client.queue::<String>("greetings", 10)?;
//! greetings.put(&"Hello, world!".to_string())?;
//! assert_eq!(greetings.get()?, "Hello, world!");
//! # Ok::<(), ipcq_client::Error>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

/// Runs a future of the NATS backend for the blocking client: to its end, on the
/// backend's runtime (the tokio client's module awaits it instead).
#[cfg(feature = "nats")]
macro_rules! remote {
    ($operation:expr) => {
        crate::nats::block($operation)
    };
}

mod client;
mod common;
mod connect;
mod core;
mod delivery;
mod error;
mod inbox;
#[cfg(feature = "nats")]
mod nats;
mod ops;
mod pipe;
mod queue;
mod select;
#[cfg(target_os = "linux")]
mod shm;
#[cfg(not(target_os = "linux"))]
#[path = "shm_none.rs"]
mod shm;
mod surface;
mod sync;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use client::Client;
pub use common::DEFAULT_PREFETCH;
pub use connect::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT};
pub use delivery::Delivery;
pub use error::{CodecError, Error, Result};
pub use pipe::{End, PipeEnd, PipeOptions, RawPipeEnd, DEFAULT_PIPE_CAPACITY};
pub use queue::{Queue, QueueOptions, RawQueue};
pub use select::Select;
pub use sync::{Acquired, Barrier, Event, Lock, LockGuard, Semaphore, SemaphoreGuard};

/// Broker figures as [`Client::stats`] returns them.
pub mod stats {
    pub use ipcq_proto::{
        BarrierStats, EventStats, Holder, ObjectDetail, ObjectStats, PermitStats, PipeStats,
        QueueStats,
    };
}

pub use ipcq_proto::{default_addr, ADDR_ENV};

/// The NATS client crate (feature `nats`), for [`ConnectOptions::nats`].
#[cfg(feature = "nats")]
pub use ipcq_nats::async_nats;
