//! The objects a broker serves. Object state never touches a socket: answers go to the
//! client's [`Peer`](crate::peer::Peer), whose writer task owns the socket.

mod barrier;
mod event;
#[cfg(target_os = "linux")]
mod lane;
#[cfg(not(target_os = "linux"))]
#[path = "lane_none.rs"]
mod lane;
mod parked;
mod permits;
mod pipe;
mod queue;

pub(crate) use barrier::Barrier;
pub(crate) use event::Event;
use parked::Parked;
pub(crate) use permits::Permits;
pub(crate) use pipe::Pipe;
pub(crate) use queue::{Extras, Queue};

use std::sync::Arc;
use std::time::Duration;

use crate::peer::Peer;

use ipcq_proto::Wait;
use tokio::task::AbortHandle;

/// Room claimed in a queue's ring for a connection, handed back when the queue is turned
/// over to the socket: as credits there (see `lane.rs`).
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) peer: Arc<Peer>,
    pub(crate) handle: u32,
    pub(crate) credits: u64,
    pub(crate) bytes: usize,
}

/// What became of an item sent on a credit, in a queue's ring (see `lane.rs`).
// Where there are no rings none is made, and the queue still matches on them.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Published in the slot claimed for it.
    Yes,
    /// The connection holds no claim: not a credit of the ring's.
    NoClaim,
    /// Larger than a slot: its claim was given up.
    TooLarge,
}

/// Waits longer than this are treated as waiting forever, so a deadline never overflows
/// the clock.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a parked request gives up.
pub(crate) enum Deadline {
    Now,
    At(tokio::time::Instant),
    Never,
}

pub(crate) fn deadline(wait: Wait) -> Deadline {
    match wait {
        Wait::NoWait | Wait::Micros(0) => Deadline::Now,
        Wait::Block => Deadline::Never,
        Wait::Micros(micros) => {
            let wait = Duration::from_micros(micros);
            if wait > MAX_WAIT {
                Deadline::Never
            } else {
                Deadline::At(tokio::time::Instant::now() + wait)
            }
        }
    }
}

/// Runs `expire` at `at`, unless the returned handle aborts it first.
pub(crate) fn timer(
    at: tokio::time::Instant,
    expire: impl FnOnce() + Send + 'static,
) -> AbortHandle {
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        expire();
    })
    .abort_handle()
}

pub(crate) fn abort(timer: &Option<AbortHandle>) {
    if let Some(timer) = timer {
        timer.abort();
    }
}

/// What every object does with the requests parked on it, and at its end: the part of an
/// object that sessions and the registry use without caring which kind it is.
pub(crate) trait Waits {
    /// The client no longer waits for its request `request`: if parked, it leaves and is
    /// answered `Cancelled`.
    fn cancel(&self, peer: u64, request: u64);
    /// The client went away: its parked requests are dropped, what it held comes back.
    fn forget(&self, peer: u64);
    /// `rm`: waiters get `Closed`, and what the object holds is dropped.
    fn remove(&self);
    /// Broker shutdown: every waiter learns it at once.
    fn shut_down(&self);
}

/// Each object's own methods, as [`Waits`].
macro_rules! waits {
    ($($object:ty),*) => {$(
        impl Waits for $object {
            fn cancel(&self, peer: u64, request: u64) {
                <$object>::cancel(self, peer, request);
            }
            fn forget(&self, peer: u64) {
                <$object>::forget(self, peer);
            }
            fn remove(&self) {
                <$object>::remove(self);
            }
            fn shut_down(&self) {
                <$object>::shut_down(self);
            }
        }
    )*};
}

waits!(Queue, Pipe, Permits, Event, Barrier);

/// An object as the registry and the sessions hold it.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    Queue(Arc<Queue>),
    Pipe(Arc<Pipe>),
    /// A lock or a semaphore.
    Permits(Arc<Permits>),
    Event(Arc<Event>),
    Barrier(Arc<Barrier>),
}

impl Object {
    /// Whether both are the same object (not merely the same name).
    pub(crate) fn same(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Queue(a), Object::Queue(b)) => Arc::ptr_eq(a, b),
            (Object::Pipe(a), Object::Pipe(b)) => Arc::ptr_eq(a, b),
            (Object::Permits(a), Object::Permits(b)) => Arc::ptr_eq(a, b),
            (Object::Event(a), Object::Event(b)) => Arc::ptr_eq(a, b),
            (Object::Barrier(a), Object::Barrier(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The object as [`Waits`], whatever its kind.
    pub(crate) fn waits(&self) -> &dyn Waits {
        match self {
            Object::Queue(queue) => &**queue,
            Object::Pipe(pipe) => &**pipe,
            Object::Permits(permits) => &**permits,
            Object::Event(event) => &**event,
            Object::Barrier(barrier) => &**barrier,
        }
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Object::Queue(_) => "queue",
            Object::Pipe(_) => "pipe",
            Object::Permits(permits) if permits.is_lock() => "lock",
            Object::Permits(_) => "semaphore",
            Object::Event(_) => "event",
            Object::Barrier(_) => "barrier",
        }
    }
}
