//! Locks on a JetStream key-value bucket, `IPCQ_LOCKS`: a lock is held while its key
//! exists. Taking it is an atomic create-if-absent; the holder keeps the key alive (the
//! bucket's keys expire [`LOCK_TTL`] after their last write) by rewriting it every third
//! of that, with a revision check; releasing deletes it, with a revision check. A holder
//! that dies stops rewriting: its lock is free within [`LOCK_TTL`], and the next holder is
//! told that the owner died (it saw the key held, then gone without a delete).
//!
//! A semaphore of `n` permits is `n` such locks, keys `<name>.0` to `<name>.<n-1>` in the
//! same bucket (lock names have no dots, so they never meet); taking a permit takes the
//! first free one, which costs up to `n` tries. Its count is kept in the bucket
//! `IPCQ_SEMAPHORES`, so that every opener must ask for the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::{check_name, nats, Connection, Error, Result};

/// How long a lock outlives a holder that died.
pub const LOCK_TTL: Duration = Duration::from_secs(3);

/// The bucket of every lock.
const BUCKET: &str = "IPCQ_LOCKS";

/// The longest pause between two tries of a waiting `acquire`.
const MOST_PAUSE: Duration = Duration::from_millis(100);

impl Connection {
    /// The lock `name` (nothing is taken yet).
    ///
    /// # Errors
    ///
    /// [`Error::BadName`](crate::Error::BadName), or [`Error::Nats`](crate::Error::Nats) when the bucket cannot be made.
    pub async fn lock(&self, name: &str) -> Result<Lock> {
        check_name(name)?;
        let store = self.bucket(BUCKET, LOCK_TTL).await?;
        Ok(Lock {
            store,
            name: name.to_owned(),
        })
    }
}

/// A lock shared by every client of the server.
#[derive(Debug, Clone)]
pub struct Lock {
    store: kv::Store,
    name: String,
}

impl Lock {
    /// Takes the lock, waiting for at most `timeout` (`None`: as long as it takes);
    /// `None` when it stayed taken.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server does not answer.
    pub async fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Option<LockGuard>> {
        acquire_any(std::slice::from_ref(self), timeout).await
    }

    /// One try: takes the lock if it is free. `saw_held` remembers, across tries, that it
    /// was seen held (then gone without a delete marker means its holder died).
    async fn try_once(&self, token: &Bytes, saw_held: &mut bool) -> Result<Option<LockGuard>> {
        let entry = self.store.entry(self.name.clone()).await.map_err(nats)?;
        match entry.map(|entry| entry.operation) {
            Some(kv::Operation::Put) => *saw_held = true,
            last => {
                // Gone with no delete marker after it was seen held: it expired.
                let died = *saw_held && last.is_none();
                match self.store.create(&self.name, token.clone()).await {
                    Ok(revision) => {
                        return Ok(Some(LockGuard::new(self, token.clone(), revision, died)));
                    }
                    Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                        *saw_held = true;
                    }
                    Err(err) => return Err(nats(err)),
                }
            }
        }
        Ok(None)
    }

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire_timeout`].
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        self.acquire_timeout(Some(Duration::ZERO)).await
    }
}

/// Takes the first of `locks` that is free, trying again (1 ms doubling to
/// [`MOST_PAUSE`]) for at most `timeout` (`None`: as long as it takes).
async fn acquire_any(locks: &[Lock], timeout: Option<Duration>) -> Result<Option<LockGuard>> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let token = Bytes::from(holder_token());
    let mut saw_held = vec![false; locks.len()];
    let mut pause = Duration::from_millis(1);
    loop {
        for (lock, saw_held) in locks.iter().zip(&mut saw_held) {
            if let Some(guard) = lock.try_once(&token, saw_held).await? {
                return Ok(Some(guard));
            }
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(None);
        }
        tokio::time::sleep(left.map_or(pause, |left| left.min(pause))).await;
        pause = (pause * 2).min(MOST_PAUSE);
    }
}

/// The bucket of every semaphore's count.
const COUNTS: &str = "IPCQ_SEMAPHORES";

impl Connection {
    /// The semaphore `name` of `permits` permits (nothing is taken yet).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for 0 permits,
    /// [`Error::Conflict`](crate::Error::Conflict) when it exists with another count,
    /// [`Error::BadName`](crate::Error::BadName), or [`Error::Nats`](crate::Error::Nats)
    /// when the buckets cannot be made.
    pub async fn semaphore(&self, name: &str, permits: u64) -> Result<Semaphore> {
        check_name(name)?;
        if permits == 0 {
            return Err(Error::Invalid("a semaphore needs at least 1 permit".into()));
        }
        let counts = self.bucket(COUNTS, Duration::ZERO).await?;
        let count = Bytes::from(permits.to_string());
        if let Err(err) = counts.create(name, count.clone()).await {
            if err.kind() != kv::CreateErrorKind::AlreadyExists {
                return Err(nats(err));
            }
            let existing = counts.get(name).await.map_err(nats)?;
            if existing.as_ref() != Some(&count) {
                let existing = existing.map(|value| String::from_utf8_lossy(&value).into_owned());
                return Err(Error::Conflict(format!(
                    "semaphore '{name}' exists with {} permits, not {permits}",
                    existing.unwrap_or_default()
                )));
            }
        }
        let store = self.bucket(BUCKET, LOCK_TTL).await?;
        let slots = (0..permits)
            .map(|i| Lock {
                store: store.clone(),
                name: format!("{name}.{i}"),
            })
            .collect();
        Ok(Semaphore {
            slots: Arc::new(slots),
            name: name.to_owned(),
        })
    }
}

/// A semaphore shared by every client of the server: a fixed number of permits, each
/// held as a [`Lock`] is (kept alive by its holder, free within [`LOCK_TTL`] of its
/// holder's death).
#[derive(Debug, Clone)]
pub struct Semaphore {
    slots: Arc<Vec<Lock>>,
    name: String,
}

impl Semaphore {
    /// Takes a permit, waiting for at most `timeout` (`None`: as long as it takes);
    /// `None` when none came free.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server does not answer.
    pub async fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Option<LockGuard>> {
        acquire_any(&self.slots, timeout).await
    }

    /// Permits in all.
    pub fn permits(&self) -> u64 {
        self.slots.len() as u64
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A process-wide unique value for the holder's key.
fn holder_token() -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// A taken lock: kept alive while it lives, released by [`LockGuard::release`] or when
/// dropped (inside a tokio runtime).
#[derive(Debug)]
pub struct LockGuard {
    store: kv::Store,
    name: String,
    token: Bytes,
    revision: Arc<AtomicU64>,
    keeper: tokio::task::JoinHandle<()>,
    owner_died: bool,
    released: bool,
}

impl LockGuard {
    fn new(lock: &Lock, token: Bytes, revision: u64, owner_died: bool) -> LockGuard {
        let revision = Arc::new(AtomicU64::new(revision));
        let keeper = {
            let (store, name, token) = (lock.store.clone(), lock.name.clone(), token.clone());
            let revision = Arc::clone(&revision);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOCK_TTL / 3).await;
                    let last = revision.load(Ordering::Acquire);
                    match store.update(&name, token.clone(), last).await {
                        Ok(next) => revision.store(next, Ordering::Release),
                        // Taken from us (we were too late): nothing more to keep.
                        Err(_) => return,
                    }
                }
            })
        };
        LockGuard {
            store: lock.store.clone(),
            name: lock.name.clone(),
            token,
            revision,
            keeper,
            owner_died,
            released: false,
        }
    }

    /// Whether the previous holder died holding the lock (it expired rather than being
    /// released): what it protected may be half done.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server cannot be told (the lock then frees itself within
    /// [`LOCK_TTL`]).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.keeper.abort();
        release(&self.store, &self.name, &self.token, &self.revision).await
    }
}

/// Deletes the key if it is still ours: at the revision last written, or, if a keep-alive
/// write landed as the keeper stopped, at the revision the server has for our token.
async fn release(store: &kv::Store, name: &str, token: &Bytes, revision: &AtomicU64) -> Result<()> {
    let last = revision.load(Ordering::Acquire);
    if store.delete_expect_revision(name, Some(last)).await.is_ok() {
        return Ok(());
    }
    match store.entry(name.to_owned()).await.map_err(nats)? {
        Some(entry) if entry.operation == kv::Operation::Put && entry.value == *token => store
            .delete_expect_revision(name, Some(entry.revision))
            .await
            .map_err(nats),
        // Not ours any more (expired and taken, or gone): nothing to release.
        _ => Ok(()),
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.keeper.abort();
        if self.released {
            return;
        }
        let (store, name, token) = (self.store.clone(), self.name.clone(), self.token.clone());
        let revision = Arc::clone(&self.revision);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = release(&store, &name, &token, &revision).await;
            });
        }
    }
}
