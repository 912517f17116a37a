//! One connection's protocol state, with no I/O: what both clients drive.
//!
//! [`Core`] holds everything one connection to a broker knows — request ids and the table
//! of waiters, each handle's credits, prefetched items and fetch windows, the
//! acknowledgements that taking items calls for, withdrawn requests, and why the
//! connection died — and nothing else: no socket, lock, thread, task or clock (time comes
//! in as an argument). It takes the caller's operations and the broker's bytes, and yields
//! the bytes to write ([`Core::take_transmit`]) and the waiters to wake
//! ([`Core::take_woken`]). The blocking client drives it from the threads that wait
//! (`client.rs`), the tokio client from a reader task and its futures (`tokio/mod.rs`);
//! what an operation sends and how its answer settles is decided here, once.
//!
//! A waiter is whatever the driver wakes: a condition variable, a task's `Waker`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipcq_proto::{BrokerMsg, ClientMsg, Op, Reply, Wait};

use crate::common::{average_len, credit_request, lens, release_msg, Credits, Dead, Grant};
use crate::inbox::{Delivered, Inbox};
use crate::ops::Purpose;
use crate::{Error, Result};

/// What becomes of a delivery handed out without an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Its work is done: it leaves the queue, and counts as a `task_done`.
    Finish,
    /// Back to the head of its queue.
    Return,
    /// To its queue's dead-letter queue (back to the head if it has none).
    DeadLetter,
}

/// Most acknowledgements of deliveries that wait for the next write.
pub(crate) const DEFERRED_ACKS: usize = 64;

/// What a driver wakes when an answer or items come.
pub(crate) trait Wakeup: Clone {
    /// Whether `self` and `other` wake the same waiter (so that registering again is not
    /// needed).
    fn same(&self, other: &Self) -> bool;
}

/// A position in the bytes to write: an operation's bytes are on their way once the
/// driver has written up to its mark.
pub(crate) type Mark = u64;

/// One connection's protocol state (see the [module documentation](self)).
pub(crate) struct Core<W> {
    /// The broker's frame limit, from its handshake.
    max_frame_len: usize,
    next_id: u64,
    waiters: HashMap<u64, Waiter<W>>,
    handles: HashMap<u32, Handle<W>>,
    /// Encoded frames not yet taken by the driver.
    transmit: Vec<u8>,
    /// Bytes ever queued to `transmit`: the mark of the last one.
    queued: Mark,
    /// Waiters to wake, for the driver.
    woken: Vec<W>,
    /// Set once the connection is unusable; every operation fails with it from then on.
    dead: Option<Dead>,
    /// A write failed: what was queued is lost, and so is every delivery not yet
    /// acknowledged. The broker's reason, if it gave one, is still to be read.
    broken: bool,
    /// Acknowledgements of deliveries queued in `transmit` and not yet taken: they wait
    /// for the next write (see [`Core::settle_delivery`]).
    deferred: usize,
}

/// A request waiting for its answer.
struct Waiter<W> {
    handle: u32,
    purpose: Purpose,
    /// Whether the request may wait in the broker, and so can be withdrawn.
    parks: bool,
    answer: Option<(Reply, Bytes)>,
    waker: Option<W>,
    /// Nobody will collect the answer: it is settled when it comes.
    abandoned: bool,
}

/// What one connection knows of one queue (or pipe end), shared by every handle on it.
struct Handle<W> {
    /// Live handles (of either client type) on it.
    users: usize,
    /// Slots (and bytes) the broker reserved for this connection's puts.
    credits: Credits,
    /// Delivered items not yet handed out, and the application's pace.
    inbox: Inbox,
    /// The prefetch in flight.
    prefetch: Option<u64>,
    /// The credit request in flight.
    reserving: Option<u64>,
    /// Waiters woken when items arrive or a request ahead of need is answered.
    watchers: Vec<W>,
    /// The last handle was dropped while answers were on their way: it closes when they
    /// have come.
    closing: bool,
    /// The lease of the deliveries handed out (`set_lease`).
    lease: Option<Duration>,
}

/// What a put does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PutStep {
    /// This many items went on credits: they are put once written up to the mark.
    Sent(usize, Mark),
    /// Credits asked for earlier are on their way: wait for request `id`, then try again.
    Await(u64),
    /// No credit: request `id` waits for room; once it is answered, try again.
    Room(u64),
}

/// What a get does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GetStep {
    /// Deliveries for the caller: theirs once written up to the mark (for a plain get,
    /// their acknowledgement); no mark when nothing needs writing.
    Items(Vec<Delivered>, Option<Mark>),
    /// Nothing here yet: wait on request `id` (see [`Core::poll_fetch`]).
    Wait(Fetch),
}

/// A request a getter waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// A prefetch in flight: it is answered at once, and its items come first.
    Prefetch(u64),
    /// The getter's own request: withdraw it ([`Core::abandon`]) if the getter leaves.
    Own(u64),
}

impl Fetch {
    pub(crate) fn id(self) -> u64 {
        match self {
            Fetch::Prefetch(id) | Fetch::Own(id) => id,
        }
    }
}

/// How a wait on a handle ended.
#[derive(Debug)]
pub(crate) enum Progress {
    /// The request's own answer.
    Answer(Reply),
    /// Items arrived in the inbox, or the request was settled into the handle.
    Moved,
}

impl<W: Wakeup> Core<W> {
    /// A connection whose broker takes frames of up to `max_frame_len` bytes.
    pub(crate) fn new(max_frame_len: usize) -> Self {
        Core {
            max_frame_len,
            next_id: 1,
            waiters: HashMap::new(),
            handles: HashMap::new(),
            transmit: Vec::new(),
            queued: 0,
            woken: Vec::new(),
            dead: None,
            broken: false,
            deferred: 0,
        }
    }

    /// The bytes to write, in order; the driver writes them all before it reports them
    /// written.
    pub(crate) fn take_transmit(&mut self) -> Vec<u8> {
        self.deferred = 0;
        std::mem::take(&mut self.transmit)
    }

    /// The mark of everything queued so far.
    pub(crate) fn queued(&self) -> Mark {
        self.queued
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// The waiters to wake now.
    pub(crate) fn take_woken(&mut self) -> Vec<W> {
        std::mem::take(&mut self.woken)
    }

    /// Whether there are waiters to wake.
    pub(crate) fn has_woken(&self) -> bool {
        !self.woken.is_empty()
    }

    /// The error every operation fails with once the connection is dead or broken.
    pub(crate) fn failure(&self) -> Option<Error> {
        match &self.dead {
            Some(dead) => Some(dead.error()),
            None if self.broken => Some(Error::BrokerGone("the connection is broken".into())),
            None => None,
        }
    }

    /// Whether the connection is dead.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    fn check_alive(&self) -> Result<()> {
        match &self.dead {
            Some(dead) => Err(dead.error()),
            None => Ok(()),
        }
    }

    // ---- requests ----

    /// Registers request `op` (with `items` as its tail) and queues it; returns its id.
    /// Its answer is collected with [`Core::poll`] (or settled, per `purpose`, if the caller
    /// [abandons](Core::abandon) it).
    ///
    /// # Errors
    ///
    /// The connection's error when it is dead; [`Error::TooLarge`] when the request does
    /// not fit in a frame (nothing is queued).
    pub(crate) fn request(
        &mut self,
        op: Op,
        items: &[&[u8]],
        purpose: Purpose,
        handle: u32,
        waker: Option<W>,
    ) -> Result<u64> {
        self.check_alive()?;
        let id = self.next_id;
        let parks = parks(&op);
        self.encode(&ClientMsg::Request { id, op }, items)?;
        self.next_id += 1;
        self.waiters.insert(
            id,
            Waiter {
                handle,
                purpose,
                parks,
                answer: None,
                waker,
                abandoned: false,
            },
        );
        Ok(id)
    }

    fn encode(&mut self, msg: &ClientMsg, items: &[&[u8]]) -> Result<()> {
        let tail_len: usize = items.iter().map(|item| item.len()).sum();
        let start = self.transmit.len();
        ipcq_proto::encode(msg, tail_len, self.max_frame_len, &mut self.transmit).map_err(
            |err| match err {
                ipcq_proto::Error::FrameTooLarge { len, max } => Error::TooLarge { len, max },
                other => Error::Protocol(other.to_string()),
            },
        )?;
        for item in items {
            self.transmit.extend_from_slice(item);
        }
        self.queued += (self.transmit.len() - start) as u64;
        Ok(())
    }

    /// The answer to request `id`, if it came (the request is then forgotten); otherwise
    /// `waker` is woken when it comes. An error answer is an `Err`.
    pub(crate) fn poll(&mut self, id: u64, waker: Option<&W>) -> Option<Result<(Reply, Bytes)>> {
        let Some(waiter) = self.waiters.get_mut(&id) else {
            // Forgotten only when answered or when the connection died.
            return Some(Err(self.failure().unwrap_or_else(lost)));
        };
        if waiter.answer.is_some() {
            let (reply, tail) = self.waiters.remove(&id)?.answer?;
            return Some(answer(reply).map(|reply| (reply, tail)));
        }
        if let Some(dead) = &self.dead {
            let err = dead.error();
            self.waiters.remove(&id);
            return Some(Err(err));
        }
        register(&mut waiter.waker, waker);
        None
    }

    /// The caller no longer waits for request `id`: an answer that came is settled now,
    /// one still to come when it comes, and a request that may be waiting in the broker is
    /// withdrawn (the broker then answers `Cancelled`, or its answer was on the way; either
    /// way exactly one answer comes).
    pub(crate) fn abandon(&mut self, id: u64) {
        let Some(waiter) = self.waiters.get_mut(&id) else {
            return;
        };
        if waiter.answer.is_some() || self.dead.is_some() {
            let waiter = self.waiters.remove(&id).expect("the waiter was just found");
            if let Some((reply, _)) = &waiter.answer {
                self.settle(&waiter, reply);
            }
            return;
        }
        waiter.abandoned = true;
        waiter.waker = None;
        if waiter.parks {
            let handle = waiter.handle;
            // A few bytes: it always fits.
            let _ = self.encode(&ClientMsg::Cancel { handle, id }, &[]);
        }
    }

    /// Settles an answer nobody collects: a permit granted to nobody is released. (Items
    /// and credits were settled into the handle when they came.)
    fn settle(&mut self, waiter: &Waiter<W>, reply: &Reply) {
        if waiter.purpose == Purpose::Acquire && matches!(reply, Reply::Acquired { .. }) {
            let op = Op::ReleasePermit {
                handle: waiter.handle,
            };
            if let Ok(id) = self.request(op, &[], Purpose::Other, waiter.handle, None) {
                if let Some(waiter) = self.waiters.get_mut(&id) {
                    waiter.abandoned = true;
                }
            }
        }
    }

    // ---- handles ----

    /// A handle on object `handle` was made (another user of its shared state).
    pub(crate) fn open_handle(&mut self, handle: u32) {
        let state = self.handles.entry(handle).or_insert_with(|| Handle {
            users: 0,
            credits: Credits::default(),
            inbox: Inbox::new(),
            prefetch: None,
            reserving: None,
            watchers: Vec::new(),
            closing: false,
            lease: None,
        });
        state.users += 1;
        state.closing = false;
    }

    /// A handle on object `handle` was dropped. With the last one, fetched items go back to
    /// the head of the queue in order, and unused credits back to the broker. If answers
    /// are still on their way (requests made ahead of need, withdrawn gets: none waits in
    /// the broker), that happens when they have come, so that what they bring goes back in
    /// order too; returns whether it is so. A driver whose reading is not continuous then
    /// waits for it ([`Core::poll_closed`]) rather than leave items held until it next reads.
    pub(crate) fn close_handle(&mut self, handle: u32) -> bool {
        let Some(state) = self.handles.get_mut(&handle) else {
            return false;
        };
        state.users -= 1;
        if state.users > 0 {
            return false;
        }
        if self.dead.is_none() && self.waiters.values().any(|w| w.handle == handle) {
            state.closing = true;
            return true;
        }
        self.finish_close(handle);
        false
    }

    /// Whether `handle`'s close has completed (or it was opened again); otherwise `waker`
    /// is woken when it does.
    pub(crate) fn poll_closed(&mut self, handle: u32, waker: Option<&W>) -> Option<Result<()>> {
        if let Some(err) = self.failure() {
            return Some(Err(err));
        }
        let Some(state) = self.handles.get_mut(&handle).filter(|state| state.closing) else {
            return Some(Ok(()));
        };
        if let Some(waker) = waker {
            if !state.watchers.iter().any(|w| w.same(waker)) {
                state.watchers.push(waker.clone());
            }
        }
        None
    }

    /// Closes `handle` if it is closing and no answer is due any more.
    fn close_if_done(&mut self, handle: u32) {
        let closing = self.handles.get(&handle).is_some_and(|state| state.closing);
        if closing && !self.waiters.values().any(|w| w.handle == handle) {
            self.finish_close(handle);
        }
    }

    fn finish_close(&mut self, handle: u32) {
        let Some(mut state) = self.handles.remove(&handle) else {
            return;
        };
        self.woken.append(&mut state.watchers);
        if self.dead.is_some() {
            return;
        }
        for msg in state.inbox.give_back() {
            let _ = self.encode(&msg, &[]);
        }
        if let Some(msg) = release_msg(handle, state.credits.take_all()) {
            let _ = self.encode(&msg, &[]);
        }
    }

    fn handle_mut(&mut self, handle: u32) -> Result<&mut Handle<W>> {
        self.check_alive()?;
        self.handles
            .get_mut(&handle)
            .ok_or_else(|| Error::Invalid(format!("no open handle {handle}")))
    }

    /// Sets how many items a get may fetch at once on `handle`.
    pub(crate) fn set_prefetch(&mut self, handle: u32, items: usize) {
        if let Some(state) = self.handles.get_mut(&handle) {
            state.inbox.set_prefetch(items);
        }
    }

    /// How many items a get may fetch at once on `handle`.
    pub(crate) fn prefetch(&self, handle: u32) -> usize {
        self.handles
            .get(&handle)
            .map_or(crate::DEFAULT_PREFETCH, |state| state.inbox.prefetch())
    }

    /// How many items to fetch now on `handle`, at the application's recent pace (at
    /// least 1).
    pub(crate) fn window(&self, handle: u32) -> usize {
        self.handles
            .get(&handle)
            .map_or(1, |state| state.inbox.window())
    }

    /// Whether items wait in `handle`'s inbox.
    pub(crate) fn has_items(&self, handle: u32) -> bool {
        self.handles
            .get(&handle)
            .is_some_and(|state| !state.inbox.is_empty())
    }

    /// Gives every unused credit of `handle` back to the broker.
    pub(crate) fn release_credits(&mut self, handle: u32) {
        let Ok(state) = self.handle_mut(handle) else {
            return;
        };
        if let Some(msg) = release_msg(handle, state.credits.take_all()) {
            let _ = self.encode(&msg, &[]);
        }
    }

    // ---- puts ----

    /// The next step of putting `items` (at least one, in order, fitting one frame) on
    /// `handle`: as many as there are credits go now, with a request for more if few are
    /// left; with none, the caller waits for the credits on their way or for room, as
    /// `wait` says (no credits asked for beyond the slot when it must not wait).
    ///
    /// # Errors
    ///
    /// The connection's error; [`Error::TooLarge`] for items that do not fit in a frame.
    pub(crate) fn put_step(&mut self, handle: u32, items: &[&[u8]], wait: Wait) -> Result<PutStep> {
        let state = self.handle_mut(handle)?;
        let credited = state.credits.take(items.iter().map(|item| item.len()));
        if credited > 0 {
            let on_credit = &items[..credited];
            if let [item] = on_credit {
                self.encode(&ClientMsg::Send { handle }, &[item])?;
            } else {
                let msg = ClientMsg::SendMany {
                    handle,
                    lens: lens(on_credit),
                };
                self.encode(&msg, on_credit)?;
            }
            let mark = self.queued;
            self.reserve_ahead(handle, average_len(on_credit));
            return Ok(PutStep::Sent(credited, mark));
        }
        if let Some(id) = state.reserving {
            return Ok(PutStep::Await(id));
        }
        // Credits left were granted for smaller items: they go back, or the slots they hold
        // could be the room this put waits for.
        self.release_credits(handle);
        let credits = if wait == Wait::NoWait {
            0
        } else {
            credit_request(average_len(items))
        };
        let op = Op::WaitRoom {
            handle,
            len: u32::try_from(items[0].len()).unwrap_or(u32::MAX),
            wait,
            credits,
        };
        self.request(op, &[], Purpose::Room, handle, None)
            .map(PutStep::Room)
    }

    /// After spending credits: if few are left, asks for more, so that the answer is back
    /// before they run out.
    fn reserve_ahead(&mut self, handle: u32, item_len: usize) {
        let want = credit_request(item_len);
        let Some(state) = self.handles.get(&handle) else {
            return;
        };
        if state.reserving.is_some() || state.credits.count() >= u64::from(want / 2) {
            return;
        }
        let op = Op::Reserve {
            handle,
            credits: want,
            len: u32::try_from(item_len).unwrap_or(u32::MAX),
        };
        if let Ok(id) = self.request(op, &[], Purpose::Reserve, handle, None) {
            if let Some(state) = self.handles.get_mut(&handle) {
                state.reserving = Some(id);
            }
        }
    }

    // ---- gets ----

    /// The next step of taking up to `max` items from `handle` at `now`: items fetched
    /// already (with `ack`, acknowledged in the same write; without, they stay on this
    /// connection's account until [`settled`](Core::settle_delivery)), with a prefetch if the inbox
    /// runs low; or a request to wait on: the prefetch in flight, else a fetch of up to the
    /// window that waits as `wait` says.
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub(crate) fn get_step(
        &mut self,
        handle: u32,
        max: usize,
        wait: Wait,
        now: Instant,
        ack: bool,
    ) -> Result<GetStep> {
        if let Some((items, mark)) = self.take_items(handle, max, now, ack)? {
            return Ok(GetStep::Items(items, mark));
        }
        let window = self.handle_mut(handle)?.inbox.window();
        self.fetch(handle, max.max(window), wait).map(GetStep::Wait)
    }

    /// Takes up to `max` fetched items, with the acknowledgements that make them the
    /// caller's, and asks for more ahead of need when the inbox runs low.
    fn take_items(
        &mut self,
        handle: u32,
        max: usize,
        now: Instant,
        ack: bool,
    ) -> Result<Option<(Vec<Delivered>, Option<Mark>)>> {
        let before = self.queued;
        let state = self.handle_mut(handle)?;
        let Some(taken) = state.inbox.take(max, now) else {
            return Ok(None);
        };
        let ahead = taken.fetch_ahead().filter(|_| state.prefetch.is_none());
        if ack {
            for ack in &taken.acks {
                self.encode(ack, &[])?;
            }
        }
        let mark = self.queued;
        if let Some(n) = ahead {
            // It takes only what the queue holds now (it never waits), so it never captures
            // items that arrive later, while the application may not be asking.
            let op = Op::GetMany {
                handle,
                max: u32::try_from(n).unwrap_or(u32::MAX),
                wait: Wait::NoWait,
            };
            if let Ok(id) = self.request(op, &[], Purpose::Prefetch, handle, None) {
                if let Some(state) = self.handles.get_mut(&handle) {
                    state.prefetch = Some(id);
                }
            }
        }
        Ok(Some((
            taken.delivered,
            (self.queued > before).then_some(mark),
        )))
    }

    /// Leases delivery `tag` for `lease` from now (or extends its lease); returns the mark
    /// to write up to.
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub(crate) fn lease_delivery(&mut self, tag: u64, lease: Duration) -> Result<Mark> {
        self.check_alive()?;
        let millis = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let msg = ClientMsg::Lease {
            tag,
            count: 1,
            millis,
        };
        self.encode(&msg, &[])?;
        Ok(self.queued)
    }

    /// Sets the lease of the deliveries `handle` hands out (`None`: no lease).
    pub(crate) fn set_lease(&mut self, handle: u32, lease: Option<Duration>) {
        if let Some(state) = self.handles.get_mut(&handle) {
            state.lease = lease;
        }
    }

    /// The lease of the deliveries `handle` hands out.
    pub(crate) fn lease(&self, handle: u32) -> Option<Duration> {
        self.handles.get(&handle).and_then(|state| state.lease)
    }

    /// Settles delivery `tag` of `handle`, handed out without an acknowledgement, as `how`
    /// says. Returns the mark to write up to, or `None` when the
    /// acknowledgement may wait for the next write: while more items are fetched for this
    /// handle (the worker will be back for them, and its next request, or the write that
    /// empties the inbox, carries it), and at most [`DEFERRED_ACKS`] of them. A worker
    /// killed in between gets those items delivered again, as it would its fetched items.
    /// A rejection is written at once: another getter may be waiting for the item.
    ///
    /// # Errors
    ///
    /// The connection's error: the broker then gives the delivery back to its queue itself.
    pub(crate) fn settle_delivery(
        &mut self,
        handle: u32,
        tag: u64,
        how: Settlement,
    ) -> Result<Option<Mark>> {
        self.check_alive()?;
        let count = 1;
        let msg = match how {
            Settlement::Finish => ClientMsg::Finish { tag, count },
            Settlement::Return => ClientMsg::Return { tag, count },
            Settlement::DeadLetter => ClientMsg::DeadLetter { tag, count },
        };
        self.encode(&msg, &[])?;
        let more = self.has_items(handle);
        if how == Settlement::Finish && more && self.deferred < DEFERRED_ACKS {
            self.deferred += 1;
            return Ok(None);
        }
        Ok(Some(self.queued))
    }

    /// A request that brings items to `handle`'s inbox: the prefetch in flight if there is
    /// one, else a new fetch of up to `max` items that waits as `wait` says.
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub(crate) fn fetch(&mut self, handle: u32, max: usize, wait: Wait) -> Result<Fetch> {
        if let Some(id) = self.handle_mut(handle)?.prefetch {
            return Ok(Fetch::Prefetch(id));
        }
        let op = Op::GetMany {
            handle,
            max: u32::try_from(max).unwrap_or(u32::MAX),
            wait,
        };
        self.request(op, &[], Purpose::Get, handle, None)
            .map(Fetch::Own)
    }

    /// How a wait on `fetch` for `handle` stands: its answer (its items are in the inbox),
    /// or items that arrived otherwise (the getter then leaves, and
    /// [abandons](Core::abandon) its own request), or nothing yet (`waker` is woken when
    /// something comes).
    pub(crate) fn poll_fetch(
        &mut self,
        fetch: Fetch,
        handle: u32,
        waker: Option<&W>,
    ) -> Option<Result<Progress>> {
        if let Fetch::Own(id) = fetch {
            if let Some(answer) = self.poll_answered(id) {
                return Some(answer.map(Progress::Answer));
            }
            if let Some(waiter) = self.waiters.get_mut(&id) {
                register(&mut waiter.waker, waker);
            }
        } else if !self.waiters.contains_key(&fetch.id()) {
            return Some(Ok(Progress::Moved));
        }
        self.poll_handle(handle, waker)
    }

    /// Waits for request `id`, settled into `handle` (a credit request): `Moved` once it
    /// was, or once anything else happened on the handle.
    pub(crate) fn poll_settled(
        &mut self,
        id: u64,
        handle: u32,
        waker: Option<&W>,
    ) -> Option<Result<Progress>> {
        if !self.waiters.contains_key(&id) {
            return Some(match self.failure() {
                Some(err) => Err(err),
                None => Ok(Progress::Moved),
            });
        }
        if let Some(dead) = &self.dead {
            return Some(Err(dead.error()));
        }
        // Woken with the handle's watchers when the answer comes. (Not on items waiting
        // in the inbox, as a get is: a put waits for its credits whatever was fetched.)
        let state = self.handles.get_mut(&handle)?;
        if let Some(waker) = waker {
            if !state.watchers.iter().any(|w| w.same(waker)) {
                state.watchers.push(waker.clone());
            }
        }
        None
    }

    /// The answer to `id` if it came (the request is then forgotten).
    fn poll_answered(&mut self, id: u64) -> Option<Result<Reply>> {
        let waiter = self.waiters.get(&id)?;
        waiter.answer.as_ref()?;
        let (reply, _) = self.waiters.remove(&id)?.answer?;
        Some(answer(reply))
    }

    fn poll_handle(&mut self, handle: u32, waker: Option<&W>) -> Option<Result<Progress>> {
        if let Some(dead) = &self.dead {
            return Some(Err(dead.error()));
        }
        let state = self.handles.get_mut(&handle)?;
        if !state.inbox.is_empty() {
            return Some(Ok(Progress::Moved));
        }
        if let Some(waker) = waker {
            if !state.watchers.iter().any(|w| w.same(waker)) {
                state.watchers.push(waker.clone());
            }
        }
        None
    }

    // ---- what the broker sends ----

    /// Decodes and handles every whole message in `buf`; returns how many there were. A
    /// frame that does not decode ends the connection.
    pub(crate) fn handle_bytes(&mut self, buf: &mut BytesMut) -> usize {
        let max = self.max_frame_len + ipcq_proto::REPLY_SLACK;
        let mut handled = 0;
        while self.dead.is_none() {
            match ipcq_proto::decode_frame(buf, max) {
                Ok(Some(frame)) => match ipcq_proto::decode::<BrokerMsg>(frame) {
                    Ok((msg, tail)) => {
                        self.handle_msg(msg, tail);
                        handled += 1;
                    }
                    Err(err) => self.die(Dead::Protocol(err.to_string())),
                },
                Ok(None) => break,
                Err(err) => self.die(Dead::Protocol(err.to_string())),
            }
        }
        handled
    }

    /// Handles one message from the broker.
    pub(crate) fn handle_msg(&mut self, msg: BrokerMsg, tail: Bytes) {
        match msg {
            BrokerMsg::Reply { id, body } => self.handle_reply(id, body, tail),
            BrokerMsg::Fatal(err) => self.die(Dead::Refused(err)),
            BrokerMsg::Revoke { handle } => self.release_credits(handle),
        }
    }

    fn handle_reply(&mut self, id: u64, body: Reply, mut tail: Bytes) {
        let Some(waiter) = self.waiters.get(&id) else {
            // Requests are never forgotten before their answer (or the connection's end):
            // this cannot happen. If it did, items it carried stay unacknowledged and return
            // to their queue when the connection closes.
            return;
        };
        let (handle, purpose) = (waiter.handle, waiter.purpose);
        let live = self.handles.contains_key(&handle);
        // Items join the handle's inbox in the order they arrive, whoever waits for them.
        if let (
            Purpose::Get | Purpose::Prefetch,
            Reply::Items {
                tag,
                lens,
                ready,
                earlier,
            },
        ) = (purpose, &body)
        {
            let (tag, ready) = (*tag, *ready);
            match ipcq_proto::split_items(std::mem::take(&mut tail), lens) {
                Ok(items) if live => {
                    let state = self.handles.get_mut(&handle).expect("live");
                    if !items.is_empty() {
                        state.inbox.receive(tag, items, earlier, Some(ready));
                        self.woken.append(&mut state.watchers);
                    }
                }
                Ok(items) => {
                    let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
                    if count > 0 {
                        let _ = self.encode(&ClientMsg::Return { tag, count }, &[]);
                    }
                }
                Err(err) => {
                    self.die(Dead::Protocol(err.to_string()));
                    return;
                }
            }
        }
        // Credits are the handle's, whoever waits for them.
        if matches!(purpose, Purpose::Room | Purpose::Reserve) {
            let grant = Grant::of(&body);
            if live {
                self.handles
                    .get_mut(&handle)
                    .expect("live")
                    .credits
                    .add(grant);
            } else if let Some(msg) = release_msg(handle, grant) {
                let _ = self.encode(&msg, &[]);
            }
        }
        if matches!(purpose, Purpose::Prefetch | Purpose::Reserve) {
            let waiter = self.waiters.remove(&id).expect("the waiter was just found");
            self.woken.extend(waiter.waker);
            if let Some(state) = self.handles.get_mut(&handle).filter(|_| live) {
                if purpose == Purpose::Prefetch {
                    state.prefetch = None;
                } else {
                    state.reserving = None;
                }
                self.woken.append(&mut state.watchers);
            }
            self.close_if_done(handle);
            return;
        }
        let waiter = self
            .waiters
            .get_mut(&id)
            .expect("the waiter was just found");
        if waiter.abandoned {
            let waiter = self.waiters.remove(&id).expect("the waiter was just found");
            self.settle(&waiter, &body);
            self.close_if_done(handle);
            return;
        }
        if let Some(waker) = waiter.waker.take() {
            self.woken.push(waker);
        }
        waiter.answer = Some((body, tail));
    }

    /// The connection is unusable: every waiter is woken and fails with `dead`'s error
    /// (answers that came before stay theirs); fetched items and credits are gone with it
    /// (the broker gives the items back to their queues), and nothing more is written.
    pub(crate) fn die(&mut self, dead: Dead) {
        if self.dead.is_some() {
            return;
        }
        self.dead = Some(dead);
        self.transmit.clear();
        self.waiters.retain(|_, waiter| !waiter.abandoned);
        for waiter in self.waiters.values_mut() {
            self.woken.extend(waiter.waker.take());
        }
        for state in self.handles.values_mut() {
            drop(state.inbox.give_back());
            state.credits.take_all();
            state.prefetch = None;
            state.reserving = None;
            self.woken.append(&mut state.watchers);
        }
    }

    /// A write failed: what was queued is lost. Deliveries can no longer be acknowledged,
    /// so fetched items are dropped rather than handed out (the broker gives them back to
    /// their queues when it sees the connection end, and they would be delivered twice);
    /// credits go with them. Requests still wait: the broker's reason, or the end of the
    /// connection, is read next.
    pub(crate) fn writes_failed(&mut self) {
        self.broken = true;
        self.transmit.clear();
        for state in self.handles.values_mut() {
            drop(state.inbox.give_back());
            state.credits.take_all();
            self.woken.append(&mut state.watchers);
        }
    }

    /// Wakes every waiter that has no answer yet (so that one of them takes over the
    /// reading).
    pub(crate) fn wake_waiting(&mut self) {
        for waiter in self.waiters.values() {
            if waiter.answer.is_none() {
                self.woken.extend(waiter.waker.iter().cloned());
            }
        }
        for state in self.handles.values() {
            self.woken.extend(state.watchers.iter().cloned());
        }
    }
}

/// Registers `waker` in `slot` unless it is there already.
fn register<W: Wakeup>(slot: &mut Option<W>, waker: Option<&W>) {
    if let Some(waker) = waker {
        if !slot.as_ref().is_some_and(|w| w.same(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// The caller's reading of an answer: a broker error is an `Err`.
fn answer(reply: Reply) -> Result<Reply> {
    match reply {
        Reply::Error(err) => Err(Error::from_reply(err)),
        reply => Ok(reply),
    }
}

fn lost() -> Error {
    Error::BrokerGone("the request was lost".into())
}

/// Whether `op` may wait in the broker (and so can be withdrawn).
fn parks(op: &Op) -> bool {
    let wait = match op {
        Op::Put { wait, .. }
        | Op::Get { wait, .. }
        | Op::GetMany { wait, .. }
        | Op::Acquire { wait, .. }
        | Op::WaitEvent { wait, .. }
        | Op::WaitBarrier { wait, .. }
        | Op::Join { wait, .. }
        | Op::WaitRoom { wait, .. } => wait,
        _ => return false,
    };
    *wait != Wait::NoWait
}

#[cfg(test)]
mod tests;
