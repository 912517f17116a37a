//! Requests parked on a lock, semaphore, event or barrier until they can be answered,
//! each with the timer that gives up on it.

use std::collections::VecDeque;
use std::sync::Arc;

use ipcq_proto::{ErrorCode, Wait};
use tokio::task::AbortHandle;

use super::{abort, deadline, timer, Deadline};
use crate::peer::Peer;

/// Parked requests in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    waiters: VecDeque<Waiter>,
    next_id: u64,
    /// Most requests parked at once; past it, `park` refuses with `LimitReached`.
    limit: usize,
}

/// One parked request.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) peer: Arc<Peer>,
    pub(crate) request: u64,
    id: u64,
    timer: Option<AbortHandle>,
}

impl Parked {
    pub(crate) fn new(limit: usize) -> Self {
        Parked {
            limit,
            ..Parked::default()
        }
    }

    /// Parks the request for as long as `wait` allows; `expire(id)` runs when that runs
    /// out. Returns `false` without parking when `wait` allows no wait at all. With the
    /// object's limit of parked requests reached, answers `LimitReached` itself and returns
    /// `true` (the request is settled).
    pub(crate) fn park(
        &mut self,
        peer: &Arc<Peer>,
        request: u64,
        wait: Wait,
        expire: impl FnOnce(u64) + Send + 'static,
    ) -> bool {
        let at = match deadline(wait) {
            Deadline::Now => return false,
            Deadline::At(at) => Some(at),
            Deadline::Never => None,
        };
        if self.waiters.len() >= self.limit {
            peer.reply_error(request, ErrorCode::LimitReached, too_many(self.limit));
            return true;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.waiters.push_back(Waiter {
            peer: Arc::clone(peer),
            request,
            id,
            timer: at.map(|at| timer(at, move || expire(id))),
        });
        true
    }

    /// The oldest parked request, its timer stopped.
    pub(crate) fn pop(&mut self) -> Option<Waiter> {
        let waiter = self.waiters.pop_front()?;
        abort(&waiter.timer);
        Some(waiter)
    }

    /// The request parked as `id`, if it still is (its timer ran out).
    pub(crate) fn expired(&mut self, id: u64) -> Option<Waiter> {
        let at = self.waiters.iter().position(|waiter| waiter.id == id)?;
        self.waiters.remove(at)
    }

    /// Every parked request, oldest first, timers stopped.
    pub(crate) fn take_all(&mut self) -> Vec<Waiter> {
        let waiters: Vec<Waiter> = self.waiters.drain(..).collect();
        for waiter in &waiters {
            abort(&waiter.timer);
        }
        waiters
    }

    /// Withdraws request `request` of `peer` if it is still parked, answering it with
    /// `Cancelled`; returns whether it was.
    pub(crate) fn cancel(&mut self, peer: u64, request: u64) -> bool {
        let Some(at) = self
            .waiters
            .iter()
            .position(|waiter| waiter.peer.id == peer && waiter.request == request)
        else {
            return false;
        };
        let waiter = self.waiters.remove(at).expect("position is in range");
        abort(&waiter.timer);
        waiter
            .peer
            .reply_error(request, ErrorCode::Cancelled, "withdrawn by the client");
        true
    }

    /// Drops the requests of a connection that went away; returns whether it had any.
    pub(crate) fn forget(&mut self, peer: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|waiter| {
            let keep = waiter.peer.id != peer;
            if !keep {
                abort(&waiter.timer);
            }
            keep
        });
        self.waiters.len() != before
    }

    /// Answers every parked request with an error.
    pub(crate) fn fail_all(&mut self, code: ErrorCode, message: &str) {
        for waiter in self.take_all() {
            waiter
                .peer
                .reply_error(waiter.request, code, message.to_owned());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

/// The refusal of one waiter too many.
pub(crate) fn too_many(limit: usize) -> String {
    format!("{limit} requests already wait on this object (the broker's --max-waiters)")
}
