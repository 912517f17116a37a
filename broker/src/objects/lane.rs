//! A queue's ring in shared memory (Linux): the fast path between clients of the broker's
//! own user, who put into it and take from it without a system call.
//!
//! The broker makes the ring when it makes the queue, passes its memory to the clients
//! that ask, gives each connection an owner number, and recovers what an owner held when
//! its connection closes. While the ring serves the queue, the queue's items are in it and
//! nowhere else, but for those the broker holds: items a consumer died holding (given
//! back: consumers ask the broker first while the ring's [`FRONT`] flag is up), and items
//! it handed out over its socket and that have not left for good. Their slots stay taken
//! meanwhile, so the ring never holds more than the capacity. A put or a get over the
//! socket is served from the ring as long as neither has to wait: a get takes items for
//! its client; a put's room is a slot claimed for the client, filled when the item comes
//! on the credit.
//!
//! The first request that needs the broker's own waiting or counting (a put or get over
//! the socket that must wait, `task_done`, `join`, an item larger than a slot) turns the
//! queue over to the socket path: the broker sets the ring's [`SOCKET`] flag, turns the
//! slots claimed for clients into their credits, waits for the pushes already claimed,
//! and moves every item into the queue in ring order. From then on the clients
//! use the socket too, so the guarantees are the socket path's, for every client,
//! whatever mix of them uses the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_shm::{Owner, SharedRing, CLOSED, FRONT, SOCKET};

use super::{Claimed, Filled};
use crate::budget::Budget;
use crate::peer::Peer;

/// Most slots in a ring: a bigger queue uses the socket path (its ring would pin too much
/// memory whether used or not).
pub(crate) const MOST_SLOTS: u64 = 1 << 16;

/// How long a turnover waits for pushes already claimed to be published. A producer
/// stopped mid-write for longer (a debugger, SIGSTOP) publishes later, and its item is
/// collected by the next request (see [`Lane::collect`]).
const WRITERS_WAIT: Duration = Duration::from_millis(20);

/// The owner number the broker takes and puts with itself (clients get the ones below).
const BROKER: u32 = Owner::MAX;

/// The broker's own owner number.
fn broker() -> Owner {
    Owner::new(BROKER).expect("the broker's owner number is valid")
}

/// A queue's ring, its owners, and what the broker took out of it itself.
#[derive(Debug)]
pub(crate) struct Lane {
    ring: SharedRing,
    budget: Arc<Budget>,
    /// Bytes of the ring, counted in the rings' budget until it is dropped.
    bytes: usize,
    owners: Mutex<Owners>,
    /// Items the broker itself took out of the ring (the rest of the ring's count were
    /// taken by clients).
    drained: AtomicU64,
    /// Pushes of dead producers passed over.
    torn: AtomicU64,
    /// Slots (index, lap) the broker keeps taken for items it holds: given back by a dead
    /// consumer, or handed out over the socket and not yet gone for good.
    held: Mutex<VecDeque<(u64, u32)>>,
    /// Slots claimed for clients of the socket that were granted room (a credit) and
    /// have not sent their item yet, by connection.
    claims: Mutex<HashMap<u64, Claims>>,
}

/// The slots claimed for one connection's puts: for its handle on the queue.
#[derive(Debug)]
struct Claims {
    peer: Arc<Peer>,
    handle: u32,
    /// Slot, lap, and the bytes granted with its credit.
    slots: VecDeque<(u64, u32, usize)>,
}

#[derive(Debug, Default)]
struct Owners {
    by_peer: HashMap<u64, Owner>,
    last: u32,
}

impl Lane {
    /// A ring for the queue `name` of `capacity` items of up to `slot_size` bytes, if
    /// there can be one: a bounded queue of at most [`MOST_SLOTS`] whose ring fits
    /// `budget` (the rings' own), and a system that makes one.
    pub(crate) fn create(
        name: &str,
        capacity: u64,
        slot_size: usize,
        budget: &Arc<Budget>,
    ) -> Option<Lane> {
        if capacity == 0 || capacity > MOST_SLOTS || slot_size == 0 {
            return None;
        }
        let slots = usize::try_from(capacity).ok()?;
        let ring = match SharedRing::create(name, slots, slot_size) {
            Ok(ring) => ring,
            Err(err) => {
                // Once at warn: a system that makes no memfd makes none for any queue.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if WARNED.swap(true, Ordering::Relaxed) {
                    tracing::debug!(queue = %name, cause = %err, "no shared-memory ring");
                } else {
                    tracing::warn!(queue = %name, cause = %err, "no shared-memory ring: the socket path serves the queue (logged once)");
                }
                return None;
            }
        };
        let bytes = usize::try_from(ring.file().metadata().ok()?.len()).ok()?;
        if !budget.try_reserve(bytes) {
            tracing::info!(queue = %name, bytes, "no shared-memory ring: the rings' budget is spent");
            return None;
        }
        Some(Lane {
            ring,
            budget: Arc::clone(budget),
            bytes,
            owners: Mutex::new(Owners::default()),
            drained: AtomicU64::new(0),
            torn: AtomicU64::new(0),
            held: Mutex::new(VecDeque::new()),
            claims: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the ring serves the queue (it has not been turned over to the socket).
    pub(crate) fn serving(&self) -> bool {
        self.ring.flags() & SOCKET == 0
    }

    /// The ring's memory, to pass to a client.
    pub(crate) fn file(&self) -> &std::fs::File {
        self.ring.file()
    }

    /// The owner number of connection `peer`, given on its first call; `None` once the
    /// numbers run out (the client then uses the socket).
    pub(crate) fn owner(&self, peer: u64) -> Option<u32> {
        let mut owners = self.owners();
        if let Some(&owner) = owners.by_peer.get(&peer) {
            return Some(owner.get());
        }
        let owner = Owner::new(owners.last + 1).filter(|owner| owner.get() < BROKER)?;
        owners.last = owner.get();
        owners.by_peer.insert(peer, owner);
        Some(owner.get())
    }

    /// Items in the ring now.
    pub(crate) fn len(&self) -> u64 {
        self.ring.len() as u64
    }

    /// Items clients have taken out of the ring, ever.
    pub(crate) fn taken_by_clients(&self) -> u64 {
        self.ring
            .taken()
            .saturating_sub(self.drained.load(Ordering::Relaxed))
    }

    /// Wakes everyone asleep on the ring and sends them to the socket (the broker is
    /// stopping).
    pub(crate) fn stop(&self) {
        self.ring.set_flags(SOCKET);
    }

    /// Later pushes are refused; takes end with `Closed` once the ring is empty.
    pub(crate) fn close(&self) {
        self.ring.set_flags(CLOSED);
    }

    /// Puts `item` for a client of the socket, if the ring has room now.
    pub(crate) fn push(&self, item: &[u8]) -> bool {
        self.ring.push(broker(), item).is_ok()
    }

    /// Takes the item at the head for a client of the socket, keeping its slot until
    /// [`Lane::release`].
    pub(crate) fn take_held(&self) -> Option<Bytes> {
        let (index, lap, item) = self.ring.take_held(broker())?;
        self.held().push_back((index, lap));
        Some(Bytes::from(item))
    }

    /// `count` items the broker held left the queue for good: their slots are freed.
    pub(crate) fn release(&self, count: u64) {
        let mut held = self.held();
        for _ in 0..count {
            let Some((index, lap)) = held.pop_front() else {
                return;
            };
            self.ring.release(broker(), index, lap);
        }
    }

    /// The largest item a slot holds.
    pub(crate) fn slot_size(&self) -> usize {
        self.ring.slot_size()
    }

    /// Claims a slot for a put `peer` will send on its credit (with `bytes` granted), if
    /// the ring has room now.
    pub(crate) fn claim(&self, peer: &Arc<Peer>, handle: u32, bytes: usize) -> bool {
        let Ok((index, lap)) = self.ring.claim(broker()) else {
            return false;
        };
        let mut claims = self.claims();
        let claims = claims.entry(peer.id).or_insert_with(|| Claims {
            peer: Arc::clone(peer),
            handle,
            slots: VecDeque::new(),
        });
        claims.slots.push_back((index, lap, bytes));
        true
    }

    /// Publishes `item`, sent by `peer` on a credit, in the oldest slot claimed for it.
    pub(crate) fn fill(&self, peer: u64, item: &[u8]) -> Filled {
        let mut claims = self.claims();
        let Some((index, lap, _)) = claims
            .get_mut(&peer)
            .and_then(|claims| claims.slots.pop_front())
        else {
            return Filled::NoClaim;
        };
        match self.ring.fill(index, lap, item) {
            Ok(()) => Filled::Yes,
            Err(_) => {
                self.ring.abandon(index, lap);
                Filled::TooLarge
            }
        }
    }

    /// `peer` gave back up to `credits` credits (or, with `None`, went away): their slots
    /// are given up. Returns how many were.
    pub(crate) fn unclaim(&self, peer: u64, credits: Option<u64>) -> u64 {
        let mut claims = self.claims();
        let Some(mine) = claims.get_mut(&peer) else {
            return 0;
        };
        let mut given = 0;
        while credits.is_none_or(|credits| given < credits) {
            let Some((index, lap, _)) = mine.slots.pop_back() else {
                break;
            };
            self.ring.abandon(index, lap);
            given += 1;
        }
        if mine.slots.is_empty() {
            claims.remove(&peer);
        }
        given
    }

    /// Every claim, given up: the queue is being turned over, and these become credits
    /// of the socket path.
    fn unclaim_all(&self) -> Vec<Claimed> {
        let mut claimed = Vec::new();
        for (_, claims) in self.claims().drain() {
            let bytes = claims.slots.iter().map(|&(_, _, bytes)| bytes).sum();
            for &(index, lap, _) in &claims.slots {
                self.ring.abandon(index, lap);
            }
            claimed.push(Claimed {
                peer: claims.peer,
                handle: claims.handle,
                credits: claims.slots.len() as u64,
                bytes,
            });
        }
        claimed
    }

    /// Raises or lowers the flag that sends consumers to the broker first.
    pub(crate) fn front(&self, up: bool) {
        if up {
            self.ring.set_flags(FRONT);
        } else {
            self.ring.clear_flags(FRONT);
        }
    }

    /// Turns the queue `name` over to the socket path (once), for the reason `why`:
    /// returns the ring's items, in order, and the room claimed for clients of the
    /// socket, now to be their credits. Pushes claimed before are waited for, up to
    /// [`WRITERS_WAIT`].
    pub(crate) fn turn_over(&self, name: &str, why: &str) -> (Vec<Bytes>, Vec<Claimed>) {
        if !self.serving() {
            return (self.collect(), Vec::new());
        }
        tracing::info!(queue = %name, reason = why, "queue served over the socket from now on");
        self.ring.set_flags(SOCKET);
        // The items the broker held are the queue's now; their slots are not needed.
        let held = self.held().len() as u64;
        self.release(held);
        let claimed = self.unclaim_all();
        let until = Instant::now() + WRITERS_WAIT;
        while self.ring.writing() > 0 && Instant::now() < until {
            std::thread::yield_now();
        }
        (self.collect(), claimed)
    }

    /// What the ring holds now, once the queue is turned over: pushes published after the
    /// turnover, by producers that had claimed their slots before it.
    pub(crate) fn collect(&self) -> Vec<Bytes> {
        let mut items = Vec::new();
        while let Some(item) = self.ring.pop(broker()) {
            items.push(Bytes::from(item));
        }
        self.drained
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        items
    }

    /// Connection `peer` closed: recovers what its owner held, and returns the items it
    /// had claimed to take, to go back to the head of the queue (the caller raises
    /// [`FRONT`]). A push it had claimed is passed over. The slots of the items given
    /// back stay taken while the broker holds them, so the ring is never over capacity.
    pub(crate) fn forget(&self, name: &str, peer: u64) -> Vec<Bytes> {
        // Room claimed for its puts: given up (consumers pass the slots).
        self.unclaim(peer, None);
        let Some(owner) = self.owners().by_peer.remove(&peer) else {
            return Vec::new();
        };
        if !self.serving() {
            // Turned over: what it was taking (a push published after the turnover, which
            // it found before it saw the flag) goes back to the head all the same.
            let recovered = self.ring.recover(owner);
            self.count_torn(recovered.skipped);
            return recovered.returned.into_iter().map(Bytes::from).collect();
        }
        let recovered = self.ring.recover_held(owner, broker());
        self.count_torn(recovered.skipped);
        if !recovered.returned.is_empty() {
            tracing::debug!(queue = %name, count = recovered.returned.len(), "items of a dead consumer given back");
        }
        self.held().extend(recovered.held);
        recovered.returned.into_iter().map(Bytes::from).collect()
    }

    /// Pushes of dead producers passed over, ever.
    pub(crate) fn torn_writes(&self) -> u64 {
        self.torn.load(Ordering::Relaxed)
    }

    fn count_torn(&self, skipped: usize) {
        if skipped > 0 {
            tracing::debug!(skipped, "a dead producer's half-written items passed over");
            self.torn.fetch_add(skipped as u64, Ordering::Relaxed);
        }
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Claims>> {
        self.claims
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, u32)>> {
        self.held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Clients still mapping it keep the memory; the rings' budget no longer counts it.
        self.ring.set_flags(CLOSED | SOCKET);
        self.budget.release(self.bytes);
    }
}
