//! The broker-wide byte budget, so that unbounded queues cannot eat the machine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};

/// The bytes an item of `len` payload bytes counts against the byte budgets: its length
/// and [`ipcq_proto::ITEM_COST`] for the broker's own record of it (its place in a queue
/// or on a client's ledger, its allocation). Measured: a queue of 1-byte items costs about
/// 64 bytes of broker memory each (docs/broker.md).
pub(crate) fn cost(len: usize) -> usize {
    len + ipcq_proto::ITEM_COST
}

/// What waits for bytes to be released: a queue whose head putter found the budget full.
pub(crate) trait Waiter: Send + Sync + std::fmt::Debug {
    /// Bytes were released elsewhere in the broker: try again. Called with no queue's lock
    /// held.
    fn budget_released(&self);
}

/// Payload bytes held by all queues together. Over budget, every queue counts as full:
/// putters wait (or fail with `Full`) until getters release bytes anywhere in the broker.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
    /// Queues whose head putter waits for bytes released elsewhere.
    waiting: Mutex<Vec<Weak<dyn Waiter>>>,
    /// Lets the hot path skip the mutex when nobody waits.
    any_waiting: AtomicBool,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            max,
            waiting: Mutex::new(Vec::new()),
            any_waiting: AtomicBool::new(false),
        }
    }

    pub(crate) fn try_reserve(&self, len: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(len).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    /// Counts bytes that must be accepted whatever the budget (a large frame arriving).
    pub(crate) fn force(&self, len: usize) {
        self.used.fetch_add(len, Ordering::SeqCst);
    }

    /// Bytes not yet used.
    pub(crate) fn free(&self) -> usize {
        self.max.saturating_sub(self.used.load(Ordering::SeqCst))
    }

    pub(crate) fn release(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::SeqCst);
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.used.load(Ordering::SeqCst) >= self.max
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Registers a queue to be woken by [`Budget::wake_waiting`]. Called with the queue's
    /// lock held; the budget's lock is always taken after a queue's, never before.
    pub(crate) fn wait(&self, queue: Weak<dyn Waiter>) {
        self.lock().push(queue);
        self.any_waiting.store(true, Ordering::SeqCst);
    }

    /// Wakes the waiting queues. Must be called with no queue lock held.
    pub(crate) fn wake_waiting(&self) {
        if !self.any_waiting.load(Ordering::SeqCst) {
            return;
        }
        let queues = {
            let mut waiting = self.lock();
            self.any_waiting.store(false, Ordering::SeqCst);
            std::mem::take(&mut *waiting)
        };
        for queue in queues.iter().filter_map(Weak::upgrade) {
            queue.budget_released();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Waiter>>> {
        // The list is only pushed to or taken whole, so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
