//! The two-ended pipe, as Python's `multiprocessing.Pipe`.
//!
//! A pipe is two bounded queues, one into each end, so each direction has the queue's
//! flow control and guarantees: what one end sends, the other receives in order, and items
//! in flight to a receiver that dies go back to its inbox. Each end is held by one
//! connection at a time. When an end is closed — by its holder, or because the holder went
//! away — it stays closed: the other end receives what was already sent to it and then
//! `Closed` (Python's `EOFError`), and its sends fail with `Closed`.

use std::sync::{Arc, Mutex, MutexGuard};

use ipcq_proto::{ErrorCode, ErrorReply, PipeStats};

use super::{Extras, Queue};
use crate::budget::Budget;

#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) name: String,
    pub(crate) duplex: bool,
    pub(crate) capacity: u64,
    /// `inbox[i]` holds what was sent to end `i`. A simplex pipe uses only `inbox[0]`
    /// (end 1 sends, end 0 receives).
    inbox: [Arc<Queue>; 2],
    ends: Mutex<[End; 2]>,
}

#[derive(Debug, Default, Clone, Copy)]
struct End {
    /// The connection holding the end.
    holder: Option<u64>,
    closed: bool,
}

impl Pipe {
    pub(crate) fn new(
        name: String,
        duplex: bool,
        capacity: u64,
        max_bytes: usize,
        budget: &Arc<Budget>,
        max_waiters: usize,
    ) -> Arc<Self> {
        let inbox = |end: u8| {
            Queue::new(
                format!("{name}:{end}"),
                capacity,
                max_bytes,
                Arc::clone(budget),
                max_waiters,
                Extras::default(),
            )
        };
        Arc::new(Pipe {
            inbox: [inbox(0), inbox(1)],
            name,
            duplex,
            capacity,
            ends: Mutex::new([End::default(); 2]),
        })
    }

    /// Claims `end` for connection `peer`.
    ///
    /// # Errors
    ///
    /// `Busy` when another connection holds it, `Closed` when it was closed.
    pub(crate) fn claim(&self, end: u8, peer: u64) -> Result<(), ErrorReply> {
        let mut ends = self.lock();
        let state = &mut ends[usize::from(end)];
        if state.closed {
            return Err(ErrorReply::new(
                ErrorCode::Closed,
                format!(
                    "end {end} of pipe '{}' is closed: its holder closed it or went away",
                    self.name
                ),
            ));
        }
        match state.holder {
            Some(holder) if holder != peer => Err(ErrorReply::new(
                ErrorCode::Busy,
                format!(
                    "end {end} of pipe '{}' is held by another connection",
                    self.name
                ),
            )),
            _ => {
                state.holder = Some(peer);
                Ok(())
            }
        }
    }

    /// The queue that `end` sends into.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for end 0 of a simplex pipe, which only receives.
    pub(crate) fn send_queue(&self, end: u8) -> Result<&Arc<Queue>, ErrorReply> {
        if !self.duplex && end == 0 {
            return Err(ErrorReply::new(
                ErrorCode::InvalidArgument,
                format!("end 0 of simplex pipe '{}' only receives", self.name),
            ));
        }
        Ok(&self.inbox[usize::from(1 - end)])
    }

    /// The queue that `end` receives from.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for end 1 of a simplex pipe, which only sends.
    pub(crate) fn recv_queue(&self, end: u8) -> Result<&Arc<Queue>, ErrorReply> {
        if !self.duplex && end == 1 {
            return Err(ErrorReply::new(
                ErrorCode::InvalidArgument,
                format!("end 1 of simplex pipe '{}' only sends", self.name),
            ));
        }
        Ok(&self.inbox[usize::from(end)])
    }

    /// Closes `end` for good: nothing more can be sent to it, and the other end receives
    /// what was sent to it and then `Closed`.
    pub(crate) fn close_end(&self, end: u8) {
        {
            let mut ends = self.lock();
            let state = &mut ends[usize::from(end)];
            state.closed = true;
            state.holder = None;
        }
        for queue in &self.inbox {
            queue.close();
        }
    }

    /// The client no longer waits for request `request` (a send or a receive).
    pub(crate) fn cancel(&self, peer: u64, request: u64) {
        for queue in &self.inbox {
            queue.cancel(peer, request);
        }
    }

    /// The connection `peer` went away: the ends it held close.
    pub(crate) fn forget(&self, peer: u64) {
        let held: Vec<u8> = {
            let ends = self.lock();
            (0..2u8)
                .filter(|&end| ends[usize::from(end)].holder == Some(peer))
                .collect()
        };
        for queue in &self.inbox {
            queue.forget(peer);
        }
        for end in held {
            self.close_end(end);
        }
    }

    /// `rm`: both ends close and whatever was buffered is dropped.
    pub(crate) fn remove(&self) {
        {
            let mut ends = self.lock();
            for state in ends.iter_mut() {
                state.closed = true;
                state.holder = None;
            }
        }
        for queue in &self.inbox {
            queue.remove();
        }
    }

    pub(crate) fn shut_down(&self) {
        for queue in &self.inbox {
            queue.shut_down();
        }
    }

    pub(crate) fn stats(&self) -> PipeStats {
        let ends = *self.lock();
        let buffered = |end: usize| {
            let stats = self.inbox[end].stats();
            stats.ready + stats.in_flight
        };
        PipeStats {
            duplex: self.duplex,
            capacity: self.capacity,
            held: [ends[0].holder.is_some(), ends[1].holder.is_some()],
            closed: [ends[0].closed, ends[1].closed],
            buffered: [buffered(0), buffered(1)],
        }
    }

    fn lock(&self) -> MutexGuard<'_, [End; 2]> {
        // Plain assignments only: a poisoned lock is still coherent.
        self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }
}
