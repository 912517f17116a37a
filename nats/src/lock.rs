//! Locks on a JetStream key-value bucket, `IPCQ_LOCKS`: a lock is held while its key
//! exists. Taking it is an atomic create-if-absent; the holder keeps the key alive (the
//! bucket's keys expire [`LOCK_TTL`] after their last write) by rewriting it every third
//! of that, with a revision check; releasing deletes it, with a revision check. A holder
//! that dies stops rewriting: its lock is free within [`LOCK_TTL`], and the next holder is
//! told that the owner died (it saw the key held, then gone without a delete).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::{check_name, nats, Connection, Result};

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
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let token = Bytes::from(holder_token());
        let mut saw_held = false;
        let mut pause = Duration::from_millis(1);
        loop {
            let entry = self.store.entry(self.name.clone()).await.map_err(nats)?;
            match entry.map(|entry| entry.operation) {
                Some(kv::Operation::Put) => saw_held = true,
                last => {
                    // Gone with no delete marker after it was seen held: it expired.
                    let died = saw_held && last.is_none();
                    match self.store.create(&self.name, token.clone()).await {
                        Ok(revision) => {
                            return Ok(Some(LockGuard::new(self, token, revision, died)));
                        }
                        Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                            saw_held = true;
                        }
                        Err(err) => return Err(nats(err)),
                    }
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

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire_timeout`].
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        self.acquire_timeout(Some(Duration::ZERO)).await
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
