//! Locks, semaphores and events held by the broker, safe when a process dies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipcq_proto::Wait;

use crate::client::Client;
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

/// What locks and semaphores share: permits held by this client's connection.
#[derive(Clone)]
struct Permits {
    client: Client,
    handle: u32,
    name: Arc<str>,
}

impl Permits {
    fn acquire(&self, wait: Wait) -> Result<Option<Acquired>> {
        let acquired = self.client.run(ops::acquire(self.handle, wait))?;
        Ok(acquired.map(Acquired::new))
    }

    fn release(&self) -> Result<()> {
        self.client.run(ops::release_permit(self.handle))
    }
}

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
#[derive(Clone)]
pub struct Lock {
    permits: Permits,
}

impl Lock {
    /// Acquires the lock, waiting as long as it takes (FIFO among waiters).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the lock was removed.
    pub fn acquire(&self) -> Result<Acquired> {
        self.permits
            .acquire(Wait::Block)?
            .ok_or_else(|| Error::Protocol("the broker refused a blocking acquire".into()))
    }

    /// Acquires the lock if it comes within `timeout`; `None` if it did not.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::timeout(timeout))
    }

    /// Acquires the lock if it is free now; `None` if it is not.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub fn try_acquire(&self) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::NoWait)
    }

    /// Releases the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if this client does not hold it; [`Error::BrokerGone`].
    pub fn release(&self) -> Result<()> {
        self.permits.release()
    }

    /// Acquires the lock and returns a guard that releases it when dropped.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        let acquired = self.acquire()?;
        Ok(LockGuard {
            lock: self,
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
        // If the broker is gone, so is the permit; nothing is left to give back.
        let _ = self.permits.release();
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

/// Holds a [`Lock`] until dropped.
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    acquired: Acquired,
}

impl LockGuard<'_> {
    /// Whether the previous holder died holding the lock (see [`Acquired::owner_died`]).
    pub fn owner_died(&self) -> bool {
        self.acquired.owner_died()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // If the broker is gone, so is the lock; nothing is left to release.
        let _ = self.lock.release();
    }
}

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
    pub fn acquire(&self) -> Result<Acquired> {
        self.permits
            .acquire(Wait::Block)?
            .ok_or_else(|| Error::Protocol("the broker refused a blocking acquire".into()))
    }

    /// Takes a permit if one comes within `timeout`; `None` if none did.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::timeout(timeout))
    }

    /// Takes a permit if one is free now; `None` if none is.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    pub fn try_acquire(&self) -> Result<Option<Acquired>> {
        self.permits.acquire(Wait::NoWait)
    }

    /// Gives back a permit this client holds.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if this client holds none; [`Error::BrokerGone`].
    pub fn release(&self) -> Result<()> {
        self.permits.release()
    }

    /// Takes a permit, waiting as long as it takes, and returns a guard that gives it back
    /// when dropped (as the tokio client's `Semaphore::enter`).
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let client = ipcq_client::Client::connect_default()?;
    /// let rooms = client.semaphore("rooms", 4)?;
    /// let _room = rooms.enter()?; // given back at the end of the scope
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn enter(&self) -> Result<SemaphoreGuard> {
        let acquired = self.acquire()?;
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
    pub fn set(&self) -> Result<()> {
        self.client.run(ops::set_event(self.handle))
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn clear(&self) -> Result<()> {
        self.client.run(ops::clear_event(self.handle))
    }

    /// Whether the flag is set now.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn is_set(&self) -> Result<bool> {
        self.wait_for(Wait::NoWait)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`]; [`Error::Closed`] if the event was removed.
    pub fn wait(&self) -> Result<()> {
        self.wait_for(Wait::Block).map(|_| ())
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// # Errors
    ///
    /// As [`Event::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_for(Wait::timeout(timeout))
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn wait_for(&self, wait: Wait) -> Result<bool> {
        self.client.run(ops::wait_event(self.handle, wait))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

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
    pub fn wait(&self) -> Result<u64> {
        self.wait_for(Wait::Block)
    }

    /// Waits at most `timeout`; running out breaks the barrier for everyone.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`] (also when this wait ran out); [`Error::BrokerGone`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.wait_for(Wait::timeout(timeout))
    }

    /// Mends a broken barrier; parties waiting now get [`Error::Broken`].
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`].
    pub fn reset(&self) -> Result<()> {
        self.client.run(ops::reset_barrier(self.handle))
    }

    /// Parties that release the barrier.
    pub fn parties(&self) -> u64 {
        self.parties
    }

    /// The barrier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn wait_for(&self, wait: Wait) -> Result<u64> {
        self.client.run(ops::wait_barrier(self.handle, wait))
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
    /// Opens the barrier `name` for `parties` parties, creating it if it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` exists with another count or kind;
    /// [`Error::Invalid`] for a bad name or 0 parties.
    pub fn barrier(&self, name: &str, parties: u64) -> Result<Barrier> {
        let handle = self.open(name, ipcq_proto::Kind::Barrier { parties })?;
        Ok(Barrier {
            client: self.clone(),
            handle,
            name: name.into(),
            parties,
        })
    }

    /// Opens the lock `name`, creating it if it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` is another kind of object; [`Error::Invalid`] for a
    /// bad name.
    pub fn lock(&self, name: &str) -> Result<Lock> {
        let handle = self.open(name, ipcq_proto::Kind::Lock)?;
        Ok(Lock {
            permits: Permits {
                client: self.clone(),
                handle,
                name: name.into(),
            },
        })
    }

    /// Opens the semaphore `name` of `permits` permits, creating it if it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` exists with another count or kind;
    /// [`Error::Invalid`] for a bad name or 0 permits.
    pub fn semaphore(&self, name: &str, permits: u64) -> Result<Semaphore> {
        let handle = self.open(name, ipcq_proto::Kind::Semaphore { permits })?;
        Ok(Semaphore {
            permits: Permits {
                client: self.clone(),
                handle,
                name: name.into(),
            },
            count: permits,
        })
    }

    /// Opens the event `name`, creating it (clear) if it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` is another kind of object; [`Error::Invalid`] for a
    /// bad name.
    pub fn event(&self, name: &str) -> Result<Event> {
        let handle = self.open(name, ipcq_proto::Kind::Event)?;
        Ok(Event {
            client: self.clone(),
            handle,
            name: name.into(),
        })
    }
}
