//! `task_done` / `join` on JetStream: how many items of a queue are done is a counter in
//! the key-value bucket `IPCQ_TASKS` (key: the queue's name), raised with a revision check;
//! how many were put is the stream's last sequence number, which every publish raises and
//! nothing lowers. `join` returns when the two meet, watching the counter meanwhile.

use std::time::{Duration, Instant};

use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{nats, Connection, Error, Result, LONGEST_PULL};

/// The bucket of every queue's done counter.
const BUCKET: &str = "IPCQ_TASKS";

/// One queue's counters.
#[derive(Debug)]
pub(crate) struct Tasks {
    store: kv::Store,
    stream: stream::Stream,
    name: String,
}

impl Tasks {
    pub(crate) async fn new(
        conn: &Connection,
        name: &str,
        stream: stream::Stream,
    ) -> Result<Tasks> {
        Ok(Tasks {
            store: conn.bucket(BUCKET, Duration::ZERO).await?,
            stream,
            name: name.to_owned(),
        })
    }

    /// Drops the counter of a queue that is removed.
    pub(crate) async fn forget(conn: &Connection, name: &str) -> Result<()> {
        let store = conn.bucket(BUCKET, Duration::ZERO).await?;
        store.purge(name).await.map_err(nats)
    }

    /// Items put on the queue since it was made.
    async fn put(&self) -> Result<u64> {
        Ok(self
            .stream
            .get_info()
            .await
            .map_err(nats)?
            .state
            .last_sequence)
    }

    /// Items marked done, and the counter's revision (`None`: never written).
    async fn done_count(&self) -> Result<(u64, Option<u64>)> {
        match self.store.entry(self.name.clone()).await.map_err(nats)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let count = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| Error::Nats(format!("bad done counter for '{}'", self.name)))?;
                Ok((count, Some(entry.revision)))
            }
            Some(entry) => Ok((0, Some(entry.revision))),
            None => Ok((0, None)),
        }
    }

    /// One more item done. `checked`: refused ([`Error::Invalid`]) when every item put is
    /// done already (a `task_done` call; an acknowledgement always has its item).
    pub(crate) async fn done(&self, checked: bool) -> Result<()> {
        loop {
            let (count, revision) = self.done_count().await?;
            if checked && count >= self.put().await? {
                return Err(Error::Invalid(format!(
                    "task_done on queue '{}' called more times than items were put",
                    self.name
                )));
            }
            let next = Bytes::from((count + 1).to_string());
            let written = match revision {
                None => self
                    .store
                    .create(&self.name, next)
                    .await
                    .map(drop)
                    .map_err(nats),
                Some(revision) => self
                    .store
                    .update(&self.name, next, revision)
                    .await
                    .map(drop)
                    .map_err(nats),
            };
            // Lost a race with another worker's mark: read again.
            if written.is_ok() {
                return Ok(());
            }
        }
    }

    /// Waits until every item put is done, for at most `timeout`; whether they were.
    pub(crate) async fn join(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        // Watching first, then looking: a mark between the two is not missed.
        let mut changes = self.store.watch(&self.name).await.map_err(nats)?;
        loop {
            if self.done_count().await?.0 >= self.put().await? {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            // Puts do not change the counter: look again at least every LONGEST_PULL.
            let pause = left.map_or(LONGEST_PULL, |left| left.min(LONGEST_PULL));
            let _ = tokio::time::timeout(pause, changes.next()).await;
        }
    }
}
