//! Barriers, as Python's `multiprocessing.Barrier`: the parties wait until all have come,
//! then all go on together. A party that gives up (its wait runs out) or dies while waiting
//! breaks the barrier: everyone waiting gets `Broken` (Python's `BrokenBarrierError`), and
//! so does every later wait, until a reset.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ipcq_proto::{BarrierStats, ErrorCode, Reply, Wait};

use super::Parked;
use crate::peer::Peer;

#[derive(Debug)]
pub(crate) struct Barrier {
    pub(crate) name: String,
    pub(crate) parties: u64,
    this: Weak<Barrier>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    waiting: Parked,
    broken: bool,
}

impl Barrier {
    pub(crate) fn new(name: String, parties: u64, max_waiters: usize) -> Arc<Self> {
        Arc::new_cyclic(|this| Barrier {
            name,
            parties,
            this: this.clone(),
            state: Mutex::new(State {
                waiting: Parked::new(max_waiters),
                broken: false,
            }),
        })
    }

    pub(crate) fn wait(&self, peer: &Arc<Peer>, request: u64, wait: Wait) {
        let mut state = self.lock_state();
        if state.broken {
            drop(state);
            peer.reply_error(request, ErrorCode::Broken, self.broken_message());
            return;
        }
        if state.waiting.len() as u64 + 1 == self.parties {
            let index = state.waiting.len() as u64;
            for (place, waiter) in state.waiting.take_all().into_iter().enumerate() {
                waiter.peer.reply(
                    waiter.request,
                    Reply::Passed {
                        index: place as u64,
                    },
                );
            }
            drop(state);
            peer.reply(request, Reply::Passed { index });
            return;
        }
        let this = self.this.clone();
        let parked = state.waiting.park(peer, request, wait, move |id| {
            if let Some(this) = this.upgrade() {
                this.expire(id);
            }
        });
        if !parked {
            // Not waiting at all is giving up at once: it breaks the barrier, as in Python.
            self.break_barrier(&mut state);
            drop(state);
            peer.reply_error(request, ErrorCode::Broken, self.broken_message());
        }
    }

    /// Waiting parties get `Broken`; the next waits start afresh.
    pub(crate) fn reset(&self) {
        let mut state = self.lock_state();
        state
            .waiting
            .fail_all(ErrorCode::Broken, &self.broken_message());
        state.broken = false;
    }

    /// The client no longer waits for request `request`: that party leaves without
    /// breaking the barrier (it did not give up on the others; it was never counted), as
    /// a cancelled `asyncio.Barrier.wait`.
    pub(crate) fn cancel(&self, peer: u64, request: u64) {
        self.lock_state().waiting.cancel(peer, request);
    }

    /// A connection went away: if it was waiting, the barrier breaks.
    pub(crate) fn forget(&self, peer: u64) {
        let mut state = self.lock_state();
        if state.waiting.forget(peer) {
            self.break_barrier(&mut state);
            tracing::info!(name = %self.name, "a party went away while waiting: barrier broken");
        }
    }

    pub(crate) fn shut_down(&self) {
        self.lock_state()
            .waiting
            .fail_all(ErrorCode::ShuttingDown, "the broker is shutting down");
    }

    /// `rm`: waiting parties get `Broken`.
    pub(crate) fn remove(&self) {
        self.break_barrier(&mut self.lock_state());
    }

    pub(crate) fn stats(&self) -> BarrierStats {
        let state = self.lock_state();
        BarrierStats {
            parties: self.parties,
            waiting: state.waiting.len() as u64,
            broken: state.broken,
        }
    }

    fn expire(&self, id: u64) {
        let mut state = self.lock_state();
        if let Some(waiter) = state.waiting.expired(id) {
            self.break_barrier(&mut state);
            drop(state);
            waiter
                .peer
                .reply_error(waiter.request, ErrorCode::Broken, self.broken_message());
        }
    }

    fn break_barrier(&self, state: &mut State) {
        state.broken = true;
        state
            .waiting
            .fail_all(ErrorCode::Broken, &self.broken_message());
    }

    fn broken_message(&self) -> String {
        format!(
            "barrier '{}' is broken: a party gave up or went away while waiting",
            self.name
        )
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Plain assignments and moves: a poisoned lock is still coherent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
