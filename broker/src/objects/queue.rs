//! The bounded FIFO queue.
//!
//! An item is always in exactly one place: in `items`, in flight to one getter (recorded
//! in that getter's [`Peer`] ledger and counted in `in_flight`), or acknowledged. Capacity
//! counts waiting and in-flight items and the slots reserved for producers (credits), so
//! an in-flight item that comes back from a dead getter, or an item sent on a credit,
//! never pushes the queue over its bound.
//!
//! Credits are how producers stream without a round trip per item: the answer to a `put`
//! may grant some, with bytes for them, and each later put spends one credit and its
//! item's cost in bytes and needs no answer. Granted bytes are taken from the byte
//! budgets at once, so items sent on credits never take a budget past its limit. The
//! grant policy is in [`Queue::grant`].
//!
//! The state never touches a socket: answers are handed to the peer's writer channel,
//! which never blocks, so they can be sent with the lock held and in the order decided
//! under it.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::lane::Lane;
use super::parked::{Park, Parked};
use super::Filled;
use crate::budget::{cost, Budget, Waiter};
use crate::peer::{Item, Peer, Source};
use bytes::Bytes;
use ipcq_proto::{BrokerMsg, ErrorCode, QueueInfo, QueueStats, Reply, Wait, ITEM_OVERHEAD};

/// Most credits granted at once, whatever a client asks for: one producer's idle credits
/// hold at most this many slots.
const MAX_GRANT: u32 = 4096;

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    /// Maximum items (waiting plus in flight); 0 means unbounded.
    pub(crate) capacity: u64,
    /// Payload bytes this queue may hold; over it, the queue counts as full.
    max_bytes: usize,
    budget: Arc<Budget>,
    /// Lets timers and the budget refer to the queue without keeping a removed queue alive.
    this: Weak<Queue>,
    /// Removed when the last connection that opened it closes.
    pub(crate) auto_delete: bool,
    /// Where items that cannot be done go, and after how many deliveries (0: only when a
    /// client sends them there).
    pub(crate) dead_letter: Option<(Arc<Queue>, u32)>,
    /// Connections that opened it, while `auto_delete` (counted by the registry).
    pub(crate) openers: AtomicUsize,
    /// Its ring in shared memory, if it has one (see `lane.rs`): while the ring serves the
    /// queue, the items are there, and `state` holds none.
    pub(crate) lane: Option<Lane>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Item>,
    /// Payload bytes in `items` and in flight.
    bytes: usize,
    in_flight: u64,
    /// Slots promised to producers (the sum of `holders`' credits).
    reserved: u64,
    /// Bytes promised to producers with those slots (the sum of `holders`' bytes), counted
    /// in the broker budget and against `max_bytes`.
    reserved_bytes: usize,
    holders: Vec<Holder>,
    getters: Parked<Getting>,
    putters: Parked<Putting>,
    closed: bool,
    /// Set by `rm`: items are dropped and nothing is accepted any more.
    removed: bool,
    /// Registered with the broker-wide budget, waiting for bytes to be released elsewhere.
    waiting_for_budget: bool,
    total_put: u64,
    total_got: u64,
    /// Items delivered again since the queue was created (after a getter died, returned
    /// or rejected them).
    redelivered: u64,
    /// Items moved to the dead-letter queue since the queue was created.
    dead_lettered: u64,
    /// Who holds the items in flight, and how many.
    holding: Vec<Held>,
    /// Items put and not yet marked done (`task_done`), as `JoinableQueue` counts them.
    unfinished: u64,
    /// Parked `join`s, woken when `unfinished` reaches 0.
    joiners: Parked,
    /// Items clients took out of the ring, as far as the counts above include them.
    folded: u64,
}

/// The items in flight to one connection.
#[derive(Debug)]
struct Held {
    peer: u64,
    /// Its process, 0 if unknown.
    pid: u32,
    count: u64,
}

/// What a parked `get`/`get_many` keeps.
#[derive(Debug)]
struct Getting {
    max: usize,
    many: bool,
}

/// What a parked `put`/`put_many` keeps: the items it has not yet placed; or a parked
/// `wait_room`, holding none.
#[derive(Debug)]
struct Putting {
    /// The producer's handle for this queue, for the credits it may be granted.
    handle: u32,
    items: VecDeque<Bytes>,
    /// For a `wait_room`: the length of the item that will use the slot.
    slot: Option<usize>,
    /// Credits the producer asked for along with this put.
    want: u32,
    /// What each of those credits is for: the cost of this request's largest item.
    per_credit: usize,
}

/// A connection holding credits on this queue.
#[derive(Debug)]
struct Holder {
    peer: Arc<Peer>,
    handle: u32,
    credits: u64,
    /// Bytes granted with the credits and not yet spent.
    bytes: usize,
    /// A `Revoke` was sent and not yet answered: do not send another.
    revoked: bool,
}

/// Why an item cannot enter now.
#[derive(Debug, PartialEq, Eq)]
enum Room {
    Yes,
    /// Capacity or this queue's byte budget.
    Full,
    /// The broker-wide byte budget.
    Budget,
}

impl Source for Queue {
    fn name(&self) -> &str {
        &self.name
    }

    fn settle(&self, holder: u64, count: u64, bytes: usize, finished: bool) {
        Queue::settle(self, holder, count, bytes, finished);
    }

    fn restore(&self, holder: u64, items: Vec<Item>) {
        Queue::restore(self, holder, items);
    }

    fn dead_letter(&self, holder: u64, items: Vec<Item>) {
        Queue::dead_letter(self, holder, items);
    }
}

/// What a queue may have beyond its bound and budgets: all off by default (as for a
/// pipe's inboxes).
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub(crate) auto_delete: bool,
    pub(crate) dead_letter: Option<(Arc<Queue>, u32)>,
    /// The slot size of a ring in shared memory, if it may have one, and the budget its
    /// memory is counted in.
    pub(crate) rings: Option<(usize, Arc<Budget>)>,
}

impl Queue {
    pub(crate) fn new(
        name: String,
        capacity: u64,
        max_bytes: usize,
        budget: Arc<Budget>,
        max_waiters: usize,
        extras: Extras,
    ) -> Arc<Self> {
        let Extras {
            auto_delete,
            dead_letter,
            rings,
        } = extras;
        let lane = rings.and_then(|(size, budget)| Lane::create(&name, capacity, size, &budget));
        Arc::new_cyclic(|this| Queue {
            name,
            capacity,
            max_bytes,
            budget,
            this: this.clone(),
            auto_delete,
            dead_letter,
            openers: AtomicUsize::new(0),
            lane,
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                in_flight: 0,
                reserved: 0,
                reserved_bytes: 0,
                holders: Vec::new(),
                getters: Parked::new(max_waiters),
                putters: Parked::new(max_waiters),
                closed: false,
                removed: false,
                waiting_for_budget: false,
                total_put: 0,
                total_got: 0,
                redelivered: 0,
                dead_lettered: 0,
                holding: Vec::new(),
                unfinished: 0,
                joiners: Parked::new(max_waiters),
                folded: 0,
            }),
        })
    }

    /// `put` and `put_many`: the items enter in order, each as soon as there is room; the
    /// request is answered once the last one is in, with the credits granted for later
    /// puts (up to `want`).
    pub(crate) fn put(
        &self,
        peer: &Arc<Peer>,
        handle: u32,
        request: u64,
        mut items: VecDeque<Bytes>,
        wait: Wait,
        want: u32,
    ) {
        let per_credit = items.iter().map(|item| cost(item.len())).max().unwrap_or(0);
        if let Some(lane) = self.serving_lane() {
            let state = self.lock();
            if !state.closed {
                // Into the ring while it has room: the queue stays there.
                while items.front().is_some_and(|item| lane.push(item)) {
                    items.pop_front();
                }
                if items.is_empty() {
                    drop(state);
                    peer.reply(
                        request,
                        Reply::Accepted {
                            credits: 0,
                            bytes: 0,
                        },
                    );
                    return;
                }
            }
        }
        let mut state = self.lock_data("a put over the socket that waits for room");
        if state.closed {
            drop(state);
            peer.reply_error(request, ErrorCode::Closed, self.closed_message());
            return;
        }
        // FIFO among putters: nobody overtakes a parked putter.
        if state.putters.is_empty() {
            while let Some(item) = items.front() {
                if self.room(&state, cost(item.len())) != Room::Yes {
                    break;
                }
                let item = items.pop_front().expect("front was just seen");
                self.push(&mut state, item);
            }
        }
        if items.is_empty() {
            let (credits, bytes) = self.grant(&mut state, peer, handle, want, per_credit);
            peer.reply(request, Reply::Accepted { credits, bytes });
            self.feed_getters(&mut state);
            return;
        }
        let putting = Putting {
            handle,
            items,
            slot: None,
            want,
            per_credit,
        };
        self.park_putter(state, peer, request, putting, wait);
    }

    /// `wait_room`: reserves a slot for one item of `len` bytes for `peer`, now or in turn
    /// with the parked putters, and answers with that credit plus up to `want` more. The
    /// item comes later as a put on the credit; until then the slot counts as reserved.
    pub(crate) fn wait_room(
        &self,
        peer: &Arc<Peer>,
        handle: u32,
        request: u64,
        len: usize,
        wait: Wait,
        want: u32,
    ) {
        if let Some(lane) = self.serving_lane() {
            let state = self.lock();
            // A slot claimed in the ring is the room: the item it is for comes on the
            // credit, into that slot.
            if !state.closed && len <= lane.slot_size() && lane.claim(peer, handle, cost(len)) {
                drop(state);
                let bytes = cost(len) as u64;
                peer.reply(request, Reply::Accepted { credits: 1, bytes });
                return;
            }
        }
        // From here on, `len` is what the item will count.
        let len = cost(len);
        let mut state = self.lock_data("a put over the socket that waits for room");
        if state.closed {
            drop(state);
            peer.reply_error(request, ErrorCode::Closed, self.closed_message());
            return;
        }
        if state.putters.is_empty() && self.room(&state, len) == Room::Yes {
            self.give_slot(&mut state, peer, handle, request, len, want);
            return;
        }
        let putting = Putting {
            handle,
            items: VecDeque::new(),
            slot: Some(len),
            want,
            per_credit: len,
        };
        self.park_putter(state, peer, request, putting, wait);
    }

    /// A put or `wait_room` that found no room: parks it for as long as `wait` allows
    /// (behind the other putters), or answers `Full` at once, or `LimitReached` when too
    /// many wait already.
    fn park_putter(
        &self,
        mut state: MutexGuard<'_, State>,
        peer: &Arc<Peer>,
        request: u64,
        putting: Putting,
        wait: Wait,
    ) {
        // No room: credits held idle elsewhere may be what is missing.
        self.revoke_others(&mut state, peer.id);
        // Items of a `put_many` that went in before it ran out of room are for the getters,
        // whatever becomes of the rest.
        self.feed_getters(&mut state);
        let expire = self.expire(Self::expire_putter);
        match state
            .putters
            .park_with(peer, request, wait, putting, expire)
        {
            Park::Parked => self.wait_for_budget_if_blocked(&mut state),
            Park::Now(_) => {
                drop(state);
                let message = format!("queue '{}' is full", self.name);
                peer.reply_error(request, ErrorCode::Full, message);
            }
            Park::Refused => {}
        }
    }

    /// Reserves the slot that `room` found for `peer`, with the `len` bytes `room` took
    /// from the broker budget for it and the credits the grant policy adds, and answers
    /// request `request`.
    fn give_slot(
        &self,
        state: &mut State,
        peer: &Arc<Peer>,
        handle: u32,
        request: u64,
        len: usize,
        want: u32,
    ) {
        self.hold(state, peer, handle, 1, len);
        let (credits, bytes) = self.grant(state, peer, handle, want, len);
        let (credits, bytes) = (credits + 1, bytes + len as u64);
        peer.reply(request, Reply::Accepted { credits, bytes });
    }

    /// The client no longer waits for request `request` of `peer`: if it is parked here, it
    /// leaves (a put's items that are not in yet are dropped with it) and is answered with
    /// `Cancelled`.
    pub(crate) fn cancel(&self, peer: u64, request: u64) {
        let mut state = self.lock();
        if state.getters.cancel(peer, request).is_some() {
            return;
        }
        if let Some(at) = state.putters.cancel(peer, request) {
            if at == 0 {
                // The putter at the head may have been the one that could not fit.
                self.admit_putters(&mut state);
                self.feed_getters(&mut state);
            }
            return;
        }
        state.joiners.cancel(peer, request);
    }

    /// Puts on slots reserved for `peer` (its credits), each spending one credit and its
    /// cost in granted bytes. They were promised before, so they enter even if the queue
    /// has since been closed; only a removed queue drops them.
    ///
    /// # Errors
    ///
    /// When `peer` has fewer credits than items, or fewer bytes than they cost: the client
    /// broke the protocol.
    pub(crate) fn send_reserved(&self, peer: u64, items: Vec<Bytes>) -> Result<(), String> {
        let mut items = VecDeque::from(items);
        if let Some(lane) = self.serving_lane() {
            let state = self.lock();
            while let Some(item) = items.front() {
                match lane.fill(peer, item) {
                    Filled::Yes => {
                        items.pop_front();
                    }
                    Filled::NoClaim => break,
                    Filled::TooLarge => {
                        // Larger than the room claimed for it: over the socket, in order,
                        // the other claims becoming credits there.
                        drop(state);
                        let mut state = self.lock_data("an item larger than a slot");
                        let item = items.pop_front().expect("front was just seen");
                        self.enter(&mut state, item, false);
                        self.feed_getters(&mut state);
                        break;
                    }
                }
            }
            if items.is_empty() {
                return Ok(());
            }
        }
        let items = Vec::from(items);
        let mut state = self.lock();
        let count = items.len() as u64;
        let spent: usize = items.iter().map(|item| cost(item.len())).sum();
        let Some(at) = state.holders.iter().position(|h| h.peer.id == peer) else {
            return Err(format!("put on queue '{}' without a credit", self.name));
        };
        let holder = &mut state.holders[at];
        if holder.credits < count {
            return Err(format!(
                "{count} puts on queue '{}' with {} credits",
                self.name, holder.credits
            ));
        }
        if holder.bytes < spent {
            return Err(format!(
                "puts of {spent} bytes on queue '{}' with {} bytes granted",
                self.name, holder.bytes
            ));
        }
        holder.credits -= count;
        holder.bytes -= spent;
        state.reserved -= count;
        state.reserved_bytes -= spent;
        // Bytes granted for larger items than came are let go with the last credit.
        let mut freed = self.drop_spare_bytes(&mut state, at);
        if state.removed {
            freed += spent;
        } else {
            for item in items {
                self.push(&mut state, item);
            }
        }
        self.settle_freed(state, freed);
        Ok(())
    }

    /// If the holder at `at` has no credit left, lets its remaining granted bytes go from
    /// this queue's count (the caller releases them from the budget); returns how many.
    fn drop_spare_bytes(&self, state: &mut State, at: usize) -> usize {
        let holder = &mut state.holders[at];
        if holder.credits != 0 {
            return 0;
        }
        let spare = std::mem::take(&mut holder.bytes);
        state.reserved_bytes -= spare;
        spare
    }

    /// After a change that may have freed room: `freed` bytes go back to the broker budget,
    /// waiting putters and getters here are served, and queues waiting for bytes elsewhere
    /// are woken.
    fn settle_freed(&self, mut state: MutexGuard<'_, State>, freed: usize) {
        if freed != 0 {
            self.budget.release(freed);
        }
        self.admit_putters(&mut state);
        self.feed_getters(&mut state);
        drop(state);
        if freed != 0 {
            self.budget.wake_waiting();
        }
    }

    /// Credits asked for ahead of need, for items of about `len` bytes: what the grant
    /// policy spares now, maybe none; returns the credits and bytes granted.
    pub(crate) fn reserve(
        &self,
        peer: &Arc<Peer>,
        handle: u32,
        want: u32,
        len: usize,
    ) -> (u32, u64) {
        if self.serving_lane().is_some() {
            // Credits ahead of need would be slots claimed and left empty, which hold the
            // ring's consumers: none. Each put asks for its room.
            return (0, 0);
        }
        let mut state = self.lock_data("credits asked for");
        self.grant(&mut state, peer, handle, want, cost(len))
    }

    /// Unused credits and bytes come back (with the last credit, every byte granted with
    /// them).
    pub(crate) fn release(&self, peer: u64, credits: u32, bytes: usize) {
        let mut state = self.lock();
        if let Some(lane) = self.serving_lane() {
            if lane.unclaim(peer, Some(u64::from(credits))) > 0 {
                return;
            }
        }
        if let Some(at) = state.holders.iter().position(|h| h.peer.id == peer) {
            let holder = &mut state.holders[at];
            let returned = holder.credits.min(u64::from(credits));
            let bytes = holder.bytes.min(bytes);
            holder.credits -= returned;
            holder.bytes -= bytes;
            holder.revoked = false;
            state.reserved -= returned;
            state.reserved_bytes -= bytes;
            let freed = bytes + self.drop_spare_bytes(&mut state, at);
            self.settle_freed(state, freed);
        }
    }

    /// `get` (`max` 1, `many` false) and `get_many`.
    pub(crate) fn get(&self, peer: &Arc<Peer>, request: u64, wait: Wait, max: usize, many: bool) {
        let mut state = self.lock_get(max, wait);
        if let Some(message) = too_large_for(&state.items, peer) {
            // It stays at the head, which the ring's consumers must now ask for.
            self.sync_front(&state);
            drop(state);
            peer.reply_error(request, ErrorCode::TooLarge, message);
            return;
        }
        if !state.items.is_empty() {
            self.hand_out(&mut state, peer, request, max, many);
            self.sync_front(&state);
            return;
        }
        if state.drained() {
            drop(state);
            peer.reply_error(request, ErrorCode::Closed, self.closed_message());
            return;
        }
        let expire = self.expire(Self::expire_getter);
        let getting = Getting { max, many };
        if let Park::Now(_) = state
            .getters
            .park_with(peer, request, wait, getting, expire)
        {
            drop(state);
            let message = format!("queue '{}' is empty", self.name);
            peer.reply_error(request, ErrorCode::Empty, message);
        }
    }

    /// Acknowledged deliveries leave the queue for good, freeing their room.
    /// `finished`: each also counts as a `task_done` (an acknowledged delivery whose work
    /// is done).
    pub(crate) fn settle(&self, holder: u64, count: u64, bytes: usize, finished: bool) {
        let mut state = self.lock();
        self.release_slots(count);
        state.let_go(holder, count);
        state.bytes -= bytes;
        state.total_got += count;
        self.budget.release(bytes);
        if finished {
            self.mark_done(&mut state, count);
        }
        self.admit_putters(&mut state);
        self.feed_getters(&mut state);
        drop(state);
        self.budget.wake_waiting();
    }

    /// In-flight items of a client that went away, or that it gave back, come back to the
    /// head, in their order; those delivered as many times as the dead-letter limit allows
    /// go to the dead-letter queue instead.
    pub(crate) fn restore(&self, holder: u64, items: Vec<Item>) {
        let limit = match &self.dead_letter {
            Some((_, limit)) if *limit > 0 => *limit,
            _ => u32::MAX,
        };
        let (dead, back): (Vec<Item>, Vec<Item>) =
            items.into_iter().partition(|item| item.earlier >= limit);
        if !back.is_empty() {
            self.put_back(holder, back);
        }
        if !dead.is_empty() {
            self.dead_letter(holder, dead);
        }
    }

    fn put_back(&self, holder: u64, items: Vec<Item>) {
        let mut state = self.lock();
        state.let_go(holder, items.len() as u64);
        if state.removed {
            let bytes: usize = items.iter().map(|item| cost(item.len())).sum();
            state.bytes -= bytes;
            self.budget.release(bytes);
            drop(state);
            self.budget.wake_waiting();
            return;
        }
        return_to_front(&mut state.items, items);
        self.sync_front(&state);
        self.feed_getters(&mut state);
    }

    /// In-flight items that cannot be done move to the dead-letter queue, with their
    /// delivery counts, and count as done here; without one (or if it was removed), they
    /// come back to the head.
    pub(crate) fn dead_letter(&self, holder: u64, items: Vec<Item>) {
        let Some((target, _)) = &self.dead_letter else {
            return self.put_back(holder, items);
        };
        let count = items.len() as u64;
        let bytes: usize = items.iter().map(|item| cost(item.len())).sum();
        // Taken in by the other queue first (its lock alone), so that no item is ever
        // in neither; the two locks are never held together.
        if let Err(items) = target.take_in(items) {
            return self.put_back(holder, items);
        }
        let mut state = self.lock();
        self.release_slots(count);
        state.let_go(holder, count);
        state.bytes -= bytes;
        state.dead_lettered += count;
        self.mark_done(&mut state, count);
        self.budget.release(bytes);
        self.admit_putters(&mut state);
        self.feed_getters(&mut state);
        drop(state);
        self.budget.wake_waiting();
        tracing::debug!(queue = %self.name, to = %target.name, count, "items dead-lettered");
    }

    /// Items moved here from another queue (this is its dead-letter queue): at the back,
    /// whatever the capacity, with their delivery counts. A removed queue gives them back.
    fn take_in(&self, items: Vec<Item>) -> Result<(), Vec<Item>> {
        let mut state = self.lock();
        if state.removed {
            return Err(items);
        }
        for item in items {
            let bytes = cost(item.len());
            // Bytes already counted by the queue they come from, which lets them go next.
            self.budget.force(bytes);
            state.bytes += bytes;
            state.total_put += 1;
            state.unfinished += 1;
            state.items.push_back(item);
        }
        self.feed_getters(&mut state);
        Ok(())
    }

    /// Drops the parked requests of a client that went away.
    pub(crate) fn forget(&self, peer: u64) {
        let mut state = self.lock();
        if let Some(lane) = &self.lane {
            // Under the lock: what comes back goes in before any later request's items.
            let returned = lane.forget(&self.name, peer);
            if !returned.is_empty() {
                // Delivered once already, as an item in flight to a dead getter is.
                state.redelivered += returned.len() as u64;
                for item in returned.into_iter().rev() {
                    self.enter(&mut state, item, true);
                    if let Some(item) = state.items.front_mut() {
                        item.earlier = 1;
                    }
                }
                self.sync_front(&state);
                self.feed_getters(&mut state);
            }
        }
        state.getters.forget(peer);
        state.joiners.forget(peer);
        let putters_left = state.putters.forget(peer);
        let mut freed = false;
        let mut bytes = 0;
        if let Some(at) = state.holders.iter().position(|h| h.peer.id == peer) {
            let holder = state.holders.swap_remove(at);
            state.reserved -= holder.credits;
            state.reserved_bytes -= holder.bytes;
            bytes = holder.bytes;
            freed = holder.credits > 0 || bytes > 0;
        }
        if putters_left || freed {
            // The putter at the head may have been the one that could not fit.
            self.settle_freed(state, bytes);
        }
    }

    /// `close`: later puts fail, parked putters fail, getters drain what is left.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        if let Some(lane) = &self.lane {
            lane.close();
        }
        // Credit holders learn of it; what they already sent on credits still enters.
        self.revoke_others(&mut state, 0);
        state
            .putters
            .fail_all(ErrorCode::Closed, &self.closed_message());
        self.feed_getters(&mut state);
    }

    /// `rm`: close, drop every waiting item, refuse everything from now on.
    pub(crate) fn remove(&self) {
        let mut state = self.lock();
        state.removed = true;
        if let Some(lane) = &self.lane {
            // Its clients go to the socket, where the queue is gone; its items with it.
            lane.close();
            drop(self.turn_over(&mut state, lane, "removed"));
        }
        let dropped: usize = state.items.drain(..).map(|item| cost(item.len())).sum();
        state.bytes -= dropped;
        self.budget.release(dropped);
        state
            .joiners
            .fail_all(ErrorCode::Closed, &self.closed_message());
        drop(state);
        self.close();
        self.budget.wake_waiting();
    }

    /// Broker shutdown: every parked request learns it at once.
    pub(crate) fn shut_down(&self) {
        let mut state = self.lock();
        if let Some(lane) = &self.lane {
            // Gets and puts asleep on the ring wake and go to the socket, which is closing.
            lane.stop();
        }
        let (code, message) = (ErrorCode::ShuttingDown, "the broker is shutting down");
        state.getters.fail_all(code, message);
        state.putters.fail_all(code, message);
        state.joiners.fail_all(code, message);
    }

    /// `task_done`: one more item processed.
    ///
    /// # Errors
    ///
    /// When every item put has already been marked done.
    pub(crate) fn task_done(&self) -> Result<(), String> {
        let mut state = self.lock_data("task_done");
        if state.unfinished == 0 {
            return Err(format!(
                "task_done on queue '{}' called more times than items were put",
                self.name
            ));
        }
        self.mark_done(&mut state, 1);
        Ok(())
    }

    /// `count` items marked done; `join`s return when none is left.
    fn mark_done(&self, state: &mut State, count: u64) {
        if state.unfinished == 0 {
            return;
        }
        state.unfinished = state.unfinished.saturating_sub(count);
        if state.unfinished == 0 {
            for joiner in state.joiners.take_all() {
                joiner.peer.reply(joiner.request, Reply::Flag(true));
            }
        }
    }

    /// `join`: answers `Flag(true)` once every item put has been marked done, `Flag(false)`
    /// when the wait runs out.
    pub(crate) fn join(&self, peer: &Arc<Peer>, request: u64, wait: Wait) {
        let mut state = self.lock_data("join");
        if state.unfinished == 0 {
            drop(state);
            peer.reply(request, Reply::Flag(true));
            return;
        }
        let expire = self.expire(Self::expire_joiner);
        if let Park::Now(()) = state.joiners.park_with(peer, request, wait, (), expire) {
            drop(state);
            peer.reply(request, Reply::Flag(false));
        }
    }

    fn expire_joiner(&self, id: u64) {
        let joiner = self.lock().joiners.expired(id);
        if let Some(joiner) = joiner {
            joiner.peer.reply(joiner.request, Reply::Flag(false));
        }
    }

    /// Credits for a producer whose put just went in, each with `per_credit` bytes (the
    /// cost of the request's largest item); returns the credits and bytes granted.
    ///
    /// A bounded queue grants at most half of its free slots, so one producer's idle
    /// credits never take the last free slot from another (and a queue with fewer than two
    /// free slots grants none: each put is then a round trip). Whatever the queue, the
    /// bytes granted are at most half of what both this queue's byte budget and the
    /// broker's have left, and are taken from them at once: items sent on credits never
    /// take a budget past its limit. Parked putters come first: no grant while any wait.
    fn grant(
        &self,
        state: &mut State,
        peer: &Arc<Peer>,
        handle: u32,
        want: u32,
        per_credit: usize,
    ) -> (u32, u64) {
        if want == 0 || state.closed || state.removed || !state.putters.is_empty() {
            return (0, 0);
        }
        let per_credit = per_credit.max(cost(0));
        let mut credits = u64::from(want.min(MAX_GRANT));
        if self.capacity != 0 {
            let free = self.capacity.saturating_sub(state.len() + state.reserved);
            credits = credits.min(free / 2);
        }
        let room = self
            .max_bytes
            .saturating_sub(state.bytes + state.reserved_bytes)
            .min(self.budget.free());
        credits = credits.min((room / 2 / per_credit) as u64);
        // At most MAX_GRANT credits, each within the room: the product fits.
        let bytes = usize::try_from(credits).unwrap_or(0) * per_credit;
        if credits == 0 || !self.budget.try_reserve(bytes) {
            return (0, 0);
        }
        self.hold(state, peer, handle, credits, bytes);
        // `want` is a u32, so the grant fits.
        (u32::try_from(credits).unwrap_or(u32::MAX), bytes as u64)
    }

    /// Reserves `credits` slots and `bytes` bytes (already taken from the broker budget)
    /// for `peer`.
    fn hold(&self, state: &mut State, peer: &Arc<Peer>, handle: u32, credits: u64, bytes: usize) {
        state.reserved += credits;
        state.reserved_bytes += bytes;
        match state.holders.iter_mut().find(|h| h.peer.id == peer.id) {
            Some(holder) => {
                holder.credits += credits;
                holder.bytes += bytes;
                holder.revoked = false;
            }
            None => state.holders.push(Holder {
                peer: Arc::clone(peer),
                handle,
                credits,
                bytes,
                revoked: false,
            }),
        }
    }

    /// Asks every other connection holding credits to give them back.
    fn revoke_others(&self, state: &mut State, except: u64) {
        if state.reserved == 0 {
            return;
        }
        for holder in &mut state.holders {
            if holder.peer.id != except && holder.credits > 0 && !holder.revoked {
                holder.revoked = true;
                holder.peer.send(
                    &BrokerMsg::Revoke {
                        handle: holder.handle,
                    },
                    Vec::new(),
                );
            }
        }
    }

    pub(crate) fn info(&self) -> QueueInfo {
        let state = self.lock();
        let len = state.len() + self.in_ring();
        let full = !state.putters.is_empty()
            || (self.capacity != 0 && len >= self.capacity)
            || self.room(&state, 0) != Room::Yes
            || state.bytes >= self.max_bytes
            || self.budget.exhausted();
        QueueInfo {
            len,
            capacity: self.capacity,
            full,
            closed: state.closed,
        }
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let state = self.lock();
        let (in_ring, taken) = (self.in_ring(), self.taken_unfolded(&state));
        let put = state
            .total_put
            .saturating_add(taken)
            .saturating_add(in_ring);
        QueueStats {
            ready: state.items.len() as u64 + in_ring,
            in_flight: state.in_flight,
            reserved: state.reserved,
            capacity: self.capacity,
            bytes: state.bytes as u64,
            getters: state.getters.len() as u64,
            putters: state.putters.len() as u64,
            total_put: put,
            total_got: state.total_got.saturating_add(taken),
            redelivered: state.redelivered,
            dead_lettered: state.dead_lettered,
            holders: state
                .holding
                .iter()
                .map(|held| ipcq_proto::Holder {
                    pid: held.pid,
                    connection: held.peer,
                    in_flight: held.count,
                })
                .collect(),
            closed: state.closed,
            auto_delete: self.auto_delete,
            shared_memory: self.lane.as_ref().is_some_and(Lane::serving),
            torn_writes: self.lane.as_ref().map_or(0, Lane::torn_writes),
        }
    }

    fn expire_getter(&self, id: u64) {
        let getter = self.lock().getters.expired(id);
        if let Some(getter) = getter {
            getter.peer.reply_error(
                getter.request,
                ErrorCode::Empty,
                format!("queue '{}' is empty", self.name),
            );
        }
    }

    fn expire_putter(&self, id: u64) {
        let mut state = self.lock();
        if let Some((at, putter)) = state.putters.expired_at(id) {
            // Items of a `put` that timed out were never accepted. (Only single-item puts
            // carry a timeout, so nothing of this request is in the queue.)
            putter.peer.reply_error(
                putter.request,
                ErrorCode::Full,
                format!("queue '{}' is full", self.name),
            );
            if at == 0 {
                self.admit_putters(&mut state);
                self.feed_getters(&mut state);
            }
        }
    }

    fn room(&self, state: &State, len: usize) -> Room {
        if state.removed {
            return Room::Full;
        }
        if self.capacity != 0 && state.len() + state.reserved >= self.capacity {
            return Room::Full;
        }
        // An item always fits an empty queue: the broker refuses configurations whose
        // budgets are smaller than one frame, so this only stops one item from being
        // larger than the budget forever. Bytes granted with credits are as good as in.
        let held = state.bytes + state.reserved_bytes;
        if held != 0 && held + len > self.max_bytes {
            return Room::Full;
        }
        if len != 0 && !self.budget.try_reserve(len) {
            return Room::Budget;
        }
        Room::Yes
    }

    /// Places an item whose room `room` has reserved.
    fn push(&self, state: &mut State, item: Bytes) {
        state.bytes += cost(item.len());
        state.total_put += 1;
        state.unfinished += 1;
        state.items.push_back(Item::new(item));
    }

    fn admit_putters(&self, state: &mut State) {
        loop {
            let Some(putter) = state.putters.front() else {
                return;
            };
            if let Some(len) = putter.data.slot {
                if self.room(state, len) != Room::Yes {
                    return;
                }
                let putter = state.putters.pop().expect("front was just seen");
                let (handle, want) = (putter.data.handle, putter.data.want);
                self.give_slot(state, &putter.peer, handle, putter.request, len, want);
                continue;
            }
            match putter.data.items.front().map(|item| cost(item.len())) {
                Some(len) => {
                    if self.room(state, len) != Room::Yes {
                        return;
                    }
                    let putter = state.putters.front_mut().expect("front was just seen");
                    let item = putter.data.items.pop_front().expect("front was just seen");
                    self.push(state, item);
                }
                None => {
                    let putter = state.putters.pop().expect("front was just seen");
                    let Putting {
                        handle,
                        want,
                        per_credit,
                        ..
                    } = putter.data;
                    let (credits, bytes) =
                        self.grant(state, &putter.peer, handle, want, per_credit);
                    putter
                        .peer
                        .reply(putter.request, Reply::Accepted { credits, bytes });
                }
            }
        }
    }

    fn feed_getters(&self, state: &mut State) {
        while !state.items.is_empty() {
            let Some(getter) = state.getters.pop() else {
                return;
            };
            if let Some(message) = too_large_for(&state.items, &getter.peer) {
                // The item stays for a getter that accepts it.
                getter
                    .peer
                    .reply_error(getter.request, ErrorCode::TooLarge, message);
                continue;
            }
            // If that getter's connection is being torn down, the next one gets them.
            let Getting { max, many } = getter.data;
            self.hand_out(state, &getter.peer, getter.request, max, many);
        }
        if state.drained() {
            state
                .getters
                .fail_all(ErrorCode::Closed, &self.closed_message());
        }
    }

    /// Delivers up to `max` items from the head to request `request` of `peer`; if its
    /// connection is being torn down, they stay at the head.
    fn hand_out(&self, state: &mut State, peer: &Arc<Peer>, request: u64, max: usize, many: bool) {
        let items = take(&mut state.items, max, peer.max_frame_len());
        let count = items.len() as u64;
        let again = items.iter().filter(|item| item.earlier > 0).count() as u64;
        let ready = state.items.len() as u64;
        match peer.deliver(request, self.arc(), items, many, ready) {
            Ok(()) => {
                state.hold(peer, count);
                state.redelivered += again;
            }
            Err(items) => return_to_front(&mut state.items, items),
        }
    }

    fn wait_for_budget_if_blocked(&self, state: &mut State) {
        if state.waiting_for_budget {
            return;
        }
        let Some(len) = state.putters.front().and_then(|p| {
            p.data
                .slot
                .or_else(|| p.data.items.front().map(|item| cost(item.len())))
        }) else {
            return;
        };
        let local_room = (self.capacity == 0 || state.len() + state.reserved < self.capacity)
            && (state.bytes == 0 || state.bytes + len <= self.max_bytes);
        if local_room {
            state.waiting_for_budget = true;
            let this: Weak<dyn Waiter> = self.this.clone();
            self.budget.wait(this);
            // Bytes released between the failed reservation and the registration would
            // not wake this queue: try once more now that it is registered.
            self.admit_putters(state);
            self.feed_getters(state);
        }
    }

    /// What a parked request's timer runs: `expire` on this queue, if it still exists.
    fn expire(&self, expire: fn(&Queue, u64)) -> impl FnOnce(u64) + Send + 'static {
        let queue = self.this.clone();
        move |id| {
            if let Some(queue) = queue.upgrade() {
                expire(&queue, id);
            }
        }
    }

    fn arc(&self) -> Arc<Queue> {
        // Every queue lives in an `Arc` made by `new`, and `&self` proves it is alive.
        self.this
            .upgrade()
            .expect("a queue is always owned by an Arc")
    }

    fn closed_message(&self) -> String {
        format!("queue '{}' is closed", self.name)
    }

    /// The state, for a request that needs the broker's bookkeeping: a ring serving the
    /// queue is turned over to the socket path first, its items moved in (see `lane.rs`),
    /// and items published into it since are collected.
    fn lock_data(&self, why: &str) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        if let Some(lane) = &self.lane {
            let items = self.turn_over(&mut state, lane, why);
            self.fold(&mut state, lane);
            if !items.is_empty() {
                for item in items {
                    self.enter(&mut state, item, false);
                }
                self.feed_getters(&mut state);
            }
        }
        state
    }

    /// Turns the queue over to the socket (see [`Lane::turn_over`]): returns the ring's
    /// items; room claimed in the ring for clients of the socket becomes their credits.
    fn turn_over(&self, state: &mut State, lane: &Lane, why: &str) -> Vec<Bytes> {
        let (items, claimed) = lane.turn_over(&self.name, why);
        for claimed in claimed {
            self.budget.force(claimed.bytes);
            self.hold(
                state,
                &claimed.peer,
                claimed.handle,
                claimed.credits,
                claimed.bytes,
            );
        }
        items
    }

    /// The state, for a get over the socket: served from the ring while it has items
    /// (up to `max`, their slots kept until they leave for good), turned over to the
    /// socket when the get would wait (one that does not wait finds the queue empty).
    fn lock_get(&self, max: usize, wait: Wait) -> MutexGuard<'_, State> {
        if let Some(lane) = self.serving_lane() {
            let mut state = self.lock();
            // Items the broker holds (given back) come first.
            while state.items.len() < max.max(1) {
                let Some(item) = lane.take_held() else { break };
                self.enter(&mut state, item, false);
            }
            if !state.items.is_empty() || matches!(wait, Wait::NoWait | Wait::Micros(0)) {
                self.fold(&mut state, lane);
                return state;
            }
        }
        self.lock_data("a get over the socket that waits")
    }

    /// The lane, while its ring serves the queue.
    fn serving_lane(&self) -> Option<&Lane> {
        self.lane.as_ref().filter(|lane| lane.serving())
    }

    /// While the ring serves the queue, items the broker holds go before the ring's:
    /// consumers are sent to it first while there are any.
    fn sync_front(&self, state: &State) {
        if let Some(lane) = self.serving_lane() {
            lane.front(!state.items.is_empty());
        }
    }

    /// `count` items the broker held left for good: while the ring serves the queue,
    /// their slots are freed.
    fn release_slots(&self, count: u64) {
        if let Some(lane) = self.serving_lane() {
            lane.release(count);
        }
    }

    /// Items in the ring while it serves the queue.
    fn in_ring(&self) -> u64 {
        self.lane
            .as_ref()
            .filter(|lane| lane.serving())
            .map_or(0, Lane::len)
    }

    /// Items clients took out of the ring that the counts do not include yet.
    fn taken_unfolded(&self, state: &State) -> u64 {
        self.lane.as_ref().map_or(0, |lane| {
            lane.taken_by_clients().saturating_sub(state.folded)
        })
    }

    /// Counts the items clients took out of the ring: put, taken, and (for `join`) not
    /// yet done.
    fn fold(&self, state: &mut State, lane: &Lane) {
        let taken = lane.taken_by_clients();
        // Saturating: the count is in memory that clients can write.
        let new = taken.saturating_sub(state.folded);
        state.folded = taken;
        state.total_put = state.total_put.saturating_add(new);
        state.total_got = state.total_got.saturating_add(new);
        state.unfinished = state.unfinished.saturating_add(new);
    }

    /// Places an item that comes from the ring (its bytes were in the ring's memory, not
    /// yet in the budget), at the back or, given back, at the front.
    fn enter(&self, state: &mut State, item: Bytes, front: bool) {
        let len = cost(item.len());
        self.budget.force(len);
        state.bytes += len;
        state.total_put += 1;
        state.unfinished += 1;
        if front {
            state.items.push_front(Item::new(item));
        } else {
            state.items.push_back(Item::new(item));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation keeps the state consistent before any call that could panic, so a
        // poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Waiter for Queue {
    /// Bytes were released elsewhere in the broker: try the putters again.
    fn budget_released(&self) {
        let mut state = self.lock();
        state.waiting_for_budget = false;
        self.admit_putters(&mut state);
        self.feed_getters(&mut state);
        self.wait_for_budget_if_blocked(&mut state);
    }
}

impl State {
    /// Items put and not yet acknowledged.
    fn len(&self) -> u64 {
        self.items.len() as u64 + self.in_flight
    }

    /// `count` items were delivered to `peer`.
    fn hold(&mut self, peer: &Peer, count: u64) {
        self.in_flight += count;
        match self.holding.iter_mut().find(|held| held.peer == peer.id) {
            Some(held) => held.count += count,
            None => self.holding.push(Held {
                peer: peer.id,
                pid: peer.pid,
                count,
            }),
        }
    }

    /// `count` items delivered to peer `holder` are no longer in flight.
    fn let_go(&mut self, holder: u64, count: u64) {
        self.in_flight -= count;
        if let Some(at) = self.holding.iter().position(|held| held.peer == holder) {
            self.holding[at].count = self.holding[at].count.saturating_sub(count);
            if self.holding[at].count == 0 {
                self.holding.swap_remove(at);
            }
        }
    }

    /// Closed, and nothing left that could still reach a getter: no item waiting, none in
    /// flight (it would come back if its getter died), and no slot reserved for a producer
    /// (an item put on it may still be on its way: its `put` has returned).
    /// A removed queue is drained at once: its items are gone.
    fn drained(&self) -> bool {
        self.removed
            || (self.closed && self.items.is_empty() && self.in_flight == 0 && self.reserved == 0)
    }
}

/// Why the item at the head cannot go to `peer`: it is longer than the frames that client
/// accepts (it announced a smaller limit than the broker's). The item stays in the queue.
fn too_large_for(items: &VecDeque<Item>, peer: &Peer) -> Option<String> {
    let len = items.front()?.len();
    let max = peer.max_frame_len();
    (len + ITEM_OVERHEAD > max).then(|| {
        format!(
            "an item of {len} bytes does not fit in a frame of {max} bytes, the most this \
             client accepts; it stays in the queue"
        )
    })
}

/// Takes up to `max` items (at least one) that fit together in one frame.
fn take(items: &mut VecDeque<Item>, max: usize, max_frame_len: usize) -> Vec<Item> {
    let budget = max_frame_len.saturating_sub(ITEM_OVERHEAD);
    let mut used = 0;
    let mut n = 0;
    for item in items.iter().take(max.max(1)) {
        // Each item also costs its length in the reply's header, at most 5 bytes.
        let cost = item.len() + 5;
        if n > 0 && used + cost > budget {
            break;
        }
        used += cost;
        n += 1;
    }
    items.drain(..n).collect()
}

fn return_to_front(items: &mut VecDeque<Item>, returned: Vec<Item>) {
    for item in returned.into_iter().rev() {
        items.push_front(item);
    }
}
