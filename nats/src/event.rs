//! Events on a JetStream key-value bucket, `IPCQ_EVENTS`: an event is set while its key
//! holds a value; clearing deletes it. Waiters watch the key, so a `set` wakes every one of
//! them at once, on every client.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{check_name, nats, Connection, Result};

/// The bucket of every event.
const BUCKET: &str = "IPCQ_EVENTS";

impl Connection {
    /// The event `name`, clear unless someone set it.
    ///
    /// # Errors
    ///
    /// [`Error::BadName`](crate::Error::BadName), or [`Error::Nats`](crate::Error::Nats)
    /// when the bucket cannot be made.
    pub async fn event(&self, name: &str) -> Result<Event> {
        check_name(name)?;
        let store = self.bucket(BUCKET, Duration::ZERO).await?;
        Ok(Event {
            store,
            name: name.to_owned(),
        })
    }
}

/// An event flag shared by every client of the server, as `multiprocessing.Event`.
#[derive(Debug, Clone)]
pub struct Event {
    store: kv::Store,
    name: String,
}

impl Event {
    /// Sets the flag: every waiter wakes.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server cannot be told.
    pub async fn set(&self) -> Result<()> {
        self.store
            .put(&self.name, Bytes::from_static(b"set"))
            .await
            .map(drop)
            .map_err(nats)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server cannot be told.
    pub async fn clear(&self) -> Result<()> {
        self.store.delete(&self.name).await.map_err(nats)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server does not answer.
    pub async fn is_set(&self) -> Result<bool> {
        let entry = self.store.entry(self.name.clone()).await.map_err(nats)?;
        Ok(entry.is_some_and(|entry| entry.operation == kv::Operation::Put))
    }

    /// Waits until the flag is set, for at most `timeout` (`None`: as long as it takes);
    /// whether it was set.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`](crate::Error::Nats) when the server does not answer.
    pub async fn wait_timeout(&self, timeout: Option<Duration>) -> Result<bool> {
        // Watching first, then looking: a set between the two is not missed.
        let mut changes = self.store.watch(&self.name).await.map_err(nats)?;
        if self.is_set().await? {
            return Ok(true);
        }
        let set = async {
            while let Some(change) = changes.next().await {
                if change.map_err(nats)?.operation == kv::Operation::Put {
                    return Ok(true);
                }
            }
            Err(crate::Error::Nats("the watch of the event ended".into()))
        };
        match timeout {
            None => set.await,
            Some(timeout) => tokio::time::timeout(timeout, set)
                .await
                .unwrap_or(Ok(false)),
        }
    }
}
