//! Events: a flag that waiters wait to see set, as Python's `multiprocessing.Event`.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ipcq_proto::{ErrorCode, EventStats, Reply, Wait};
use tokio::task::AbortHandle;

use super::{abort, deadline, timer, Deadline};
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
    waiters: Vec<Waiter>,
    next_waiter: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    peer: Arc<Peer>,
    request: u64,
    timer: Option<AbortHandle>,
}

impl Event {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new_cyclic(|this| Event {
            name,
            this: this.clone(),
            state: Mutex::new(State::default()),
        })
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        let mut state = self.lock_state();
        state.set = true;
        for waiter in std::mem::take(&mut state.waiters) {
            abort(&waiter.timer);
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
        let at = match deadline(wait) {
            Deadline::Now => {
                drop(state);
                peer.reply(request, Reply::Flag(false));
                return;
            }
            Deadline::At(at) => Some(at),
            Deadline::Never => None,
        };
        state.next_waiter += 1;
        let id = state.next_waiter;
        let timer = at.map(|at| {
            let this = self.this.clone();
            timer(at, move || {
                if let Some(this) = this.upgrade() {
                    this.expire(id);
                }
            })
        });
        state.waiters.push(Waiter {
            id,
            peer: Arc::clone(peer),
            request,
            timer,
        });
    }

    pub(crate) fn forget(&self, peer: u64) {
        self.lock_state().waiters.retain(|waiter| {
            let keep = waiter.peer.id != peer;
            if !keep {
                abort(&waiter.timer);
            }
            keep
        });
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
        let waiters = std::mem::take(&mut self.lock_state().waiters);
        for waiter in waiters {
            abort(&waiter.timer);
            waiter
                .peer
                .reply_error(waiter.request, code, message.clone());
        }
    }

    pub(crate) fn stats(&self) -> EventStats {
        let state = self.lock_state();
        EventStats {
            set: state.set,
            waiters: state.waiters.len() as u64,
        }
    }

    fn expire(&self, id: u64) {
        let mut state = self.lock_state();
        if let Some(at) = state.waiters.iter().position(|waiter| waiter.id == id) {
            let waiter = state.waiters.swap_remove(at);
            drop(state);
            waiter.peer.reply(waiter.request, Reply::Flag(false));
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Plain assignments and moves: a poisoned lock is still coherent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
