//! Locks and semaphores: permits held by connections.
//!
//! The broker knows which connection holds each permit, so a process that dies never keeps
//! one: its permits come back, and the next acquirer is told (`owner_died`), as a robust
//! mutex's `EOWNERDEAD`: what the dead holder guarded may be half-done. Only a holder can
//! release, which also bounds a semaphore: nobody can release it above its permits.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ipcq_proto::{ErrorCode, PermitStats, Reply, Wait};

use super::Parked;
use crate::peer::Peer;

#[derive(Debug)]
pub(crate) struct Permits {
    pub(crate) name: String,
    pub(crate) permits: u64,
    /// A lock, as opposed to a semaphore of one permit: only a name in messages.
    lock: bool,
    this: Weak<Permits>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: u64,
    /// Connections holding permits.
    holders: Vec<Holder>,
    waiters: Parked,
    /// A holder died holding permits: the next acquirer is told.
    owner_died: bool,
}

/// A connection holding permits.
#[derive(Debug)]
struct Holder {
    peer: u64,
    /// Its process, for stats.
    pid: u32,
    held: u64,
}

impl Permits {
    pub(crate) fn new(name: String, permits: u64, lock: bool, max_waiters: usize) -> Arc<Self> {
        Arc::new_cyclic(|this| Permits {
            name,
            permits,
            lock,
            this: this.clone(),
            state: Mutex::new(State {
                free: permits,
                waiters: Parked::new(max_waiters),
                ..State::default()
            }),
        })
    }

    pub(crate) fn is_lock(&self) -> bool {
        self.lock
    }

    /// Takes a permit for `peer`, now or when one is free (FIFO among waiters); answers
    /// `Busy` when none came before the wait ran out.
    pub(crate) fn acquire(&self, peer: &Arc<Peer>, request: u64, wait: Wait) {
        let mut state = self.lock_state();
        if state.waiters.is_empty() && state.free > 0 {
            let owner_died = grant(&mut state, peer);
            drop(state);
            peer.reply(request, Reply::Acquired { owner_died });
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
            peer.reply_error(request, ErrorCode::Busy, self.busy_message());
        }
    }

    /// Gives back a permit `peer` holds.
    ///
    /// # Errors
    ///
    /// When `peer` holds none: releasing what one does not hold is an error.
    pub(crate) fn release(&self, peer: u64) -> Result<(), String> {
        let mut state = self.lock_state();
        let Some(at) = state.holders.iter().position(|h| h.peer == peer) else {
            return Err(format!(
                "{} '{}' is not held by this client",
                self.kind(),
                self.name
            ));
        };
        state.holders[at].held -= 1;
        if state.holders[at].held == 0 {
            state.holders.swap_remove(at);
        }
        state.free += 1;
        serve(&mut state);
        Ok(())
    }

    /// The client no longer waits for request `request`. (Waiters exist only while no
    /// permit is free, so nobody else can take its turn now.)
    pub(crate) fn cancel(&self, peer: u64, request: u64) {
        self.lock_state().waiters.cancel(peer, request);
    }

    /// The connection `peer` went away: its waits end and its permits come back.
    pub(crate) fn forget(&self, peer: u64) {
        let mut state = self.lock_state();
        state.waiters.forget(peer);
        if let Some(at) = state.holders.iter().position(|h| h.peer == peer) {
            let held = state.holders.swap_remove(at).held;
            state.free += held;
            state.owner_died = true;
            tracing::info!(name = %self.name, held, "permits of a client that went away are back");
        }
        serve(&mut state);
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

    pub(crate) fn stats(&self) -> PermitStats {
        let state = self.lock_state();
        PermitStats {
            permits: self.permits,
            free: state.free,
            holders: state.holders.iter().map(|h| h.peer).collect(),
            waiters: state.waiters.len() as u64,
            holder_pids: state.holders.iter().map(|h| h.pid).collect(),
        }
    }

    fn expire(&self, id: u64) {
        let waiter = self.lock_state().waiters.expired(id);
        if let Some(waiter) = waiter {
            waiter
                .peer
                .reply_error(waiter.request, ErrorCode::Busy, self.busy_message());
        }
    }

    fn kind(&self) -> &'static str {
        if self.lock {
            "lock"
        } else {
            "semaphore"
        }
    }

    fn busy_message(&self) -> String {
        format!("{} '{}' has no free permit", self.kind(), self.name)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every change is completed before anything that could panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gives a free permit to `peer`; returns whether the last holder died holding one.
fn grant(state: &mut State, peer: &Peer) -> bool {
    state.free -= 1;
    match state.holders.iter_mut().find(|h| h.peer == peer.id) {
        Some(holder) => holder.held += 1,
        None => state.holders.push(Holder {
            peer: peer.id,
            pid: peer.pid,
            held: 1,
        }),
    }
    std::mem::take(&mut state.owner_died)
}

/// Hands free permits to waiters, oldest first.
fn serve(state: &mut State) {
    while state.free > 0 {
        let Some(waiter) = state.waiters.pop() else {
            return;
        };
        let owner_died = grant(state, &waiter.peer);
        waiter
            .peer
            .reply(waiter.request, Reply::Acquired { owner_died });
    }
}
