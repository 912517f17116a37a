//! Locks, semaphores and events held by the broker, safe when a process dies.

use std::fmt;
use std::time::Duration;

use ipcq_proto::{Kind, Wait};

use crate::client::{Backend, Client, Link};
use crate::ops;
use crate::{Error, Result};

/// A permit of a [`Lock`] or [`Semaphore`] was acquired.
#[must_use = "check owner_died: the previous holder may have left its work half-done"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    owner_died: bool,
}

impl Acquired {
    pub(crate) fn new(owner_died: bool) -> Self {
        Acquired { owner_died }
    }

    /// Whether the permit came back from a holder whose client went away without releasing
    /// it (as a robust mutex's `EOWNERDEAD`): what it guarded may be half-done.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Permits {
    /// A dropped guard releases at once, and waits for the broker's answer: when the drop
    /// returns, the permit is free for others. (On NATS the release is sent by a task.)
    fn release_on_drop(&self) {
        match &self.at {
            // If the broker is gone, so is the permit; nothing is left to give back.
            PermitsAt::Local { .. } => drop(self.release()),
            #[cfg(feature = "nats")]
            PermitsAt::Nats(permits) => permits.release_on_drop(),
        }
    }
}

crate::surface::sync_surface! {
    [] [],
    lock: {
        /// A lock between processes, as Python's `multiprocessing.Lock`, that a dead process never
        /// leaves held.
        ///
        /// The broker knows which client holds the lock. If that client's connection goes away
        /// without releasing it (the process exited or was killed), the lock is released and the
        /// next acquirer is told through [`Acquired::owner_died`]. Only the holder may release it.
        /// `Lock` is `Clone + Send + Sync`; clones share the client, and so the ownership.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// let client = ipcq_client::Client::connect_default()?;
        /// let lock = client.lock("tickets")?;
        /// let guard = lock.lock()?; // released when `guard` is dropped
        /// if guard.owner_died() {
        ///     // the previous holder died mid-way: check what it was doing
        /// }
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
    lock_guard: {
        /// Holds a [`Lock`] until dropped.
    },
    semaphore: {
        /// A bounded semaphore between processes, as Python's `multiprocessing.BoundedSemaphore`,
        /// whose permits come back when a holder dies.
        ///
        /// Each permit is held by the client that acquired it; only a holder may release one (so
        /// nobody can release above the count), and a client whose connection goes away gives its
        /// permits back, the next acquirer being told through [`Acquired::owner_died`].
        /// `Semaphore` is `Clone + Send + Sync`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// let client = ipcq_client::Client::connect_default()?;
        /// let room = client.semaphore("room", 4)?;
        /// room.acquire()?;
        /// // at most 4 clients here at once
        /// room.release()?;
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
    semaphore_guard: {
        /// Holds a permit of a [`Semaphore`] until dropped.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// let client = ipcq_client::Client::connect_default()?;
        /// let rooms = client.semaphore("rooms", 4)?;
        /// let _room = rooms.enter()?; // given back at the end of the scope
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
    event: {
        /// An event between processes, as Python's `multiprocessing.Event`: a flag that waiters
        /// wait to see set. `Event` is `Clone + Send + Sync`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// let client = ipcq_client::Client::connect_default()?;
        /// let green = client.event("green-light")?;
        /// if !green.wait_timeout(std::time::Duration::from_secs(1))? {
        ///     println!("still red");
        /// }
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
    barrier: {
        /// A barrier between processes, as Python's `multiprocessing.Barrier`: `parties` waits
        /// release it, and all go on together.
        ///
        /// A party whose wait runs out, or whose client goes away while waiting, breaks the
        /// barrier: everyone waiting gets [`Error::Broken`] (Python's `BrokenBarrierError`), and
        /// so does every later wait until [`reset`](Barrier::reset). `Barrier` is
        /// `Clone + Send + Sync`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// let client = ipcq_client::Client::connect_default()?;
        /// let start = client.barrier("start", 3)?;
        /// let place = start.wait()?; // 0, 1 or 2: the order of arrival
        /// # Ok::<(), ipcq_client::Error>(())
        /// ```
    },
}
