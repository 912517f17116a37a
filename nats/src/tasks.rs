//! `task_done` / `join` on JetStream. How many items of a queue were put is its stream's
//! last sequence number, which every publish raises and nothing lowers; how many are done
//! is the message count of a second stream, `IPCQ-DONE_<name>` on `ipcq.done.<name>`, to
//! which each `task_done` publishes a mark. `join` returns when the two meet, woken by the
//! marks as they are published.
//!
//! An acknowledgement counts as done, and must count once however its worker dies: its
//! mark is published *before* the acknowledgement, with the item's stream sequence as
//! message id. A worker killed between the two leaves the item unacknowledged, so it is
//! delivered again, and the next worker's mark for it is dropped by JetStream's duplicate
//! window ([`DUPLICATE_WINDOW`]); the other order would lose the mark for good.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{nats, Connection, Error, Result, LONGEST_PULL};

/// How long JetStream remembers a mark's id: a delivery redelivered after this long (its
/// worker died after marking it, and it then waited this long for another) would count
/// twice.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(60 * 60);

/// One queue's done marks.
#[derive(Debug)]
pub(crate) struct Tasks {
    jetstream: jetstream::Context,
    client: async_nats::Client,
    /// The queue's stream, whose last sequence number counts the items put.
    queue: stream::Stream,
    done: stream::Stream,
    subject: String,
    name: String,
}

impl Tasks {
    pub(crate) async fn new(conn: &Connection, name: &str, queue: stream::Stream) -> Result<Tasks> {
        let subject = format!("ipcq.done.{name}");
        let done = conn
            .jetstream
            .get_or_create_stream(stream::Config {
                name: done_stream(name),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                // Only the count matters: the marks carry no payload.
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        Ok(Tasks {
            jetstream: conn.jetstream.clone(),
            client: conn.client.clone(),
            queue,
            done,
            subject,
            name: name.to_owned(),
        })
    }

    /// Drops the marks of a queue that is removed.
    pub(crate) async fn forget(conn: &Connection, name: &str) -> Result<()> {
        match conn.jetstream.delete_stream(done_stream(name)).await {
            Err(err) if !err.to_string().contains("stream not found") => Err(nats(err)),
            _ => Ok(()),
        }
    }

    /// Items put on the queue since it was made.
    async fn put(&self) -> Result<u64> {
        Ok(self
            .queue
            .get_info()
            .await
            .map_err(nats)?
            .state
            .last_sequence)
    }

    /// Items marked done.
    async fn done_count(&self) -> Result<u64> {
        Ok(self.done.get_info().await.map_err(nats)?.state.messages)
    }

    /// A `task_done` call: one more item done, refused ([`Error::Invalid`]) when every
    /// item put is done already.
    pub(crate) async fn task_done(&self) -> Result<()> {
        if self.done_count().await? >= self.put().await? {
            return Err(Error::Invalid(format!(
                "task_done on queue '{}' called more times than items were put",
                self.name
            )));
        }
        self.mark(None).await
    }

    /// The item at stream sequence `sequence` is done (acknowledged, or dead-lettered):
    /// counted once however often it is marked within [`DUPLICATE_WINDOW`].
    pub(crate) async fn item_done(&self, sequence: u64) -> Result<()> {
        self.mark(Some(sequence)).await
    }

    async fn mark(&self, sequence: Option<u64>) -> Result<()> {
        let mut headers = HeaderMap::new();
        if let Some(sequence) = sequence {
            headers.insert("Nats-Msg-Id", sequence.to_string().as_str());
        }
        self.jetstream
            .publish_with_headers(self.subject.clone(), headers, Bytes::new())
            .await
            .map_err(nats)?
            .await
            .map(drop)
            .map_err(nats)
    }

    /// Waits until every item put is done, for at most `timeout`; whether they were.
    pub(crate) async fn join(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        // Listening first, then looking: a mark between the two is not missed.
        let mut marks = self
            .client
            .subscribe(self.subject.clone())
            .await
            .map_err(nats)?;
        loop {
            if self.done_count().await? >= self.put().await? {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            // A lost wake-up costs at most LONGEST_PULL: look again at least that often.
            let pause = left.map_or(LONGEST_PULL, |left| left.min(LONGEST_PULL));
            let _ = tokio::time::timeout(pause, marks.next()).await;
        }
    }
}

/// The stream of queue `name`'s marks. Not `IPCQ_...`: those are queues, and a queue may
/// be named `DONE_x`.
fn done_stream(name: &str) -> String {
    format!("IPCQ-DONE_{name}")
}
