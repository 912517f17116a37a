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
            assert!(accepted <= 65, "the budget was not enforced");
        }
        assert_eq!(accepted, 65, "65 items of 1000 bytes fit in 65536");
        assert!(queue
            .put_timeout(&item, Duration::from_millis(20))
            .unwrap_err()
            .is_full());
        assert_eq!(queue_stats(&client, "unbounded").bytes, 65_000);
        // Under the budget, a smaller item still fits; once it is used up, the queue is full.
        assert!(!queue.is_full().unwrap());
        queue.put_nowait(&vec![7u8; 536]).unwrap();
        assert!(queue.is_full().unwrap());
        assert!(queue.put_nowait(b"x").unwrap_err().is_full());
        // Taking one frees its bytes.
        queue.set_prefetch(1);
        queue.get().unwrap();
        queue.put_nowait(&item).unwrap();
        assert_eq!(queue.len().unwrap(), 66);
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
        for _ in 0..8 {
            a.put_nowait(&item).unwrap();
        }
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
        assert_eq!(queue_stats(&client, "b").ready, 1);
    });
}

#[test]
fn budgets_smaller_than_a_frame_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = dir.path().join("bad.sock").to_string_lossy().into_owned();
    let Err(err) = spawn_broker(&addr, &["--max-queue-bytes", "1000"]) else {
        panic!("the broker started with a budget smaller than a frame");
    };
    assert!(err.contains("must be at least max_frame_len"), "{err}");
}
