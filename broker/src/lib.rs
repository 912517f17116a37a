//! The ipcq broker: named bounded queues served over a local socket, to run as its own
//! process (`ipcq-broker`) or embedded in an application.
//!
//! # Layout
//!
//! - [`Config`]: address and limits;
//! - [`serve`]: runs a broker on the caller's tokio runtime until a future completes;
//! - [`Broker`]: runs one on a thread of its own, with an idempotent `shutdown`;
//! - inside: `server` (socket, accept loop, shutdown), `session` (one connection: its
//!   requests carried out), `connection` (the read side: frames, large ones in their own
//!   allocation), `link` (the write side: answers queued per connection, written at the end
//!   of each batch of requests or by the connection's writer task, and the bound on what a
//!   client leaves unread), `peer` (a client as the objects see it: where its answers go,
//!   and the ledger of items delivered to it, with their leases, which knows queues only
//!   as a `Source` of items), `registry` (objects by name), `objects` (queues, pipes, locks and semaphores,
//!   events, barriers; every request parked on any of them is a `Parked` waiter, with its
//!   timer and what the object keeps with it), `budget` (the broker-wide byte budget).
//!
//! # Hello, world!
//!
//! ```no_run
//! use ipcq_broker::{Broker, Config};
//!
//! let broker = Broker::start(Config::new().addr("/tmp/ipcq-hello.sock"))?;
//! // Clients connect to broker.addr() until the handle is dropped.
//! drop(broker);
//! # Ok::<(), ipcq_broker::Error>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod broker;
mod budget;
mod config;
mod connection;
mod error;
mod link;
mod objects;
mod peer;
mod registry;
mod server;
mod session;
#[cfg(target_os = "linux")]
mod share;
#[cfg(not(target_os = "linux"))]
#[path = "share_none.rs"]
mod share;

pub use broker::Broker;
pub use config::{Config, DEFAULT_SLOT_SIZE};
pub use error::Error;
pub use server::serve;
