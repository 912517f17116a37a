//! Deliveries: items handed out by an acknowledging get, on the worker's account until it
//! says its work on them is done.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::common::decode;
use crate::core::Settlement;
use crate::Result;

/// Who settles a delivery: the handle's share of its queue in one client.
pub(crate) trait Settle: Send + Sync {
    /// Settles delivery `tag` as `how` says.
    fn settle(&self, tag: u64, how: Settlement) -> Result<()>;
    /// Leases delivery `tag` for `lease` from now.
    fn lease(&self, tag: u64, lease: Duration) -> Result<()>;
    /// Settles delivery `tag` as done and learns whether it was still held (blocking
    /// client: a round trip; tokio client: as `settle`, see [`Delivery::ack`]).
    fn finish_checked(&self, tag: u64) -> Result<()>;
    /// As `finish_checked`, as a future (the tokio client's round trip).
    fn finish_checked_async(&self, tag: u64) -> BoxFuture;
}

/// The answer of a round trip, as the tokio client awaits it.
pub(crate) type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// An item taken by an acknowledging get (`get_delivery`, `get_deliveries`): it stays on
/// this client's account, counted in the queue's `len` and towards its capacity, until
/// the work on it is done.
///
/// - [`ack`](Delivery::ack): the work is done; the item leaves the queue for good and
///   counts as its `task_done` for `join`.
/// - [`reject`](Delivery::reject), or dropping the delivery without either: the item goes
///   back to the head of the queue, for the next getter.
/// - the client's process dies, or its connection closes, first: the broker puts every
///   delivery it held back at the head of its queue, in order, marked as redelivered.
///
/// Settling costs no round trip: one message, written before `ack` returns. (On NATS —
/// a `nats://` client — settling is confirmed by the server before it returns with the
/// blocking client, and sent by a task with the tokio client, whose `Client::flush` waits
/// for it; see `docs/scale-out.md`.) `T` is the queue's item type (`Bytes` for raw
/// queues); a `Delivery` dereferences to it.
///
/// # Examples
///
/// ```no_run
/// let client = ipcq_client::Client::connect_default()?;
/// let jobs = client.queue::<u64>("jobs", 100)?;
/// let job = jobs.get_delivery()?;
/// if job.is_redelivered() {
///     println!("job {} again: its last worker did not finish it", *job);
/// }
/// // ... the work ...
/// job.ack()?;
/// # Ok::<(), ipcq_client::Error>(())
/// ```
#[must_use = "a delivery dropped without `ack` goes back to the queue"]
pub struct Delivery<T = Bytes> {
    item: T,
    tag: u64,
    earlier: u32,
    /// Whether it has a lease (then `ack` asks whether it still held it).
    leased: bool,
    /// `None` once settled.
    owner: Option<Arc<dyn Settle>>,
}

impl<T> Delivery<T> {
    pub(crate) fn new(item: T, tag: u64, earlier: u32, owner: Arc<dyn Settle>) -> Self {
        Delivery {
            item,
            tag,
            earlier,
            leased: false,
            owner: Some(owner),
        }
    }

    /// The item.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// How many times the item has been delivered, this time included (1 the first time).
    pub fn deliveries(&self) -> u32 {
        self.earlier.saturating_add(1)
    }

    /// Whether the item was delivered before: a getter that took it died, dropped or
    /// rejected it, or fetched it ahead and let it go, without finishing it.
    pub fn is_redelivered(&self) -> bool {
        self.earlier > 0
    }

    /// The work on the item is done: it leaves the queue for good, and counts as its
    /// `task_done` for `join`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`](crate::Error::BrokerGone) when the connection is gone: the
    /// broker has put the item back at the head of its queue, for another worker.
    ///
    /// A delivery with a [lease](Delivery::lease) is acknowledged with a round trip on the
    /// blocking client, which says whether the lease ran out first:
    /// [`Error::LeaseExpired`](crate::Error::LeaseExpired), and the item, back in its
    /// queue, was not removed again. (The tokio client's `ack` cannot wait: a late
    /// acknowledgement is ignored by the broker just the same, and returns `Ok`; await
    /// [`ack_checked`](Delivery::ack_checked) to be told.)
    pub fn ack(mut self) -> Result<()> {
        if !self.leased {
            return self.settle(Settlement::Finish);
        }
        match self.owner.take() {
            Some(owner) => owner.finish_checked(self.tag),
            None => Ok(()),
        }
    }

    /// Acknowledges as [`ack`](Delivery::ack) does, and waits for the broker to say that it
    /// still held the delivery: the tokio client's way to learn that a lease ran out
    /// ([`Error::LeaseExpired`](crate::Error::LeaseExpired)). A round trip, whatever the
    /// delivery (on the blocking client, it is what `ack` does for a leased delivery).
    ///
    /// # Errors
    ///
    /// [`Error::LeaseExpired`](crate::Error::LeaseExpired) when the broker no longer held
    /// it; [`Error::BrokerGone`](crate::Error::BrokerGone).
    pub async fn ack_checked(mut self) -> Result<()> {
        let Some(owner) = self.owner.take() else {
            return Ok(());
        };
        owner.finish_checked_async(self.tag).await
    }

    /// Leases the item for `lease` from now, or extends its lease: a worker that hangs
    /// without dying, and does not settle the item in time, loses it — the broker puts it
    /// back at the head of its queue, marked redelivered (or sends it to the dead-letter
    /// queue past the delivery limit) — while a worker still at work calls this again
    /// before the time runs out. One message, no round trip.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`](crate::Error::BrokerGone) when the connection is gone.
    pub fn lease(&mut self, lease: Duration) -> Result<()> {
        let Some(owner) = &self.owner else {
            return Ok(());
        };
        owner.lease(self.tag, lease)?;
        self.leased = true;
        Ok(())
    }

    /// Gives the item back to the head of its queue now, for the next getter (this client
    /// included), marked as redelivered.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`](crate::Error::BrokerGone) when the connection is gone: the
    /// broker has put the item back itself.
    pub fn reject(mut self) -> Result<()> {
        self.settle(Settlement::Return)
    }

    /// The item cannot be done: it goes to its queue's dead-letter queue (see
    /// [`QueueOptions::dead_letter`](crate::QueueOptions::dead_letter)) with its delivery
    /// count, and counts as done for `join`; for a queue without one, back to its head, as
    /// [`reject`](Delivery::reject).
    ///
    /// # Errors
    ///
    /// As [`reject`](Delivery::reject).
    pub fn dead_letter(mut self) -> Result<()> {
        self.settle(Settlement::DeadLetter)
    }

    fn settle(&mut self, how: Settlement) -> Result<()> {
        match self.owner.take() {
            Some(owner) => owner.settle(self.tag, how),
            None => Ok(()),
        }
    }
}

impl Delivery<Bytes> {
    /// The delivery of the item decoded as a `T` (postcard, as a typed queue's), for a
    /// raw delivery such as a [`Select`](crate::Select) returns.
    ///
    /// # Errors
    ///
    /// [`Error::Undecodable`](crate::Error::Undecodable) when the item is not a `T`: it
    /// went to its queue's dead-letter queue, or back to its head if there is none, and
    /// the error carries its bytes.
    pub fn decode<T: DeserializeOwned>(mut self) -> Result<Delivery<T>> {
        let item = match decode(&self.item) {
            Ok(item) => item,
            Err(err) => {
                // Nothing is lost; if this fails, the connection is gone and the broker
                // gives the item back itself.
                let _ = self.settle(Settlement::DeadLetter);
                return Err(err);
            }
        };
        Ok(Delivery {
            item,
            tag: self.tag,
            earlier: self.earlier,
            leased: self.leased,
            owner: self.owner.take(),
        })
    }
}

impl<T> Deref for Delivery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T> Drop for Delivery<T> {
    /// Neither acknowledged nor rejected: back to the head of the queue.
    fn drop(&mut self) {
        // If the connection is gone, the broker has given it back already.
        let _ = self.settle(Settlement::Return);
    }
}

impl<T: fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("item", &self.item)
            .field("deliveries", &self.deliveries())
            .field("settled", &self.owner.is_none())
            .finish()
    }
}
