//! Queue handles for the tokio client.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_proto::{QueueInfo, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use super::{remaining, unexpected, Backend, Client, Hold, Link};
use crate::common::{check_item, decode, encode, frames_of};
use crate::core::{Fetch, GetStep, Progress, PutStep};
use crate::inbox::Delivered;
use crate::ops;
use crate::queue::QueueOptions;
use crate::{Error, Result};

impl Client {
    /// Opens the queue `name` for items of type `T` (postcard), creating it with
    /// `capacity` (0 for unbounded) if it does not exist.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue`].
    pub async fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Queue<T>> {
        self.raw_queue(name, capacity).await.map(Queue::from_raw)
    }

    /// Opens the queue `name` for items of type `T`, creating it with `options` if it does
    /// not exist (as [`crate::Client::queue_with`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue_with`].
    pub async fn queue_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Queue<T>> {
        self.raw_queue_with(name, options)
            .await
            .map(Queue::from_raw)
    }

    /// Opens the queue `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue`].
    pub async fn raw_queue(&self, name: &str, capacity: usize) -> Result<RawQueue> {
        self.raw_queue_with(name, QueueOptions::new().capacity(capacity))
            .await
    }
}

/// A handle on a broker queue of raw bytes, for tokio: [`crate::RawQueue`]'s operations
/// as `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
/// `Clone + Send + Sync`; cloning is shallow.
#[derive(Clone)]
pub struct RawQueue {
    at: QueueAt,
    name: Arc<str>,
    capacity: usize,
}

impl Hold {
    /// Puts the first of `items` at least (all of them if there are credits for them, in
    /// one write); returns how many were put. Items are handed to the connection only on
    /// slots already reserved, with no await point after: a dropped put has put nothing.
    pub(crate) async fn put_items(&self, items: &[&[u8]], wait: Wait) -> Result<usize> {
        let (client, handle) = (&self.client, self.handle);
        let start = Instant::now();
        loop {
            let wait = remaining(wait, start);
            match client.with_core(|core| core.put_step(handle, items, wait))? {
                PutStep::Sent(n, _) => return client.send().map(|()| n),
                // Credits asked for earlier are on their way: they come at once.
                PutStep::Await(id) => {
                    let _ = client.send();
                    client
                        .wait(|core, waker| core.poll_settled(id, handle, Some(waker)))
                        .await?;
                }
                // Dropped while waiting, the request is withdrawn; room granted to it stays
                // with this client's next puts.
                PutStep::Room(id) => {
                    let _ = client.send();
                    match client.call(id).await?.0 {
                        Reply::Accepted { .. } => {}
                        other => return Err(unexpected(&other)),
                    }
                }
            }
        }
    }

    /// Hands out up to `max` items (at least one): fetched ones if there are any, else
    /// those of a round trip that waits as asked and fetches up to the prefetch window.
    /// While it waits, items another task's fetch brought are taken instead, and the
    /// request is withdrawn.
    pub(crate) async fn fetch(&self, max: usize, wait: Wait, ack: bool) -> Result<Vec<Delivered>> {
        let (client, handle) = (&self.client, self.handle);
        let start = Instant::now();
        loop {
            let wait = remaining(wait, start);
            let step =
                client.with_core(|core| core.get_step(handle, max, wait, Instant::now(), ack))?;
            let fetch = match step {
                // Theirs once acknowledged (the acknowledgement is handed to the connection
                // with no await point after).
                GetStep::Items(items, mark) => return sent(client, mark).map(|()| items),
                GetStep::Wait(fetch) => fetch,
            };
            if let Err(err) = self.wait_fetch(fetch).await {
                // Items another task fetched meanwhile still come first (if they can still
                // be acknowledged).
                let step = client.with_core(|core| {
                    core.get_step(handle, max, Wait::NoWait, Instant::now(), ack)
                });
                return match step {
                    Ok(GetStep::Items(items, mark)) => sent(client, mark).map(|()| items),
                    Ok(GetStep::Wait(fetch)) => {
                        drop(Withdraw { client, fetch });
                        Err(err)
                    }
                    Err(_) => Err(err),
                };
            }
        }
    }

    /// Waits until `fetch` is answered or items arrive otherwise. Its own request is
    /// withdrawn when it ends either way, or when the future is dropped: items of an answer
    /// already on its way join the inbox for the next get.
    pub(crate) async fn wait_fetch(&self, fetch: Fetch) -> Result<()> {
        let (client, handle) = (&self.client, self.handle);
        let _ = client.send();
        let _withdraw = Withdraw { client, fetch };
        match client
            .wait(|core, waker| core.poll_fetch(fetch, handle, Some(waker)))
            .await?
        {
            Progress::Answer(Reply::Items { .. }) | Progress::Moved => Ok(()),
            Progress::Answer(other) => Err(unexpected(&other)),
        }
    }
}

/// Withdraws a getter's own request when it stops waiting (answered, or dropped).
struct Withdraw<'a> {
    client: &'a Link,
    fetch: Fetch,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Fetch::Own(id) = self.fetch {
            // Nothing if it was answered; otherwise it is cancelled, and its answer settled.
            self.client.with_core(|core| core.abandon(id));
            let _ = self.client.send();
        }
    }
}

/// Hands what was queued to the connection, if anything was.
fn sent(client: &Link, mark: Option<crate::core::Mark>) -> Result<()> {
    mark.map_or(Ok(()), |_| client.send())
}

crate::surface::queue_surface! {
    [async] [.await],
    queue: {
        /// A handle on a broker queue of `T`s (postcard), for tokio: [`crate::Queue`]'s operations
        /// as `async fn`s, each cancel-safe (see [Cancel safety](super#cancel-safety)).
        ///
        /// # Examples
        ///
        /// ```no_run
        /// # async fn demo() -> ipcq_client::Result<()> {
        /// let client = ipcq_client::tokio::Client::connect_default().await?;
        /// let jobs = client.queue::<Option<u64>>("jobs", 64).await?;
        /// jobs.put(&Some(7)).await?;
        /// jobs.put(&None).await?;
        /// while let Some(job) = jobs.get().await? {
        ///     println!("job {job}");
        /// }
        /// # Ok(())
        /// # }
        /// ```
    },
}
