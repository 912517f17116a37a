//! Requests parked on an object until they can be answered, each with the timer that
//! gives up on it and what the object keeps with it: the one type of parked request for
//! queues (getters, putters, joiners), locks, semaphores, events and barriers.

use std::collections::VecDeque;
use std::sync::Arc;

use ipcq_proto::{ErrorCode, Wait};
use tokio::task::AbortHandle;

use super::{abort, deadline, timer, Deadline};
use crate::peer::Peer;

/// Parked requests in arrival order, each with the object's `T`.
#[derive(Debug)]
pub(crate) struct Parked<T = ()> {
    waiters: VecDeque<Waiter<T>>,
    next_id: u64,
    /// Most requests parked at once; past it, `park` refuses with `LimitReached`.
    limit: usize,
}

/// One parked request.
#[derive(Debug)]
pub(crate) struct Waiter<T = ()> {
    pub(crate) peer: Arc<Peer>,
    pub(crate) request: u64,
    /// What the object keeps with the request (a getter's batch size, a putter's items).
    pub(crate) data: T,
    id: u64,
    timer: Option<AbortHandle>,
}

/// What became of a request offered to [`Parked::park_with`].
#[derive(Debug)]
pub(crate) enum Park<T> {
    /// It waits.
    Parked,
    /// Its wait allows no wait at all: not parked; the object answers it (`Full`,
    /// `Empty`, ...), with its data back.
    Now(T),
    /// Too many wait already: answered `LimitReached`.
    Refused,
}

impl<T> Default for Parked<T> {
    /// No request may park (a limit of 0) until made with [`Parked::new`].
    fn default() -> Self {
        Parked::new(0)
    }
}

impl<T> Parked<T> {
    pub(crate) fn new(limit: usize) -> Self {
        Parked {
            waiters: VecDeque::new(),
            next_id: 0,
            limit,
        }
    }

    /// Parks the request, with `data`, for as long as `wait` allows; `expire(id)` runs when
    /// that runs out.
    pub(crate) fn park_with(
        &mut self,
        peer: &Arc<Peer>,
        request: u64,
        wait: Wait,
        data: T,
        expire: impl FnOnce(u64) + Send + 'static,
    ) -> Park<T> {
        let at = match deadline(wait) {
            Deadline::Now => return Park::Now(data),
            Deadline::At(at) => Some(at),
            Deadline::Never => None,
        };
        if self.waiters.len() >= self.limit {
            peer.reply_error(request, ErrorCode::LimitReached, too_many(self.limit));
            return Park::Refused;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.waiters.push_back(Waiter {
            peer: Arc::clone(peer),
            request,
            data,
            id,
            timer: at.map(|at| timer(at, move || expire(id))),
        });
        Park::Parked
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
    ) -> bool
    where
        T: Default,
    {
        !matches!(
            self.park_with(peer, request, wait, T::default(), expire),
            Park::Now(_)
        )
    }

    /// The oldest parked request.
    pub(crate) fn front(&self) -> Option<&Waiter<T>> {
        self.waiters.front()
    }

    /// The oldest parked request, to change what is kept with it.
    pub(crate) fn front_mut(&mut self) -> Option<&mut Waiter<T>> {
        self.waiters.front_mut()
    }

    /// The oldest parked request, its timer stopped.
    pub(crate) fn pop(&mut self) -> Option<Waiter<T>> {
        let waiter = self.waiters.pop_front()?;
        abort(&waiter.timer);
        Some(waiter)
    }

    /// The request parked as `id`, if it still is (its timer ran out), and where it was
    /// (0: the oldest).
    pub(crate) fn expired_at(&mut self, id: u64) -> Option<(usize, Waiter<T>)> {
        let at = self.waiters.iter().position(|waiter| waiter.id == id)?;
        Some((at, self.waiters.remove(at)?))
    }

    /// The request parked as `id`, if it still is (its timer ran out).
    pub(crate) fn expired(&mut self, id: u64) -> Option<Waiter<T>> {
        self.expired_at(id).map(|(_, waiter)| waiter)
    }

    /// Every parked request, oldest first, timers stopped.
    pub(crate) fn take_all(&mut self) -> Vec<Waiter<T>> {
        let waiters: Vec<Waiter<T>> = self.waiters.drain(..).collect();
        for waiter in &waiters {
            abort(&waiter.timer);
        }
        waiters
    }

    /// Withdraws request `request` of `peer` if it is still parked, answering it with
    /// `Cancelled`; returns where it was (0: the oldest), if it was.
    pub(crate) fn cancel(&mut self, peer: u64, request: u64) -> Option<usize> {
        let at = self
            .waiters
            .iter()
            .position(|waiter| waiter.peer.id == peer && waiter.request == request)?;
        let waiter = self.waiters.remove(at).expect("position is in range");
        abort(&waiter.timer);
        waiter
            .peer
            .reply_error(request, ErrorCode::Cancelled, "withdrawn by the client");
        Some(at)
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
