//! One connected client as the objects see it: where its replies go, and which items it
//! holds in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ipcq_proto::{BrokerMsg, ErrorCode, ErrorReply, Reply};
use tokio::sync::mpsc;

use crate::objects::Queue;

/// A message for the connection's writer task: an encoded frame head and the item bytes
/// that follow it. Items are passed as `Bytes`, so the writer sends the bytes the producer's
/// frame carried without copying them into a new message.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) head: Vec<u8>,
    pub(crate) tail: Vec<Bytes>,
}

/// The broker's side of one client connection, shared by the session task and by every
/// object where this client waits.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u64,
    /// Unbounded on purpose: replies are bounded by the requests the client made, and an
    /// object must be able to answer while holding its own lock, which rules out waiting
    /// for room.
    out: mpsc::UnboundedSender<Outgoing>,
    /// The longest frame the client accepts (the lower of its limit and the broker's).
    max_frame_len: AtomicUsize,
    in_flight: Mutex<InFlight>,
}

/// Items delivered to this client and not yet acknowledged. They are the client's until it
/// acknowledges them; if the connection goes away first they go back to their queues.
#[derive(Debug, Default)]
struct InFlight {
    /// Set once the connection is being torn down: no delivery may be registered after the
    /// ledger has been handed back, or its item would be lost.
    closed: bool,
    next_tag: u64,
    entries: VecDeque<Delivery>,
}

#[derive(Debug)]
pub(crate) struct Delivery {
    tag: u64,
    pub(crate) queue: Arc<Queue>,
    pub(crate) item: Bytes,
}

/// What an acknowledgement settled on one queue.
#[derive(Debug)]
pub(crate) struct Settled {
    pub(crate) queue: Arc<Queue>,
    pub(crate) count: u64,
    pub(crate) bytes: usize,
}

impl Peer {
    pub(crate) fn new(id: u64, out: mpsc::UnboundedSender<Outgoing>, max_frame_len: usize) -> Self {
        Peer {
            id,
            out,
            max_frame_len: AtomicUsize::new(max_frame_len),
            in_flight: Mutex::new(InFlight::default()),
        }
    }

    pub(crate) fn max_frame_len(&self) -> usize {
        self.max_frame_len.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_frame_len(&self, len: usize) {
        self.max_frame_len.store(len, Ordering::Relaxed);
    }

    /// Sends an already encoded frame.
    pub(crate) fn send_raw(&self, head: Vec<u8>) {
        let _ = self.out.send(Outgoing {
            head,
            tail: Vec::new(),
        });
    }

    /// Sends a frame. A failure means the writer is gone, so the connection is closing and
    /// the session's cleanup takes care of whatever this message carried.
    pub(crate) fn send(&self, msg: &BrokerMsg, tail: Vec<Bytes>) {
        let tail_len = tail.iter().map(Bytes::len).sum();
        let mut head = Vec::with_capacity(32);
        // Replies are built by the broker from items that each fit in a frame and from
        // bounded counts; the frame check guards against a bug rather than input.
        match ipcq_proto::encode(msg, tail_len, self.max_frame_len() + 1024, &mut head) {
            Ok(()) => {
                let _ = self.out.send(Outgoing { head, tail });
            }
            Err(err) => tracing::error!(cause = %err, peer = self.id, "reply could not be encoded"),
        }
    }

    pub(crate) fn reply(&self, id: u64, body: Reply) {
        self.send(&BrokerMsg::Reply { id, body }, Vec::new());
    }

    pub(crate) fn reply_error(&self, id: u64, code: ErrorCode, message: impl Into<String>) {
        self.reply(id, Reply::Error(ErrorReply::new(code, message)));
    }

    pub(crate) fn fatal(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(
            &BrokerMsg::Fatal(ErrorReply::new(code, message)),
            Vec::new(),
        );
    }

    /// Hands items to this client in answer to request `id`, recording them in flight.
    ///
    /// Called with the queue's lock held. Returns the items if the connection is already
    /// being torn down, so the queue can give them to someone else.
    pub(crate) fn deliver(
        &self,
        id: u64,
        queue: &Arc<Queue>,
        items: Vec<Bytes>,
        many: bool,
        ready: u64,
    ) -> Result<(), Vec<Bytes>> {
        let mut in_flight = self.lock();
        if in_flight.closed {
            return Err(items);
        }
        let tag = in_flight.next_tag;
        in_flight.next_tag += items.len() as u64;
        for (offset, item) in items.iter().enumerate() {
            in_flight.entries.push_back(Delivery {
                tag: tag + offset as u64,
                queue: Arc::clone(queue),
                item: item.clone(),
            });
        }
        drop(in_flight);
        let body = if many {
            Reply::Items {
                tag,
                lens: items.iter().map(len_u32).collect(),
                ready,
            }
        } else {
            Reply::Item { tag }
        };
        self.send(&BrokerMsg::Reply { id, body }, items);
        Ok(())
    }

    /// Settles the deliveries `tag .. tag + count`. Unknown tags are ignored: acknowledging
    /// twice cannot settle an item twice.
    pub(crate) fn ack(&self, tag: u64, count: u32) -> Vec<Settled> {
        let mut settled: Vec<Settled> = Vec::new();
        for delivery in self.take(tag, count) {
            match settled.last_mut() {
                Some(last) if Arc::ptr_eq(&last.queue, &delivery.queue) => {
                    last.count += 1;
                    last.bytes += delivery.item.len();
                }
                _ => settled.push(Settled {
                    queue: delivery.queue,
                    count: 1,
                    bytes: delivery.item.len(),
                }),
            }
        }
        settled
    }

    /// Removes the deliveries `tag .. tag + count` from the ledger, oldest first. Unknown
    /// tags are ignored.
    pub(crate) fn take(&self, tag: u64, count: u32) -> Vec<Delivery> {
        let end = tag.saturating_add(u64::from(count));
        let mut in_flight = self.lock();
        // Entries are in tag order, and the oldest are usually the ones settled, so the
        // search is almost always at the front.
        let start = in_flight.entries.partition_point(|d| d.tag < tag);
        let stop = in_flight.entries.partition_point(|d| d.tag < end);
        in_flight.entries.drain(start..stop).collect()
    }

    /// Closes the ledger and returns what was in flight, oldest first.
    pub(crate) fn close(&self) -> VecDeque<Delivery> {
        let mut in_flight = self.lock();
        in_flight.closed = true;
        std::mem::take(&mut in_flight.entries)
    }

    fn lock(&self) -> MutexGuard<'_, InFlight> {
        // A panic while holding this lock would leave a consistent ledger (every mutation
        // is a single push or drain), so a poisoned lock is still safe to use.
        self.in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// An item's length on the wire. Items come out of frames whose length is a `u32`.
fn len_u32(item: &Bytes) -> u32 {
    u32::try_from(item.len()).unwrap_or(u32::MAX)
}
