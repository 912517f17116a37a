//! Byte budgets: an unbounded queue cannot eat the machine. Over its own budget, or the
//! broker-wide one, a queue counts as full; bytes freed anywhere wake putters anywhere.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_queue_over_its_byte_budget_counts_as_full() {
    watchdog(LIMIT, || {
        let broker =
            TestBroker::start_with(&["--max-frame-len", "16384", "--max-queue-bytes", "65536"]);
        let client = broker.client();
        let queue = client.raw_queue("unbounded", 0).unwrap();
        let item = vec![7u8; 1000];
        let mut accepted = 0;
        while queue.put_nowait(&item).is_ok() {
            accepted += 1;
            assert!(accepted <= 61, "the budget was not enforced");
        }
        // Each item counts its bytes and 64 more (the broker's record of it).
        assert_eq!(accepted, 61, "61 items of 1000 + 64 bytes fit in 65536");
        assert!(queue
            .put_timeout(&item, Duration::from_millis(20))
            .unwrap_err()
            .is_full());
        assert_eq!(queue_stats(&client, "unbounded").bytes, 61 * 1064);
        // Under the budget, a smaller item still fits; once it is used up, the queue is full.
        assert!(!queue.is_full().unwrap());
        queue
            .put_nowait(&vec![7u8; 65_536 - 61 * 1064 - 64])
            .unwrap();
        assert!(queue.is_full().unwrap());
        assert!(queue.put_nowait(b"x").unwrap_err().is_full());
        // Taking one frees its bytes.
        queue.set_prefetch(1);
        queue.get().unwrap();
        queue.put_nowait(&item).unwrap();
        assert_eq!(queue.len().unwrap(), 62);
    });
}

#[test]
fn the_broker_wide_budget_wakes_putters_on_other_queues() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start_with(&[
            "--max-frame-len",
            "16384",
            "--max-queue-bytes",
            "65536",
            "--max-total-bytes",
            "65536",
        ]);
        let client = broker.client();
        let a = client.raw_queue("a", 0).unwrap();
        a.set_prefetch(1);
        let item = vec![1u8; 8192];
        // 7 items of 8192 + 64 bytes; an eighth would not fit in 65536.
        for _ in 0..7 {
            a.put_nowait(&item).unwrap();
        }
        // And one that takes the rest: 65536 bytes counted.
        a.put_nowait(&vec![1u8; 65_536 - 7 * (8192 + 64) - 64])
            .unwrap();
        // Answered after the puts on this connection: they are all in.
        assert_eq!(a.len().unwrap(), 8);
        // The broker's budget is spent: another queue is full too.
        let b = broker.client().raw_queue("b", 0).unwrap();
        assert!(b.put_nowait(&item).unwrap_err().is_full());
        assert!(b.is_full().unwrap());
        let blocked = {
            let b = b.clone();
            let item = item.clone();
            std::thread::spawn(move || b.put(&item))
        };
        wait_until(&client, "b", "a putter waiting for bytes", |s| {
            s.putters == 1
        });
        // Bytes freed on `a` let the putter on `b` in.
        a.get().unwrap();
        blocked.join().unwrap().unwrap();
        // Answered on the putter's connection after its item: it is in.
        assert_eq!(b.len().unwrap(), 1);
        assert_eq!(queue_stats(&client, "b").ready, 1);
    });
}

#[test]
fn budgets_smaller_than_a_frame_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = addr_in(dir.path(), "bad");
    let Err(err) = spawn_broker(&addr, &["--max-queue-bytes", "1000"]) else {
        panic!("the broker started with a budget smaller than a frame");
    };
    assert!(err.contains("must be at least max_frame_len"), "{err}");
}

#[test]
fn empty_items_count_against_the_budget() {
    watchdog(LIMIT, || {
        let broker =
            TestBroker::start_with(&["--max-frame-len", "16384", "--max-queue-bytes", "65536"]);
        let client = broker.client();
        let queue = client.raw_queue("empty", 0).unwrap();
        let mut accepted = 0;
        while queue.put_nowait(b"").is_ok() {
            accepted += 1;
            assert!(accepted <= 1024, "empty items were not counted");
        }
        assert_eq!(accepted, 1024, "65536 / 64 empty items");
        assert!(queue.is_full().unwrap());
    });
}

#[cfg(target_os = "linux")]
#[test]
fn tiny_items_up_to_the_budget_take_about_what_they_count() {
    watchdog(LIMIT, || {
        let budget = 8 << 20;
        let broker = TestBroker::start_with(&[
            "--max-frame-len",
            "1048576",
            "--max-queue-bytes",
            &budget.to_string(),
            "--max-total-bytes",
            &budget.to_string(),
        ]);
        let client = broker.client();
        let before = rss_kib(broker.child.id());
        let queue = client.raw_queue("tiny", 0).unwrap();
        // 1-byte items in batches, as a hostile producer would send them: each batch
        // arrives in one frame, and no item may pin it.
        let batch: Vec<&[u8]> = vec![b"x"; 1000];
        let mut accepted = 0;
        loop {
            match queue.put_nowait(b"x") {
                Ok(()) => accepted += 1,
                Err(err) if err.is_full() => break,
                Err(err) => panic!("{err}"),
            }
            if accepted % 1000 == 1 && queue_stats(&client, "tiny").bytes + 70_000 < budget {
                queue.put_many(&batch).unwrap();
                accepted += batch.len();
            }
        }
        let after = rss_kib(broker.child.id());
        eprintln!(
            "{accepted} items of 1 byte under a budget of {budget} B: broker RSS {before} KiB -> \
             {after} KiB"
        );
        assert_eq!(accepted as u64, queue_stats(&client, "tiny").ready);
        assert!(accepted as u64 <= budget / 65);
        // What they count is what they take, within a factor for the allocator's slack.
        assert!(
            (after - before) * 1024 < 2 * budget,
            "{accepted} tiny items took {} KiB",
            after - before
        );
    });
}

// Speaks the protocol by hand over a Unix socket.
#[cfg(unix)]
#[test]
fn credits_carry_bytes_and_spending_beyond_them_is_refused() {
    use common::raw::Raw;
    use ipcq_proto::{BrokerMsg, ClientMsg, ErrorCode, Kind, Op, Reply};

    watchdog(LIMIT, || {
        let broker =
            TestBroker::start_with(&["--max-frame-len", "131072", "--max-queue-bytes", "1048576"]);
        let request = |raw: &mut Raw, id: u64, op: Op, tail: &[u8]| {
            raw.send(&ClientMsg::Request { id, op }, tail);
            match raw.read_broker_msg().0 {
                BrokerMsg::Reply { id: got, body } if got == id => body,
                other => panic!("{other:?}"),
            }
        };
        let open = |raw: &mut Raw| {
            let op = Op::Open {
                name: "q".into(),
                kind: Kind::Queue {
                    capacity: 0,
                    auto_delete: false,
                    dead_letter: None,
                    slot_size: 0,
                },
            };
            match request(raw, 1, op, &[]) {
                Reply::Opened { handle } => handle,
                other => panic!("{other:?}"),
            }
        };
        let reserve = |raw: &mut Raw, handle, len| {
            let op = Op::Reserve {
                handle,
                credits: 8,
                len,
            };
            match request(raw, 2, op, &[]) {
                Reply::Accepted { credits, bytes } => (credits, bytes),
                other => panic!("{other:?}"),
            }
        };
        let send_many = |raw: &mut Raw, handle, items: &[Vec<u8>]| {
            let lens = items
                .iter()
                .map(|item| u32::try_from(item.len()).unwrap())
                .collect();
            raw.send(&ClientMsg::SendMany { handle, lens }, &items.concat());
        };

        // Credits for empty items carry 64 bytes each, and spending them on larger items
        // ends the connection: nothing of that send enters.
        let mut cheat = Raw::handshake(&broker.addr);
        let handle = open(&mut cheat);
        assert_eq!(reserve(&mut cheat, handle, 0), (8, 8 * 64));
        send_many(&mut cheat, handle, &[vec![1; 1000], vec![2; 1000]]);
        match cheat.read_to_close().as_slice() {
            [BrokerMsg::Fatal(err)] => {
                assert_eq!(err.code, ErrorCode::Protocol, "{err:?}");
                assert!(err.message.contains("bytes granted"), "{err:?}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }

        // Spent as granted, they are accepted without an answer.
        let mut honest = Raw::handshake(&broker.addr);
        let handle = open(&mut honest);
        assert_eq!(reserve(&mut honest, handle, 100), (8, 8 * 164));
        let items: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100]).collect();
        send_many(&mut honest, handle, &items);
        assert_eq!(request(&mut honest, 3, Op::Ping, &[]), Reply::Pong);
        let client = broker.client();
        let stats = queue_stats(&client, "q");
        assert_eq!((stats.ready, stats.bytes), (8, 8 * 164));
        // The cheat's grant went back with its connection; the honest one's is spent.
        assert_eq!(stats.reserved, 0);
    });
}

#[test]
fn credits_granted_for_small_items_do_not_carry_large_ones_past_the_budget() {
    watchdog(LIMIT, || {
        let broker =
            TestBroker::start_with(&["--max-frame-len", "131072", "--max-queue-bytes", "1048576"]);
        let client = broker.client();
        let queue = client.raw_queue("mixed", 0).unwrap();
        // Blocking puts of small items ask for (and get) credits for the puts after them.
        for _ in 0..10 {
            queue.put(b"0123456789").unwrap();
        }
        let large = vec![7u8; 65_536];
        let mut accepted = 0;
        while queue.put_timeout(&large, Duration::from_millis(20)).is_ok() {
            accepted += 1;
            assert!(accepted <= 15, "the budget was not enforced");
        }
        // 10 × (10 + 64) + 15 × (65,536 + 64) = 984,740 bytes; a 16th would pass 1 MiB.
        assert_eq!(accepted, 15);
        let stats = queue_stats(&client, "mixed");
        assert_eq!(stats.bytes, 984_740);
        assert_eq!(stats.ready, 25);
    });
}
