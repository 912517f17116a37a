//! Events: a flag that waiters wait to see set, as Python's `multiprocessing.Event`.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ipcq_proto::{ErrorCode, EventStats, Reply, Wait};

use super::Parked;
use crate::peer::Peer;

#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) name: String,
    this: Weak<Event>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    set: bool,
    waiters: Parked,
}

impl Event {
    pub(crate) fn new(name: String, max_waiters: usize) -> Arc<Self> {
        Arc::new_cyclic(|this| Event {
            name,
            this: this.clone(),
            state: Mutex::new(State {
                set: false,
                waiters: Parked::new(max_waiters),
            }),
        })
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        let mut state = self.lock_state();
        state.set = true;
        for waiter in state.waiters.take_all() {
            waiter.peer.reply(waiter.request, Reply::Flag(true));
        }
    }

    pub(crate) fn clear(&self) {
        self.lock_state().set = false;
    }

    /// Answers `Flag(true)` once the flag is set, or `Flag(false)` when the wait runs out.
    pub(crate) fn wait(&self, peer: &Arc<Peer>, request: u64, wait: Wait) {
        let mut state = self.lock_state();
        if state.set {
            drop(state);
            peer.reply(request, Reply::Flag(true));
            return;
        }
        let this = self.this.clone();
        let parked = state.waiters.park(peer, request, wait, move |id| {
            if let Some(this) = this.upgrade() {
                this.expire(id);
            }
        });
        if !parked {
            drop(state);
            peer.reply(request, Reply::Flag(false));
        }
    }

    /// The client no longer waits for request `request`.
    pub(crate) fn cancel(&self, peer: u64, request: u64) {
        self.lock_state().waiters.cancel(peer, request);
    }

    pub(crate) fn forget(&self, peer: u64) {
        self.lock_state().waiters.forget(peer);
    }

    /// Broker shutdown: every waiter learns it at once.
    pub(crate) fn shut_down(&self) {
        self.fail_waiters(
            ErrorCode::ShuttingDown,
            "the broker is shutting down".into(),
        );
    }

    /// `rm`: every waiter gets `Closed`.
    pub(crate) fn remove(&self) {
        self.fail_waiters(ErrorCode::Closed, format!("'{}' was removed", self.name));
    }

    fn fail_waiters(&self, code: ErrorCode, message: String) {
        self.lock_state().waiters.fail_all(code, &message);
    }

    pub(crate) fn stats(&self) -> EventStats {
        let state = self.lock_state();
        EventStats {
            set: state.set,
            waiters: state.waiters.len() as u64,
        }
    }

    fn expire(&self, id: u64) {
        let waiter = self.lock_state().waiters.expired(id);
        if let Some(waiter) = waiter {
            waiter.peer.reply(waiter.request, Reply::Flag(false));
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Plain assignments and moves: a poisoned lock is still coherent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
