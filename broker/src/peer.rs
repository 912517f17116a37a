//! One connected client as the objects see it: where its replies go, and which items it
//! holds in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ipcq_proto::{BrokerMsg, ErrorCode, ErrorReply, Reply};

use tokio::task::AbortHandle;

use crate::link::{Link, Outgoing, DIRECT_WRITE};

/// The longest lease a client may set: beyond it, a lease is as good as none.
const MAX_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);

/// An item of a queue, and how many times it was delivered before (the ledger counts one
/// more when it hands the item out, so an item that comes back is marked redelivered).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) bytes: Bytes,
    pub(crate) earlier: u32,
}

impl Item {
    /// An item never delivered.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Item { bytes, earlier: 0 }
    }

    /// The item's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// Where delivered items come from, as the ledger sees it: a queue, which settles them
/// when they are acknowledged and takes them back when they are returned. (A trait, so
/// that the ledger does not depend on the objects that depend on it.)
pub(crate) trait Source: Send + Sync + std::fmt::Debug {
    /// The queue's name, for logs.
    fn name(&self) -> &str;
    /// `count` items delivered to `holder` (a peer id), of `bytes` bytes in all, were
    /// acknowledged; `finished`: each also counts as a `task_done`.
    fn settle(&self, holder: u64, count: u64, bytes: usize, finished: bool);
    /// Items delivered to `holder` come back to the head, in their order.
    fn restore(&self, holder: u64, items: Vec<Item>);
    /// Items delivered to `holder` that cannot be done go to the dead-letter queue.
    fn dead_letter(&self, holder: u64, items: Vec<Item>);
}

/// The broker's side of one client connection, shared by the session task and by every
/// object where this client waits.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u64,
    /// The client's process, from the socket's peer credentials; 0 if unknown.
    pub(crate) pid: u32,
    /// Unbounded on purpose: replies are bounded by the requests the client made, and an
    /// object must be able to answer while holding its own lock, which rules out waiting
    /// for room.
    link: Arc<Link>,
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
    /// Deliveries in tag order, as runs of consecutive tags from one queue: one entry per
    /// delivery rather than per item.
    runs: VecDeque<Run>,
    /// Deliveries with a lease, and when it runs out. Only tags in `runs`: at most as many
    /// as the items held.
    leases: HashMap<u64, tokio::time::Instant>,
    /// The one timer that expires leases, and when it fires.
    lease_timer: Option<(tokio::time::Instant, AbortHandle)>,
}

/// Items of one queue delivered under consecutive tags `first ..`.
#[derive(Debug)]
struct Run {
    first: u64,
    queue: Arc<dyn Source>,
    items: VecDeque<Item>,
}

/// Items taken from the ledger, grouped by queue, in tag order.
pub(crate) type Taken = Vec<(Arc<dyn Source>, Vec<Item>)>;

impl Peer {
    pub(crate) fn new(id: u64, pid: u32, link: Arc<Link>, max_frame_len: usize) -> Self {
        Peer {
            id,
            pid,
            link,
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
        self.link.push(Outgoing {
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
            Ok(()) => self.link.push(Outgoing { head, tail }),
            Err(err) => tracing::error!(cause = %err, peer = self.id, "reply could not be encoded"),
        }
    }

    /// Answers request `id`. An answer that cannot be sent (longer than the client's frame
    /// limit) is replaced by an error saying so: no request goes unanswered.
    pub(crate) fn reply(&self, id: u64, body: Reply) {
        let msg = BrokerMsg::Reply { id, body };
        let mut head = Vec::with_capacity(32);
        match ipcq_proto::encode(&msg, 0, self.max_frame_len() + 1024, &mut head) {
            Ok(()) => self.link.push(Outgoing {
                head,
                tail: Vec::new(),
            }),
            Err(err) => {
                tracing::warn!(cause = %err, peer = self.id, "answer too large for the client");
                let error = ErrorReply::new(
                    ErrorCode::TooLarge,
                    format!("the answer does not fit in a frame: {err}"),
                );
                self.send(
                    &BrokerMsg::Reply {
                        id,
                        body: Reply::Error(error),
                    },
                    Vec::new(),
                );
            }
        }
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
        queue: Arc<dyn Source>,
        mut items: Vec<Item>,
        many: bool,
        ready: u64,
    ) -> Result<(), Vec<Item>> {
        let mut in_flight = self.lock();
        if in_flight.closed {
            return Err(items);
        }
        let tag = in_flight.next_tag;
        in_flight.next_tag += items.len() as u64;
        let body = if many {
            let earlier = if items.iter().any(|item| item.earlier > 0) {
                items.iter().map(|item| item.earlier).collect()
            } else {
                Vec::new()
            };
            Reply::Items {
                tag,
                lens: items.iter().map(|item| len_u32(&item.bytes)).collect(),
                ready,
                earlier,
            }
        } else {
            let earlier = items.first().map_or(0, |item| item.earlier);
            Reply::Item { tag, earlier }
        };
        // The frame is assembled here: small items are copied once, into it, and only
        // large ones travel to the writer as `Bytes`.
        let tail_len: usize = items.iter().map(Item::len).sum();
        let mut head = Vec::with_capacity(32 + items.len() * 5 + tail_len.min(DIRECT_WRITE * 4));
        let mut tail = Vec::new();
        let encoded = ipcq_proto::encode(
            &BrokerMsg::Reply { id, body },
            tail_len,
            self.max_frame_len() + 1024,
            &mut head,
        );
        if let Err(err) = encoded {
            tracing::error!(cause = %err, peer = self.id, "delivery could not be encoded");
            return Err(items);
        }
        for item in &mut items {
            if item.len() >= DIRECT_WRITE || !tail.is_empty() {
                tail.push(item.bytes.clone());
            } else {
                head.extend_from_slice(&item.bytes);
            }
            // If it comes back, it was delivered once more.
            item.earlier = item.earlier.saturating_add(1);
        }
        in_flight.runs.push_back(Run {
            first: tag,
            queue,
            items: items.into(),
        });
        drop(in_flight);
        self.link.push(Outgoing { head, tail });
        Ok(())
    }

    /// Removes the deliveries `tag .. tag + count` from the ledger (to settle them, or to
    /// return them to their queues). Unknown tags are ignored, so acknowledging twice cannot
    /// settle an item twice.
    pub(crate) fn take(&self, tag: u64, count: u32) -> Taken {
        let end = tag.saturating_add(u64::from(count));
        let mut in_flight = self.lock();
        if !in_flight.leases.is_empty() {
            in_flight
                .leases
                .retain(|leased, _| !(tag..end).contains(leased));
        }
        let mut taken: Taken = Vec::new();
        let mut at = 0;
        // Acknowledgements usually settle whole runs from the front, in order.
        while let Some(run) = in_flight.runs.get_mut(at) {
            let run_end = run.first + run.items.len() as u64;
            if run_end <= tag {
                at += 1;
                continue;
            }
            if run.first >= end {
                break;
            }
            let low = usize::try_from(tag.saturating_sub(run.first)).unwrap_or(usize::MAX);
            let high = usize::try_from(end.min(run_end) - run.first).unwrap_or(usize::MAX);
            let queue = Arc::clone(&run.queue);
            let items: Vec<Item> = if low == 0 && high == run.items.len() {
                let run = in_flight.runs.remove(at).expect("the run was just seen");
                run.items.into()
            } else if low == 0 {
                let items = run.items.drain(..high).collect();
                run.first += high as u64;
                at += 1;
                items
            } else {
                // Take the middle (or the end) and keep what follows as a run of its own.
                let rest: VecDeque<Item> = run.items.split_off(high);
                let items = run.items.split_off(low).into();
                let rest_first = run.first + high as u64;
                at += 1;
                if !rest.is_empty() {
                    let queue = Arc::clone(&run.queue);
                    in_flight.runs.insert(
                        at,
                        Run {
                            first: rest_first,
                            queue,
                            items: rest,
                        },
                    );
                    at += 1;
                }
                items
            };
            match taken.last_mut() {
                Some((last, more)) if same(last, &queue) => more.extend(items),
                _ => taken.push((queue, items)),
            }
        }
        taken
    }

    /// Leases the deliveries `tag .. tag + count` that this client holds for `millis`
    /// from now (or extends their leases): not settled by then, they go back to their
    /// queues as if the connection had closed.
    pub(crate) fn lease(self: &Arc<Self>, tag: u64, count: u32, millis: u64) {
        let end = tag.saturating_add(u64::from(count));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(millis).min(MAX_LEASE);
        let mut in_flight = self.lock();
        if in_flight.closed {
            return;
        }
        let InFlight { runs, leases, .. } = &mut *in_flight;
        for run in runs.iter() {
            let (first, last) = (run.first, run.first + run.items.len() as u64);
            for leased in tag.max(first)..end.min(last) {
                leases.insert(leased, deadline);
            }
        }
        self.arm(&mut in_flight);
    }

    /// Makes sure the lease timer fires at the earliest deadline.
    fn arm(self: &Arc<Self>, in_flight: &mut InFlight) {
        let Some(next) = in_flight.leases.values().min().copied() else {
            return;
        };
        if let Some((at, _)) = &in_flight.lease_timer {
            if *at <= next {
                return;
            }
        }
        if let Some((_, timer)) = in_flight.lease_timer.take() {
            timer.abort();
        }
        let peer = Arc::downgrade(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(next).await;
            if let Some(peer) = peer.upgrade() {
                peer.expire_leases();
            }
        });
        in_flight.lease_timer = Some((next, timer.abort_handle()));
    }

    /// The deliveries whose leases ran out go back to their queues, marked redelivered.
    fn expire_leases(self: &Arc<Self>) {
        let due: Vec<u64> = {
            let mut in_flight = self.lock();
            in_flight.lease_timer = None;
            let now = tokio::time::Instant::now();
            let due: Vec<u64> = in_flight
                .leases
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(tag, _)| *tag)
                .collect();
            for tag in &due {
                in_flight.leases.remove(tag);
            }
            self.arm(&mut in_flight);
            due
        };
        for tag in due {
            for (queue, items) in self.take(tag, 1) {
                tracing::debug!(peer = self.id, queue = %queue.name(), tag, "lease ran out");
                queue.restore(self.id, items);
            }
        }
    }

    /// Closes the ledger and returns what was in flight, grouped by queue, oldest first.
    pub(crate) fn close(&self) -> Taken {
        let runs = {
            let mut in_flight = self.lock();
            in_flight.closed = true;
            in_flight.leases.clear();
            if let Some((_, timer)) = in_flight.lease_timer.take() {
                timer.abort();
            }
            std::mem::take(&mut in_flight.runs)
        };
        let mut taken: Taken = Vec::new();
        for run in runs {
            match taken.last_mut() {
                Some((last, more)) if same(last, &run.queue) => more.extend(run.items),
                _ => taken.push((run.queue, run.items.into())),
            }
        }
        taken
    }

    fn lock(&self) -> MutexGuard<'_, InFlight> {
        // A panic while holding this lock would leave a consistent ledger (every mutation
        // is a single push or drain), so a poisoned lock is still safe to use.
        self.in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for Peer {
    /// The last handle on the peer is gone: nothing more will be sent to this client.
    fn drop(&mut self) {
        self.link.close();
    }
}

/// An item's length on the wire. Items come out of frames whose length is a `u32`.
fn len_u32(item: &Bytes) -> u32 {
    u32::try_from(item.len()).unwrap_or(u32::MAX)
}

/// Whether `a` and `b` are the same queue.
fn same(a: &Arc<dyn Source>, b: &Arc<dyn Source>) -> bool {
    // The data pointers alone: two vtables for one type may differ.
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}
