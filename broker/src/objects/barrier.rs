//! Barriers, as Python's `multiprocessing.Barrier`: the parties wait until all have come,
//! then all go on together. A party that gives up (its wait runs out) or dies while waiting
//! breaks the barrier: everyone waiting gets `Broken` (Python's `BrokenBarrierError`), and
//! so does every later wait, until a reset.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ipcq_proto::{BarrierStats, ErrorCode, Reply, Wait};
use tokio::task::AbortHandle;

use super::{abort, deadline, timer, Deadline};
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
    waiting: Vec<Waiter>,
    broken: bool,
    next_waiter: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    peer: Arc<Peer>,
    request: u64,
    timer: Option<AbortHandle>,
}

impl Barrier {
    pub(crate) fn new(name: String, parties: u64) -> Arc<Self> {
        Arc::new_cyclic(|this| Barrier {
            name,
            parties,
            this: this.clone(),
            state: Mutex::new(State::default()),
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
            for (index, waiter) in std::mem::take(&mut state.waiting).into_iter().enumerate() {
                abort(&waiter.timer);
                waiter.peer.reply(
                    waiter.request,
                    Reply::Passed {
                        index: index as u64,
                    },
                );
            }
            drop(state);
            peer.reply(request, Reply::Passed { index });
            return;
        }
        let at = match deadline(wait) {
            // Not waiting at all is giving up at once: it breaks the barrier, as in Python.
            Deadline::Now => {
                state.broken = true;
                self.fail_waiting(&mut state);
                drop(state);
                peer.reply_error(request, ErrorCode::Broken, self.broken_message());
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
        state.waiting.push(Waiter {
            id,
            peer: Arc::clone(peer),
            request,
            timer,
        });
    }

    /// Waiting parties get `Broken`; the next waits start afresh.
    pub(crate) fn reset(&self) {
        let mut state = self.lock_state();
        self.fail_waiting(&mut state);
        state.broken = false;
    }

    /// A connection went away: if it was waiting, the barrier breaks.
    pub(crate) fn forget(&self, peer: u64) {
        let mut state = self.lock_state();
        if state.waiting.iter().any(|waiter| waiter.peer.id == peer) {
            state.waiting.retain(|waiter| {
                let keep = waiter.peer.id != peer;
                if !keep {
                    abort(&waiter.timer);
                }
                keep
            });
            state.broken = true;
            self.fail_waiting(&mut state);
            tracing::info!(name = %self.name, "a party went away while waiting: barrier broken");
        }
    }

    pub(crate) fn shut_down(&self) {
        for waiter in std::mem::take(&mut self.lock_state().waiting) {
            abort(&waiter.timer);
            waiter.peer.reply_error(
                waiter.request,
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
            );
        }
    }

    /// `rm`: waiting parties get `Broken`.
    pub(crate) fn remove(&self) {
        let mut state = self.lock_state();
        state.broken = true;
        self.fail_waiting(&mut state);
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
        if state.waiting.iter().any(|waiter| waiter.id == id) {
            state.broken = true;
            self.fail_waiting(&mut state);
        }
    }

    fn fail_waiting(&self, state: &mut State) {
        for waiter in std::mem::take(&mut state.waiting) {
            abort(&waiter.timer);
            waiter
                .peer
                .reply_error(waiter.request, ErrorCode::Broken, self.broken_message());
        }
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
