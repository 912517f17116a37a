//! Shared-memory rings for ipcq's queues: items move between processes through memory
//! they all map, with no system call while both sides are busy, and no lock that a dead
//! process could hold.
//!
//! - [`ring`]: the algorithm, a bounded multi-producer multi-consumer FIFO of fixed-size
//!   slots whose every state change is one atomic operation, and [`Ring::recover`], which
//!   takes back what a dead process held (its half-written items are passed over, the
//!   items it had claimed are given back). It is written over a [`Memory`], so that the
//!   same code runs on shared memory and, in the tests, under the loom model checker.
//! - `region` (Linux): [`SharedRing`], the ring in a memfd that the broker makes and seals
//!   and its clients map, with futexes to wake a side that sleeps.
//! - `raw`: every `unsafe` block, each with its reason.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod raw;
#[cfg(target_os = "linux")]
mod region;
pub mod ring;

#[cfg(target_os = "linux")]
pub use region::{RegionMemory, SharedRing, Take, SPIN};
pub use ring::{Memory, Owner, PushError, Recovered, Ring, Word, CLOSED, FRONT, SOCKET};
