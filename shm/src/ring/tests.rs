//! The ring under the loom model checker: every interleaving of a few producers and
//! consumers (bounded by loom's preemption limit), with deaths at the worst moments and
//! the recovery that follows them. Each model asserts that nothing is lost, nothing is
//! handed out twice, each producer's items keep their order, and the ring keeps flowing.
//! (Weakening the publishing store from Release to Relaxed fails three of them: loom
//! sees the payload read race with its write.)

use loom::sync::Arc;
use loom::thread;

use super::{Memory, Owner, PushError, Ring};
use crate::raw::model::ModelMemory;

/// Runs `model` under loom with at most `preemptions` forced switches per execution (the
/// bound that keeps the search to seconds).
fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    // Retry loops (a full or empty ring, waited out) make long paths.
    builder.max_branches = 100_000;
    builder.check(model);
}

fn owner(n: u32) -> Owner {
    Owner::new(n).expect("a valid owner")
}

fn ring(capacity: usize) -> Arc<Ring<ModelMemory>> {
    Arc::new(Ring::new(ModelMemory::new(capacity, 8)))
}

/// Pushes, yielding to the other threads while the ring is full.
fn push(ring: &Ring<ModelMemory>, who: Owner, item: &[u8]) {
    loop {
        match ring.push(who, item) {
            Ok(()) => return,
            Err(PushError::Full) => thread::yield_now(),
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// Pops `count` items, yielding while there is none.
fn pop(ring: &Ring<ModelMemory>, who: Owner, count: usize) -> Vec<Vec<u8>> {
    let mut items = Vec::new();
    while items.len() < count {
        match ring.pop(who) {
            Some(item) => items.push(item),
            None => thread::yield_now(),
        }
    }
    items
}

// One forced preemption per execution: three threads with retry loops went past 10 min
// at two. The deaths below are checked at two.
#[test]
fn two_producers_and_a_consumer_lose_nothing_and_keep_order() {
    check(1, || {
        let ring = ring(2);
        // Producer 1 puts two items, so that its order is at stake; producer 0 one.
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    for i in 0..=p {
                        push(&ring, owner(u32::from(p) + 1), &[p, i]);
                    }
                })
            })
            .collect();
        let items = pop(&ring, owner(9), 3);
        producers.into_iter().for_each(|p| p.join().unwrap());
        let mut next = [0u8; 2];
        for item in &items {
            let p = usize::from(item[0]);
            assert_eq!(
                item[1], next[p],
                "producer {p}'s items out of order: {items:?}"
            );
            next[p] += 1;
        }
        assert_eq!(next, [1, 2], "{items:?}");
        assert!(ring.pop(owner(9)).is_none());
        assert_eq!(ring.len(), 0);
    });
}

// One forced preemption, as above.
#[test]
fn two_consumers_take_each_item_once() {
    check(1, || {
        let ring = ring(2);
        let consumers: Vec<_> = (0..2u32)
            .map(|c| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || pop(&ring, owner(c + 10), 1))
            })
            .collect();
        for i in 0..2u8 {
            push(&ring, owner(1), &[0, i]);
        }
        let mut all: Vec<Vec<u8>> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort();
        assert_eq!(all, (0..2u8).map(|i| vec![0, i]).collect::<Vec<_>>());
    });
}

#[test]
fn a_producer_killed_mid_write_publishes_nothing_and_does_not_wedge_the_ring() {
    check(2, || {
        let ring = ring(2);
        let dead = owner(1);
        // The doomed producer claims a slot and dies before publishing: it writes part of
        // its item, as a process killed mid-copy would.
        let doomed = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.claim_and_die(dead, b"half"))
        };
        let live = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || push(&ring, owner(2), &[1, 0]))
        };
        doomed.join().unwrap();
        // Its death is seen (the socket closed): recovery passes its claim over.
        let recovered = ring.recover(dead);
        assert_eq!(recovered.returned, Vec::<Vec<u8>>::new());
        live.join().unwrap();
        // The live item comes through; the half-written one never does.
        assert_eq!(pop(&ring, owner(3), 1), vec![vec![1, 0]]);
        assert!(ring.pop(owner(3)).is_none());
        // And the ring goes on past the skipped slot, around its laps.
        for i in 0..3u8 {
            push(&ring, owner(2), &[2, i]);
            assert_eq!(pop(&ring, owner(3), 1), vec![vec![2, i]]);
        }
    });
}

#[test]
fn a_consumer_killed_after_claiming_gives_the_item_back_exactly_once() {
    check(2, || {
        let ring = ring(2);
        push(&ring, owner(1), &[0, 0]);
        push(&ring, owner(1), &[0, 1]);
        let dead = owner(5);
        // The doomed consumer claims the head item and dies before it is freed.
        let doomed = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.claim_item_and_die(dead))
        };
        let live = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || pop(&ring, owner(6), 1))
        };
        let claimed = doomed.join().unwrap();
        let recovered = ring.recover(dead);
        let taken = live.join().unwrap();
        // Whatever the dead one claimed came back, and the live one took the other.
        assert_eq!(recovered.returned, claimed.into_iter().collect::<Vec<_>>());
        let mut all: Vec<Vec<u8>> = taken.into_iter().chain(recovered.returned).collect();
        all.extend(ring.pop(owner(6)));
        all.sort();
        assert_eq!(all, vec![vec![0, 0], vec![0, 1]]);
        // The freed slot is used again.
        push(&ring, owner(1), &[0, 2]);
        push(&ring, owner(1), &[0, 3]);
        assert_eq!(pop(&ring, owner(6), 2), vec![vec![0, 2], vec![0, 3]]);
    });
}

#[test]
fn a_full_ring_refuses_and_frees() {
    check(2, || {
        let ring = ring(1);
        push(&ring, owner(1), &[0, 0]);
        assert_eq!(ring.push(owner(1), &[0, 1]), Err(PushError::Full));
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || pop(&ring, owner(2), 2))
        };
        push(&ring, owner(1), &[0, 1]);
        assert_eq!(consumer.join().unwrap(), vec![vec![0, 0], vec![0, 1]]);
        assert_eq!(ring.push(owner(1), &[0; 9]), Err(PushError::TooLarge));
    });
}

/// The broker turning the queue over to its socket while a producer pushes: the item is
/// refused, or the broker sees it being written, waits, and drains it. Never left in a
/// ring that nobody reads any more.
#[test]
fn an_item_pushed_as_the_broker_takes_over_is_refused_or_drained() {
    check(2, || {
        let ring = ring(2);
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.push(owner(1), &[1, 0]))
        };
        ring.set_flags(super::SOCKET);
        while ring.writing() > 0 {
            thread::yield_now();
        }
        let mut drained = Vec::new();
        while let Some(item) = ring.pop(owner(9)) {
            drained.push(item);
        }
        match producer.join().unwrap() {
            Ok(()) => assert_eq!(drained, vec![vec![1, 0]]),
            Err(PushError::Refused(flags)) => {
                assert_eq!(flags, super::SOCKET);
                assert!(drained.is_empty());
            }
            Err(other) => panic!("{other:?}"),
        }
        // Nothing published after the drain.
        assert!(ring.pop(owner(9)).is_none());
    });
}

/// A consumer killed after claiming, recovered by a keeper that holds the slot: the item
/// comes back, the slot stays taken (a producer finds the ring full) until released.
#[test]
fn a_held_slot_counts_until_it_is_released() {
    check(2, || {
        let ring = ring(1);
        push(&ring, owner(1), &[0, 0]);
        let dead = owner(5);
        let doomed = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.claim_item_and_die(dead))
        };
        assert_eq!(doomed.join().unwrap(), Some(vec![0, 0]));
        let keeper = owner(9);
        let recovered = ring.recover_held(dead, keeper);
        assert_eq!(recovered.returned, vec![vec![0, 0]]);
        let [(index, lap)] = recovered.held[..] else {
            panic!("{recovered:?}")
        };
        assert_eq!(ring.push(owner(1), &[0, 1]), Err(PushError::Full));
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || push(&ring, owner(1), &[0, 1]))
        };
        ring.release(keeper, index, lap);
        producer.join().unwrap();
        assert_eq!(pop(&ring, owner(6), 1), vec![vec![0, 1]]);
    });
}

/// What a dead process leaves, for the tests: the first step of a push or pop, and no
/// more.
impl Ring<ModelMemory> {
    /// Claims the tail slot, writes part of `item`, and stops (before even moving the
    /// tail).
    fn claim_and_die(&self, who: Owner, item: &[u8]) {
        let (_, index, _) = self.claim_slot(who).expect("room");
        self.memory.write(index, &item[..item.len() / 2]);
    }

    /// Claims the head item if there is one and stops before freeing it; returns it.
    fn claim_item_and_die(&self, who: Owner) -> Option<Vec<u8>> {
        let (index, _) = self.claim_item(who)?;
        Some(self.memory.read(index))
    }
}
