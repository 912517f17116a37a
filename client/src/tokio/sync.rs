//! Locks, semaphores, events and barriers for the tokio client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipcq_proto::{Kind, Wait};

use super::Client;
use crate::ops;
use crate::sync::Acquired;
use crate::{Error, Result};

/// What locks and semaphores share: permits held by this client's connection.
#[derive(Clone)]
struct Permits {
    client: Client,
    handle: u32,
    name: Arc<str>,
}

impl Permits {
    async fn acquire(&self, wait: Wait) -> Result<Option<Acquired>> {
        let acquired = self.client.run(ops::acquire(self.handle, wait)).await?;
        Ok(acquired.map(Acquired::new))
    }

    async fn acquire_blocking(&self) -> Result<Acquired> {
        self.acquire(Wait::Block)
            .await?
            .ok_or_else(|| Error::Protocol("the broker refused a blocking acquire".into()))
    }

    async fn release(&self) -> Result<()> {
        self.client.run(ops::release_permit(self.handle)).await
    }

    /// Releases without waiting for the answer (a guard's drop).
    fn release_later(&self) {
        let request = ops::release_permit(self.handle);
        // Dropping the call abandons it: the release is sent, its answer ignored. If the
        // connection is gone, so is the permit.
        drop(
            self.client
                .request(request.op, &[], request.purpose, request.handle),
        );
    }
}

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
#[derive(Clone)]
pub struct Lock {
    permits: Permits,
}

impl Lock {
    /// Takes the lock, waiting as long as it takes (FIFO among waiters).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the lock was removed.
    pub async fn acquire(&self) -> Result<Acquired> {
        self.permits.acquire_blocking().await
    }

    /// Takes the lock if it comes within `timeout`; `None` if it did not.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::timeout(timeout)).await
    }

    /// Takes the lock if it is free now; `None` if it is not.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub async fn try_acquire(&self) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::NoWait).await
    }

    /// Releases the lock, which this client must hold.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if this client does not hold it; [`Error::BrokerGone`].
    pub async fn release(&self) -> Result<()> {
        self.permits.release().await
    }

    /// Takes the lock and returns a guard that releases it when dropped.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub async fn lock(&self) -> Result<LockGuard> {
        let acquired = self.permits.acquire_blocking().await?;
        Ok(LockGuard {
            permits: self.permits.clone(),
            acquired,
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.permits.name
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// Holds a [`Lock`] until dropped; the release is sent at once, without waiting for the
/// broker's answer.
pub struct LockGuard {
    permits: Permits,
    acquired: Acquired,
}

impl LockGuard {
    /// Whether the previous holder died holding the lock (see [`Acquired::owner_died`]).
    pub fn owner_died(&self) -> bool {
        self.acquired.owner_died()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.permits.release_later();
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.permits.name)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

/// A bounded semaphore between processes whose permits come back when a holder dies, for
/// tokio (see [`crate::Semaphore`]). A dropped `acquire` future holds nothing.
#[derive(Clone)]
pub struct Semaphore {
    permits: Permits,
    count: u64,
}

impl Semaphore {
    /// Takes a permit, waiting as long as it takes (FIFO among waiters).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the semaphore was removed.
    pub async fn acquire(&self) -> Result<Acquired> {
        self.permits.acquire_blocking().await
    }

    /// Takes a permit if one comes within `timeout`; `None` if none did.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::timeout(timeout)).await
    }

    /// Takes a permit if one is free now; `None` if none is.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    pub async fn try_acquire(&self) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::NoWait).await
    }

    /// Gives back a permit this client holds.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if this client holds none; [`Error::BrokerGone`].
    pub async fn release(&self) -> Result<()> {
        self.permits.release().await
    }

    /// Takes a permit and returns a guard that gives it back when dropped.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    pub async fn enter(&self) -> Result<SemaphoreGuard> {
        let acquired = self.permits.acquire_blocking().await?;
        Ok(SemaphoreGuard {
            permits: self.permits.clone(),
            acquired,
        })
    }

    /// Permits in all.
    pub fn permits(&self) -> u64 {
        self.count
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.permits.name
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name())
            .field("permits", &self.count)
            .finish_non_exhaustive()
    }
}

/// Holds a permit of a [`Semaphore`] until dropped.
pub struct SemaphoreGuard {
    permits: Permits,
    acquired: Acquired,
}

impl SemaphoreGuard {
    /// Whether the permit came back from a holder that died (see [`Acquired::owner_died`]).
    pub fn owner_died(&self) -> bool {
        self.acquired.owner_died()
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        self.permits.release_later();
    }
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("semaphore", &self.permits.name)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

/// An event between processes, for tokio (see [`crate::Event`]).
#[derive(Clone)]
pub struct Event {
    client: Client,
    handle: u32,
    name: Arc<str>,
}

impl Event {
    /// Sets the flag, waking every waiter.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn set(&self) -> Result<()> {
        self.client.run(ops::set_event(self.handle)).await
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn clear(&self) -> Result<()> {
        self.client.run(ops::clear_event(self.handle)).await
    }

    /// Whether the flag is set now.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn is_set(&self) -> Result<bool> {
        self.wait_for(Wait::NoWait).await
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the event was removed.
    pub async fn wait(&self) -> Result<()> {
        self.wait_for(Wait::Block).await.map(|_| ())
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// # Errors
    ///
    /// As [`Event::wait`].
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_for(Wait::timeout(timeout)).await
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn wait_for(&self, wait: Wait) -> Result<bool> {
        self.client.run(ops::wait_event(self.handle, wait)).await
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A barrier between processes, for tokio (see [`crate::Barrier`]). A party whose `wait`
/// future is dropped leaves without being counted and without breaking the barrier.
#[derive(Clone)]
pub struct Barrier {
    client: Client,
    handle: u32,
    name: Arc<str>,
    parties: u64,
}

impl Barrier {
    /// Waits until every party has come; returns this party's place in arrival order.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`]; [`Error::BrokerGone`].
    pub async fn wait(&self) -> Result<u64> {
        self.wait_for(Wait::Block).await
    }

    /// Waits at most `timeout`; running out breaks the barrier for everyone.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`] (also when this wait ran out); [`Error::BrokerGone`].
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.wait_for(Wait::timeout(timeout)).await
    }

    /// Mends a broken barrier; parties waiting now get [`Error::Broken`].
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub async fn reset(&self) -> Result<()> {
        self.client.run(ops::reset_barrier(self.handle)).await
    }

    /// Parties that release the barrier.
    pub fn parties(&self) -> u64 {
        self.parties
    }

    /// The barrier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn wait_for(&self, wait: Wait) -> Result<u64> {
        self.client.run(ops::wait_barrier(self.handle, wait)).await
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("name", &self.name)
            .field("parties", &self.parties)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the barrier `name` for `parties` parties (as [`crate::Client::barrier`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::barrier`].
    pub async fn barrier(&self, name: &str, parties: u64) -> Result<Barrier> {
        let handle = self.open(name, Kind::Barrier { parties }).await?;
        Ok(Barrier {
            client: self.clone(),
            handle,
            name: name.into(),
            parties,
        })
    }

    /// Opens the lock `name` (as [`crate::Client::lock`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::lock`].
    pub async fn lock(&self, name: &str) -> Result<Lock> {
        let handle = self.open(name, Kind::Lock).await?;
        Ok(Lock {
            permits: Permits {
                client: self.clone(),
                handle,
                name: name.into(),
            },
        })
    }

    /// Opens the semaphore `name` of `permits` permits (as [`crate::Client::semaphore`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::semaphore`].
    pub async fn semaphore(&self, name: &str, permits: u64) -> Result<Semaphore> {
        let handle = self.open(name, Kind::Semaphore { permits }).await?;
        Ok(Semaphore {
            permits: Permits {
                client: self.clone(),
                handle,
                name: name.into(),
            },
            count: permits,
        })
    }

    /// Opens the event `name` (as [`crate::Client::event`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::event`].
    pub async fn event(&self, name: &str) -> Result<Event> {
        let handle = self.open(name, Kind::Event).await?;
        Ok(Event {
            client: self.clone(),
            handle,
            name: name.into(),
        })
    }
}
