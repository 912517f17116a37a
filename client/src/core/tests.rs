//! The core under scripted broker messages: no socket, no process.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_proto::{BrokerMsg, ClientMsg, ErrorCode, ErrorReply, Op, Reply, Wait};

use super::{Core, Fetch, GetStep, Progress, PutStep, Settlement, Wakeup};
use crate::ops::Purpose;
use crate::Error;

/// A waiter that only says who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Who(&'static str);

impl Wakeup for Who {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

const Q: u32 = 3;

fn core() -> Core<Who> {
    let mut core = Core::new(ipcq_proto::DEFAULT_MAX_FRAME_LEN);
    core.open_handle(Q);
    core
}

/// The messages the core wants written, decoded.
fn sent(core: &mut Core<Who>) -> Vec<ClientMsg> {
    let mut buf = bytes::BytesMut::from(&core.take_transmit()[..]);
    let mut msgs = Vec::new();
    while let Some(frame) = ipcq_proto::decode_frame(&mut buf, usize::MAX).unwrap() {
        msgs.push(ipcq_proto::decode::<ClientMsg>(frame).unwrap().0);
    }
    msgs
}

/// The ids and operations of the requests among `msgs`.
fn requests(msgs: &[ClientMsg]) -> Vec<(u64, Op)> {
    msgs.iter()
        .filter_map(|msg| match msg {
            ClientMsg::Request { id, op } => Some((*id, op.clone())),
            _ => None,
        })
        .collect()
}

fn answer(core: &mut Core<Who>, id: u64, body: Reply) {
    core.handle_msg(BrokerMsg::Reply { id, body }, Bytes::new());
}

/// Delivers `items` (one byte each) under tags `tag..` as the answer to `id`.
fn deliver(core: &mut Core<Who>, id: u64, tag: u64, items: &[u8], ready: u64) {
    let body = Reply::Items {
        tag,
        lens: vec![1; items.len()],
        ready,
        earlier: Vec::new(),
    };
    core.handle_msg(BrokerMsg::Reply { id, body }, Bytes::copy_from_slice(items));
}

fn error(code: ErrorCode) -> Reply {
    Reply::Error(ErrorReply::new(code, "scripted"))
}

/// A get that finds nothing: its own request, sent.
fn fetch(core: &mut Core<Who>, max: usize, wait: Wait) -> u64 {
    match core.get_step(Q, max, wait, Instant::now(), true).unwrap() {
        GetStep::Wait(Fetch::Own(id)) => id,
        other => panic!("{other:?}"),
    }
}

fn take(core: &mut Core<Who>, max: usize) -> Vec<u8> {
    take_at(core, max, Instant::now())
}

fn take_at(core: &mut Core<Who>, max: usize, now: Instant) -> Vec<u8> {
    match core.get_step(Q, max, Wait::NoWait, now, true).unwrap() {
        GetStep::Items(items, _) => items.iter().map(|d| d.item[0]).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_answer_that_beats_the_cancel_stays_for_the_next_get() {
    let mut core = core();
    let id = fetch(&mut core, 1, Wait::Block);
    sent(&mut core);
    // The answer comes; the getter gives up before collecting it (a dropped future).
    deliver(&mut core, id, 0, b"a", 0);
    core.abandon(id);
    // Nothing to withdraw: the answer came. The item is the next get's.
    assert_eq!(sent(&mut core), []);
    assert_eq!(take(&mut core, 1), b"a");
    assert_eq!(sent(&mut core), [ClientMsg::Ack { tag: 0, count: 1 }]);
}

#[test]
fn a_cancel_that_crosses_the_answer_loses_nothing() {
    let mut core = core();
    let id = fetch(&mut core, 1, Wait::Block);
    sent(&mut core);
    // The getter gives up first: the request is withdrawn...
    core.abandon(id);
    assert_eq!(sent(&mut core), [ClientMsg::Cancel { handle: Q, id }]);
    // ...but the broker had answered already: the item is kept, in order, for the next
    // get; the broker ignores the late cancel.
    deliver(&mut core, id, 7, b"b", 0);
    assert!(core.has_items(Q));
    assert_eq!(take(&mut core, 1), b"b");
    // A withdrawal that won is answered `Cancelled`, and that is the end of it.
    let id = fetch(&mut core, 1, Wait::Block);
    core.abandon(id);
    answer(&mut core, id, error(ErrorCode::Cancelled));
    assert!(!core.has_items(Q));
    assert!(core.waiters.is_empty());
}

#[test]
fn a_get_that_never_waits_is_not_withdrawn() {
    let mut core = core();
    let id = fetch(&mut core, 1, Wait::NoWait);
    sent(&mut core);
    core.abandon(id);
    assert_eq!(sent(&mut core), [], "nothing to withdraw from the broker");
    answer(&mut core, id, error(ErrorCode::Empty));
    assert!(core.waiters.is_empty());
}

#[test]
fn a_permit_granted_to_a_caller_that_left_is_released() {
    let mut core = core();
    let op = Op::Acquire {
        handle: Q,
        wait: Wait::Block,
    };
    let id = core.request(op, &[], Purpose::Acquire, Q, None).unwrap();
    sent(&mut core);
    core.abandon(id);
    assert_eq!(sent(&mut core), [ClientMsg::Cancel { handle: Q, id }]);
    answer(&mut core, id, Reply::Acquired { owner_died: false });
    let released = requests(&sent(&mut core));
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].1, Op::ReleasePermit { handle: Q });
}

/// A first put of a one-byte item: it finds no credit, waits for room, and is granted
/// `credits` with their bytes.
fn granted(core: &mut Core<Who>, credits: u32) {
    let PutStep::Room(room) = core.put_step(Q, &[b"x"], Wait::Block).unwrap() else {
        panic!("a put without credits must wait for room");
    };
    let grant = Reply::Accepted {
        credits,
        bytes: u64::from(credits) * ipcq_proto::item_cost(1),
    };
    answer(core, room, grant.clone());
    assert_eq!(core.poll(room, None).unwrap().unwrap().0, grant);
    sent(core);
}

#[test]
fn a_revoke_during_puts_gives_back_what_is_left_and_the_next_put_waits_for_room() {
    let mut core = core();
    let item: &[u8] = b"x";
    let cost = ipcq_proto::item_cost(1);
    // The first put finds no credit: it waits for room.
    granted(&mut core, 10);
    // Three go on credits, with a request for more ahead of need.
    for _ in 0..3 {
        assert!(matches!(
            core.put_step(Q, &[item], Wait::Block).unwrap(),
            PutStep::Sent(1, _)
        ));
    }
    let msgs = sent(&mut core);
    assert_eq!(
        msgs.iter()
            .filter(|m| matches!(m, ClientMsg::Send { handle: Q }))
            .count(),
        3
    );
    let reserve = requests(&msgs);
    assert!(
        matches!(reserve[..], [(_, Op::Reserve { .. })]),
        "{reserve:?}"
    );
    // Revoked while the credit request is on its way: the seven left go back, bytes too.
    core.handle_msg(BrokerMsg::Revoke { handle: Q }, Bytes::new());
    assert_eq!(
        sent(&mut core),
        [ClientMsg::Release {
            handle: Q,
            credits: 7,
            bytes: 7 * cost
        }]
    );
    // The next put waits for the credit request first, which grants nothing; then for room.
    let PutStep::Await(id) = core.put_step(Q, &[item], Wait::Block).unwrap() else {
        panic!("the credits on their way come first");
    };
    assert_eq!(id, reserve[0].0);
    answer(
        &mut core,
        id,
        Reply::Accepted {
            credits: 0,
            bytes: 0,
        },
    );
    assert!(matches!(
        core.poll_settled(id, Q, None),
        Some(Ok(Progress::Moved))
    ));
    assert!(matches!(
        core.put_step(Q, &[item], Wait::Block).unwrap(),
        PutStep::Room(_)
    ));
}

#[test]
fn a_handle_dropped_with_a_prefetch_in_flight_gives_everything_back_in_order() {
    let mut core = core();
    core.set_prefetch(Q, 100);
    let id = fetch(&mut core, 1, Wait::Block);
    // Four items; the broker says more are waiting.
    deliver(&mut core, id, 10, b"abcd", 50);
    core.poll(id, None);
    // Taken one every microsecond: the pace asks for 100 ahead, and two are left: a
    // prefetch goes out.
    let start = Instant::now();
    assert_eq!(take_at(&mut core, 1, start), b"a");
    assert_eq!(
        take_at(&mut core, 1, start + Duration::from_micros(1)),
        b"b"
    );
    let msgs = sent(&mut core);
    let prefetch = requests(&msgs)
        .into_iter()
        .find(|(_, op)| {
            matches!(
                op,
                Op::GetMany {
                    wait: Wait::NoWait,
                    ..
                }
            )
        })
        .expect("a prefetch")
        .0;
    // The last handle goes while the prefetch is on its way: nothing goes back yet.
    assert!(core.close_handle(Q));
    assert_eq!(sent(&mut core), []);
    assert!(core.poll_closed(Q, Some(&Who("dropper"))).is_none());
    // It comes, from other tags: everything goes back, the last run first, so that the
    // queue, which puts each run back in front, holds them in their order.
    deliver(&mut core, prefetch, 40, b"de", 0);
    assert_eq!(
        sent(&mut core),
        [
            ClientMsg::Return { tag: 40, count: 2 },
            ClientMsg::Return { tag: 12, count: 2 },
        ]
    );
    assert_eq!(core.take_woken(), [Who("dropper")]);
    assert!(matches!(core.poll_closed(Q, None), Some(Ok(()))));
}

#[test]
fn a_dead_connection_fails_every_waiter_and_hands_out_nothing() {
    let mut core = core();
    // Items fetched, credits held, a request parked.
    let id = fetch(&mut core, 1, Wait::Block);
    deliver(&mut core, id, 0, b"ab", 0);
    core.poll(id, None);
    let PutStep::Room(room) = core.put_step(Q, &[b"x"], Wait::Block).unwrap() else {
        panic!()
    };
    answer(
        &mut core,
        room,
        Reply::Accepted {
            credits: 5,
            bytes: 1000,
        },
    );
    core.poll(room, None);
    let op = Op::WaitEvent {
        handle: Q,
        wait: Wait::Block,
    };
    let parked = core
        .request(op, &[], Purpose::Wait, Q, Some(Who("waiter")))
        .unwrap();
    sent(&mut core);
    core.handle_msg(
        BrokerMsg::Fatal(ErrorReply::new(ErrorCode::LimitReached, "too slow")),
        Bytes::new(),
    );
    // The parked waiter is woken, and fails with the broker's reason.
    assert_eq!(core.take_woken(), [Who("waiter")]);
    let err = core.poll(parked, None).unwrap().unwrap_err();
    assert!(matches!(err, Error::LimitReached(_)), "{err:?}");
    // The buffered items are not handed out (the broker gives them back to the queue);
    // nothing is put on the credits; nothing more is written.
    assert!(!core.has_items(Q));
    assert!(core
        .get_step(Q, 1, Wait::NoWait, Instant::now(), true)
        .is_err());
    assert!(core.put_step(Q, &[b"x"], Wait::Block).is_err());
    core.close_handle(Q);
    assert_eq!(sent(&mut core), []);
}

#[test]
fn a_failed_write_drops_what_can_no_longer_be_acknowledged() {
    let mut core = core();
    let id = fetch(&mut core, 1, Wait::Block);
    deliver(&mut core, id, 0, b"ab", 0);
    core.poll(id, None);
    core.writes_failed();
    assert!(!core.has_items(Q));
    assert!(core.failure().is_some());
}

#[test]
fn acknowledgements_run_across_the_gaps_between_deliveries() {
    let mut core = core();
    core.set_prefetch(Q, 1);
    let first = fetch(&mut core, 3, Wait::Block);
    deliver(&mut core, first, 4, b"abc", 0);
    core.poll(first, None);
    // Another getter's answer, under tags after another queue's deliveries.
    let Fetch::Own(second) = core.fetch(Q, 2, Wait::Block).unwrap() else {
        panic!("no prefetch is in flight");
    };
    deliver(&mut core, second, 9, b"de", 0);
    sent(&mut core);
    assert_eq!(take(&mut core, 5), b"abcde");
    assert_eq!(
        sent(&mut core),
        [
            ClientMsg::Ack { tag: 4, count: 3 },
            ClientMsg::Ack { tag: 9, count: 2 }
        ]
    );
}

#[test]
fn items_another_answer_brings_wake_the_getters_of_the_handle() {
    let mut core = core();
    let mine = fetch(&mut core, 1, Wait::Block);
    assert!(core
        .poll_fetch(Fetch::Own(mine), Q, Some(&Who("mine")))
        .is_none());
    let theirs = fetch(&mut core, 1, Wait::Block);
    deliver(&mut core, theirs, 0, b"z", 0);
    assert!(core.take_woken().contains(&Who("mine")));
    // The item is there: this getter takes it and withdraws its own request.
    assert!(matches!(
        core.poll_fetch(Fetch::Own(mine), Q, None),
        Some(Ok(Progress::Moved))
    ));
}

#[test]
fn an_oversized_put_queues_nothing() {
    let mut core = Core::<Who>::new(1024);
    core.open_handle(Q);
    let big = vec![0u8; 2048];
    let err = core
        .request(
            Op::PutMany {
                handle: Q,
                lens: vec![2048],
                credits: 0,
            },
            &[&big],
            Purpose::Other,
            Q,
            None,
        )
        .unwrap_err();
    assert!(err.is_too_large());
    assert_eq!(sent(&mut core), []);
    assert!(core.waiters.is_empty());
}

#[test]
fn acknowledgements_wait_for_the_next_write_while_more_items_are_fetched() {
    let mut core = core();
    let id = fetch(&mut core, 1, Wait::Block);
    deliver(&mut core, id, 20, b"abc", 0);
    core.poll(id, None);
    sent(&mut core);
    let held = |core: &mut Core<Who>| match core
        .get_step(Q, 1, Wait::NoWait, Instant::now(), false)
        .unwrap()
    {
        // Held deliveries are not acknowledged: nothing to write.
        GetStep::Items(items, None) => items[0].tag,
        other => panic!("{other:?}"),
    };
    let first = held(&mut core);
    // Two more are fetched: the acknowledgement waits for the next write.
    assert_eq!(
        core.settle_delivery(Q, first, Settlement::Finish).unwrap(),
        None
    );
    let second = held(&mut core);
    assert_eq!(
        core.settle_delivery(Q, second, Settlement::Finish).unwrap(),
        None
    );
    let third = held(&mut core);
    // The last fetched item: everything goes now.
    assert!(core
        .settle_delivery(Q, third, Settlement::Finish)
        .unwrap()
        .is_some());
    assert_eq!(
        sent(&mut core),
        [
            ClientMsg::Finish { tag: 20, count: 1 },
            ClientMsg::Finish { tag: 21, count: 1 },
            ClientMsg::Finish { tag: 22, count: 1 },
        ]
    );
}

#[test]
fn a_rejection_is_written_at_once() {
    let mut core = core();
    let id = fetch(&mut core, 1, Wait::Block);
    deliver(&mut core, id, 0, b"ab", 0);
    core.poll(id, None);
    sent(&mut core);
    let GetStep::Items(items, _) = core
        .get_step(Q, 1, Wait::NoWait, Instant::now(), false)
        .unwrap()
    else {
        panic!("an item is fetched");
    };
    // Another getter may be waiting for it: no deferral, even with an item still here.
    assert!(core
        .settle_delivery(Q, items[0].tag, Settlement::Return)
        .unwrap()
        .is_some());
    assert_eq!(sent(&mut core), [ClientMsg::Return { tag: 0, count: 1 }]);
}

/// A put that waits for credits asked for ahead of need waits for their answer, even
/// with items fetched ahead in the handle's inbox (which a get would take instead): it
/// once returned at once and asked again, spinning without reading the answer.
#[test]
fn a_put_waiting_for_credits_is_not_woken_by_fetched_items() {
    let mut core = core();
    let item: &[u8] = b"x";
    granted(&mut core, 1);
    assert!(matches!(
        core.put_step(Q, &[item], Wait::Block).unwrap(),
        PutStep::Sent(1, _)
    ));
    // Items arrive for the handle's gets.
    let id = fetch(&mut core, 8, Wait::Block);
    deliver(&mut core, id, 1, &[1, 2], 0);
    let PutStep::Await(reserve) = core.put_step(Q, &[item], Wait::Block).unwrap() else {
        panic!("the credits on their way come first");
    };
    assert!(core.poll_settled(reserve, Q, None).is_none(), "it waits");
    answer(
        &mut core,
        reserve,
        Reply::Accepted {
            credits: 0,
            bytes: 0,
        },
    );
    assert!(matches!(
        core.poll_settled(reserve, Q, None),
        Some(Ok(Progress::Moved))
    ));
    assert_eq!(take(&mut core, 8), vec![1, 2]);
}
