//! The operations of both clients as values: each request, what its answer means if
//! nobody waits for it, and how its answer reads. Written once, with no I/O; the blocking
//! client sends a [`Request`] and waits on its thread, the tokio client awaits it.
//!
//! The streaming paths (puts on credits, prefetched gets) are not here: they are driven by
//! each client's per-handle state.

use std::fmt;

use ipcq_proto::{Kind, ObjectStats, Op, QueueInfo, Reply, Wait};

use crate::common::STATS_PAGE_LEN;
use crate::{Error, Result};

/// What a request is for, and so what its answer needs if the caller stops waiting for it
/// (a dropped future, a getter that took items another answer brought).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Items for a getter: they join the handle's inbox whoever waits, and go back to the
    /// queue if the handle is gone.
    Get,
    /// Items asked for ahead of need: nobody waits for them; they join the inbox.
    Prefetch,
    /// Credits asked for ahead of need: nobody waits for them; they join the handle's.
    Reserve,
    /// Room for a put: the credits granted go to the handle whoever waits, back to the
    /// broker if the handle is gone.
    Room,
    /// A permit: released if the acquirer is gone.
    Acquire,
    /// A wait that may park in the broker and can be withdrawn.
    Wait,
    /// Anything answered at once.
    Other,
}

/// One request on object `handle` (`u32::MAX` for the broker itself), and how its answer
/// reads.
pub(crate) struct Request<T> {
    pub(crate) op: Op,
    pub(crate) handle: u32,
    pub(crate) purpose: Purpose,
    /// Reads the answer, or the error the broker answered with.
    pub(crate) reader: fn(Result<Reply>) -> Result<T>,
}

impl<T> Request<T> {
    fn new(op: Op, handle: u32, purpose: Purpose, reader: fn(Result<Reply>) -> Result<T>) -> Self {
        Request {
            op,
            handle,
            purpose,
            reader,
        }
    }

    /// What the answer means to the caller (the drivers take `reader` apart instead).
    #[cfg(test)]
    pub(crate) fn read(&self, answer: Result<Reply>) -> Result<T> {
        (self.reader)(answer)
    }
}

impl<T> fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("op", &self.op)
            .field("handle", &self.handle)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// An answer that is not the one the request calls for.
pub(crate) fn unexpected(reply: &Reply) -> Error {
    Error::Protocol(format!("unexpected answer from the broker: {reply:?}"))
}

/// The broker's own handle in [`Request::handle`].
const BROKER: u32 = u32::MAX;

fn done(answer: Result<Reply>) -> Result<()> {
    match answer? {
        Reply::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// The queue `handle`'s ring, if the broker shares it: its ticket and this connection's
/// owner number.
pub(crate) fn share(handle: u32) -> Request<Option<(u64, u32)>> {
    Request::new(
        Op::ShareQueue { handle },
        handle,
        Purpose::Other,
        |answer| match answer? {
            Reply::Shared { token, owner } => Ok(Some((token, owner))),
            Reply::Flag(false) => Ok(None),
            other => Err(unexpected(&other)),
        },
    )
}

fn flag(answer: Result<Reply>) -> Result<bool> {
    match answer? {
        Reply::Flag(flag) => Ok(flag),
        other => Err(unexpected(&other)),
    }
}

/// `Finish`, answered: the deliveries `tag ..` are settled as done, or they were no longer
/// held (a lease ran out).
pub(crate) fn finish(tag: u64, count: u32) -> Request<()> {
    Request::new(Op::Finish { tag, count }, BROKER, Purpose::Other, done)
}

/// `Ping`: the broker answers.
pub(crate) fn ping() -> Request<()> {
    Request::new(Op::Ping, BROKER, Purpose::Other, |answer| match answer? {
        Reply::Pong => Ok(()),
        other => Err(unexpected(&other)),
    })
}

/// `Open`: the handle of `name`, created as `kind` if it does not exist.
pub(crate) fn open(name: &str, kind: Kind) -> Request<u32> {
    let op = Op::Open {
        name: name.to_owned(),
        kind,
    };
    Request::new(op, BROKER, Purpose::Other, |answer| match answer? {
        Reply::Opened { handle } => Ok(handle),
        other => Err(unexpected(&other)),
    })
}

/// `Remove`: the object `name` is gone.
pub(crate) fn remove(name: &str) -> Request<()> {
    let op = Op::Remove {
        name: name.to_owned(),
    };
    Request::new(op, BROKER, Purpose::Other, done)
}

/// `Lookup`: the figures of `name` alone.
pub(crate) fn lookup(name: &str) -> Request<ObjectStats> {
    let op = Op::Lookup {
        name: name.to_owned(),
    };
    Request::new(op, BROKER, Purpose::Other, |answer| match answer? {
        Reply::Stats(mut stats) if stats.len() == 1 => Ok(stats.remove(0)),
        other => Err(unexpected(&other)),
    })
}

/// One page of stats: the objects after `after` (name order), and whether more follow.
/// [`stats`] lists them all this way.
pub(crate) fn stats_page(after: String) -> Request<(Vec<ObjectStats>, bool)> {
    let op = Op::StatsPage {
        after,
        max_len: STATS_PAGE_LEN,
    };
    Request::new(op, BROKER, Purpose::Other, |answer| match answer? {
        Reply::StatsPage { objects, more } => Ok((objects, more)),
        other => Err(unexpected(&other)),
    })
}

/// Every object's figures, page after page: `next` sends a request and returns its
/// answer. Any number of objects can be listed this way.
pub(crate) fn stats(
    mut next: impl FnMut(Request<(Vec<ObjectStats>, bool)>) -> Result<(Vec<ObjectStats>, bool)>,
) -> Result<Vec<ObjectStats>> {
    let mut all: Vec<ObjectStats> = Vec::new();
    loop {
        let after = all.last().map(|last| last.name.clone()).unwrap_or_default();
        let (objects, more) = next(stats_page(after))?;
        all.extend(objects);
        if !more {
            return Ok(all);
        }
    }
}

/// `Info`: a queue's length, capacity and state.
pub(crate) fn info(handle: u32) -> Request<QueueInfo> {
    Request::new(
        Op::Info { handle },
        handle,
        Purpose::Other,
        |answer| match answer? {
            Reply::QueueInfo(info) => Ok(info),
            other => Err(unexpected(&other)),
        },
    )
}

/// `Close`: later puts fail, getters drain what is left.
pub(crate) fn close(handle: u32) -> Request<()> {
    Request::new(Op::Close { handle }, handle, Purpose::Other, done)
}

/// `TaskDone`: one item of a joinable queue is processed.
pub(crate) fn task_done(handle: u32) -> Request<()> {
    Request::new(Op::TaskDone { handle }, handle, Purpose::Other, done)
}

/// `Join`: whether every item put was marked done before the wait ran out.
pub(crate) fn join(handle: u32, wait: Wait) -> Request<bool> {
    Request::new(Op::Join { handle, wait }, handle, Purpose::Wait, flag)
}

/// `Acquire`: a permit, with whether its last holder died holding it; `None` when none
/// came before the wait ran out.
pub(crate) fn acquire(handle: u32, wait: Wait) -> Request<Option<bool>> {
    Request::new(
        Op::Acquire { handle, wait },
        handle,
        Purpose::Acquire,
        |answer| match answer {
            Ok(Reply::Acquired { owner_died }) => Ok(Some(owner_died)),
            Ok(other) => Err(unexpected(&other)),
            Err(Error::Busy(_)) => Ok(None),
            Err(err) => Err(err),
        },
    )
}

/// `ReleasePermit`: a permit this client holds goes back.
pub(crate) fn release_permit(handle: u32) -> Request<()> {
    Request::new(Op::ReleasePermit { handle }, handle, Purpose::Other, done)
}

/// `SetEvent`: every waiter wakes.
pub(crate) fn set_event(handle: u32) -> Request<()> {
    Request::new(Op::SetEvent { handle }, handle, Purpose::Other, done)
}

/// `ClearEvent`.
pub(crate) fn clear_event(handle: u32) -> Request<()> {
    Request::new(Op::ClearEvent { handle }, handle, Purpose::Other, done)
}

/// `WaitEvent`: whether the event is set (false only when the wait ran out).
pub(crate) fn wait_event(handle: u32, wait: Wait) -> Request<bool> {
    Request::new(Op::WaitEvent { handle, wait }, handle, Purpose::Wait, flag)
}

/// `WaitBarrier`: this party's place in arrival order.
pub(crate) fn wait_barrier(handle: u32, wait: Wait) -> Request<u64> {
    Request::new(
        Op::WaitBarrier { handle, wait },
        handle,
        Purpose::Wait,
        |answer| match answer? {
            Reply::Passed { index } => Ok(index),
            other => Err(unexpected(&other)),
        },
    )
}

/// `ResetBarrier`: waiting parties get `Broken`, later waits start afresh.
pub(crate) fn reset_barrier(handle: u32) -> Request<()> {
    Request::new(Op::ResetBarrier { handle }, handle, Purpose::Other, done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcq_proto::{ErrorCode, ErrorReply, ObjectDetail, QueueStats};

    fn refused(code: ErrorCode) -> Result<Reply> {
        Err(Error::from_reply(ErrorReply::new(code, "no")))
    }

    #[test]
    fn answers_read_as_their_request_means() {
        assert!(ping().read(Ok(Reply::Pong)).is_ok());
        assert_eq!(
            open("q", Kind::Lock)
                .read(Ok(Reply::Opened { handle: 7 }))
                .unwrap(),
            7
        );
        assert!(join(1, Wait::Block).read(Ok(Reply::Flag(true))).unwrap());
        assert_eq!(
            wait_barrier(1, Wait::Block)
                .read(Ok(Reply::Passed { index: 2 }))
                .unwrap(),
            2
        );
        // The wrong answer is a protocol error, never taken for another.
        let err = task_done(1).read(Ok(Reply::Pong)).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        let err = ping().read(Ok(Reply::Done)).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
    }

    #[test]
    fn a_busy_acquire_is_no_permit_and_other_errors_stay_errors() {
        let acquire = acquire(3, Wait::NoWait);
        assert_eq!(acquire.purpose, Purpose::Acquire);
        assert_eq!(
            acquire
                .read(Ok(Reply::Acquired { owner_died: true }))
                .unwrap(),
            Some(true)
        );
        assert_eq!(acquire.read(refused(ErrorCode::Busy)).unwrap(), None);
        assert!(acquire
            .read(refused(ErrorCode::Closed))
            .unwrap_err()
            .is_closed());
        // Elsewhere a busy answer is an error like any other.
        assert!(matches!(
            release_permit(3).read(refused(ErrorCode::Busy)),
            Err(Error::Busy(_))
        ));
    }

    #[test]
    fn waits_that_park_in_the_broker_can_be_withdrawn() {
        for purpose in [
            join(1, Wait::Block).purpose,
            wait_event(1, Wait::Block).purpose,
            wait_barrier(1, Wait::Block).purpose,
        ] {
            assert_eq!(purpose, Purpose::Wait);
        }
        assert_eq!(info(1).purpose, Purpose::Other);
        assert_eq!(ping().handle, u32::MAX);
        assert_eq!(close(4).handle, 4);
    }

    #[test]
    fn stats_follow_the_pages_to_the_end() {
        let object = |name: &str| ObjectStats {
            name: name.into(),
            detail: ObjectDetail::Queue(QueueStats {
                ready: 0,
                in_flight: 0,
                reserved: 0,
                capacity: 0,
                bytes: 0,
                getters: 0,
                putters: 0,
                total_put: 0,
                total_got: 0,
                closed: false,
                auto_delete: false,
                redelivered: 0,
                dead_lettered: 0,
                holders: Vec::new(),
                shared_memory: false,
                torn_writes: 0,
            }),
        };
        let mut asked = Vec::new();
        let all = stats(|request| {
            let Op::StatsPage { after, .. } = &request.op else {
                panic!("{request:?}");
            };
            asked.push(after.clone());
            let page = match after.as_str() {
                "" => (vec![object("a"), object("b")], true),
                "b" => (vec![object("c")], false),
                other => panic!("asked after {other}"),
            };
            request.read(Ok(Reply::StatsPage {
                objects: page.0,
                more: page.1,
            }))
        })
        .unwrap();
        let names: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(asked, ["", "b"]);
    }
}
