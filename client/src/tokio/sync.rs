//! Locks, semaphores, events and barriers for the tokio client.

use std::fmt;
use std::time::Duration;

use ipcq_proto::{Kind, Wait};

use super::{Backend, Client, Link};
use crate::ops;
use crate::sync::Acquired;
use crate::{Error, Result};

impl Permits {
    /// A dropped guard cannot wait: the release is sent at once, and its answer ignored.
    fn release_on_drop(&self) {
        match &self.at {
            PermitsAt::Local { client, handle } => {
                let request = ops::release_permit(*handle);
                // Dropping the call abandons it. If the connection is gone, so is the permit.
                drop(client.request(request.op, &[], request.purpose, request.handle));
            }
            #[cfg(feature = "nats")]
            PermitsAt::Nats(permits) => permits.release_on_drop(),
        }
    }
}

crate::surface::sync_surface! {
    [async] [.await],
    lock: {
        /// A lock between processes that a dead process never leaves held, for tokio (see
        /// [`crate::Lock`]). A dropped `acquire` future holds nothing.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # async fn demo() -> ipcq_client::Result<()> {
        /// let client = ipcq_client::tokio::Client::connect_default().await?;
        /// let lock = client.lock("tickets").await?;
        /// let guard = lock.lock().await?; // released when `guard` is dropped
        /// if guard.owner_died() {
        ///     // the previous holder died mid-way: check what it was doing
        /// }
        /// # Ok(())
        /// # }
        /// ```
    },
    lock_guard: {
        /// Holds a [`Lock`] until dropped; the release is sent at once, without waiting for the
        /// broker's answer.
    },
    semaphore: {
        /// A bounded semaphore between processes whose permits come back when a holder dies, for
        /// tokio (see [`crate::Semaphore`]). A dropped `acquire` future holds nothing.
    },
    semaphore_guard: {
        /// Holds a permit of a [`Semaphore`] until dropped.
    },
    event: {
        /// An event between processes, for tokio (see [`crate::Event`]).
    },
    barrier: {
        /// A barrier between processes, for tokio (see [`crate::Barrier`]). A party whose `wait`
        /// future is dropped leaves without being counted and without breaking the barrier.
    },
}
