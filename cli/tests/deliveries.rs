//! Acknowledged deliveries: an item taken with `get_delivery` stays on its worker's account
//! until the work is done; rejected, dropped, or held by a worker that dies, it goes back
//! to the head of its queue, marked as redelivered.

mod common;

use std::time::Duration;

use common::*;
use ipcq::{Error, QueueOptions};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn an_acknowledged_delivery_leaves_the_queue_and_counts_for_join() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 0).unwrap();
        jobs.put_many(&[1, 2, 3]).unwrap();
        let held: Vec<_> = (0..3).map(|_| jobs.get_delivery().unwrap()).collect();
        assert_eq!(held.iter().map(|d| **d).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(held
            .iter()
            .all(|d| d.deliveries() == 1 && !d.is_redelivered()));
        // Held, not done: they count, and `join` waits for them.
        assert_eq!(jobs.len().unwrap(), 3);
        assert!(!jobs.join_timeout(Duration::from_millis(1)).unwrap());
        for delivery in held {
            delivery.ack().unwrap();
        }
        // Each acknowledgement was its task_done: no `task_done` call is needed.
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
        assert_eq!(jobs.len().unwrap(), 0);
        let stats = queue_stats(&client, "jobs");
        assert_eq!((stats.in_flight, stats.total_got), (0, 3));
    });
}

#[test]
fn a_rejected_delivery_goes_back_to_the_head_marked_redelivered() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<String>("jobs", 0).unwrap();
        jobs.set_prefetch(1);
        jobs.put_many(&["a".to_string(), "b".to_string()]).unwrap();
        let first = jobs.get_delivery().unwrap();
        assert_eq!(*first, "a");
        first.reject().unwrap();
        // At the head again, ahead of `b`, and it says so.
        let again = jobs.get_delivery().unwrap();
        assert_eq!(*again, "a");
        assert!(again.is_redelivered());
        assert_eq!(again.deliveries(), 2);
        again.ack().unwrap();
        let second = jobs.get_delivery().unwrap();
        assert_eq!((second.as_str(), second.deliveries()), ("b", 1));
        second.ack().unwrap();
        assert!(jobs.get_nowait().unwrap_err().is_empty());
    });
}

#[test]
fn a_delivery_dropped_without_an_answer_goes_back_to_the_head() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 0).unwrap();
        jobs.set_prefetch(1);
        jobs.put_many(&[7, 8]).unwrap();
        drop(jobs.get_delivery().unwrap());
        // Another client sees it first, redelivered.
        let other = broker.client().queue::<u64>("jobs", 0).unwrap();
        let delivery = other.get_delivery().unwrap();
        assert_eq!((*delivery, delivery.deliveries()), (7, 2));
        delivery.ack().unwrap();
        assert_eq!(other.get().unwrap(), 8);
    });
}

#[test]
fn held_deliveries_count_towards_the_capacity() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 2).unwrap();
        jobs.put(&1).unwrap();
        jobs.put(&2).unwrap();
        let one = jobs.get_delivery().unwrap();
        let two = jobs.get_delivery().unwrap();
        // Both are out, and the queue is still full: a returning item never overflows it.
        assert!(jobs.put_nowait(&3).unwrap_err().is_full());
        one.ack().unwrap();
        jobs.put_timeout(&3, Duration::from_secs(10)).unwrap();
        two.reject().unwrap();
        assert_eq!(jobs.len().unwrap(), 2);
        assert_eq!(jobs.get().unwrap(), 2);
        assert_eq!(jobs.get().unwrap(), 3);
    });
}

#[test]
fn a_killed_worker_gives_its_deliveries_back_in_order_marked_redelivered() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 0).unwrap();
        jobs.put_many(&(0..10).collect::<Vec<u64>>()).unwrap();
        let mut worker = helper(&["hold-deliveries", &broker.addr, "jobs", "0", "4"]);
        expect_line(&mut worker, "holding");
        // Taken, not done: still counted, and the broker says who holds them.
        assert_eq!(jobs.len().unwrap(), 10);
        let holders = queue_stats(&client, "jobs").holders;
        assert_eq!(
            holders
                .iter()
                .map(|h| (h.pid, h.in_flight))
                .collect::<Vec<_>>(),
            [(worker.id(), 4)]
        );
        let out = cli(&broker.addr, &["stats"]);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains(&format!("{}:4", worker.id())), "{table}");
        kill(&mut worker);
        worker.wait().unwrap();
        wait_until(&client, "jobs", "the deliveries to come back", |s| {
            s.in_flight == 0
        });
        jobs.set_prefetch(1);
        let again: Vec<_> = (0..10).map(|_| jobs.get_delivery().unwrap()).collect();
        assert_eq!(
            again.iter().map(|d| **d).collect::<Vec<_>>(),
            (0..10).collect::<Vec<u64>>(),
            "back at the head, in their order"
        );
        let counts: Vec<u32> = again.iter().map(|d| d.deliveries()).collect();
        assert_eq!(counts, [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
        // The broker counts them, and `ipcq stats` shows it.
        assert_eq!(queue_stats(&client, "jobs").redelivered, 4);
        let out = cli(&broker.addr, &["stats", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["objects"][0]["redelivered"], 4);
        for delivery in again {
            delivery.ack().unwrap();
        }
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
    });
}

#[test]
fn an_item_that_does_not_decode_is_not_lost() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let raw = client.raw_queue("work", 0).unwrap();
        let typed = client.queue::<Option<u32>>("work", 0).unwrap();
        typed.set_prefetch(1);
        raw.put(b"hello").unwrap();
        raw.put(b"again").unwrap();
        // A plain get took it: the error carries its bytes.
        match typed.get() {
            Err(Error::Undecodable { item, .. }) => assert_eq!(&item[..], b"hello"),
            other => panic!("expected Undecodable, got {other:?}"),
        }
        // An acknowledging get gives it back to the head.
        match typed.get_delivery() {
            Err(Error::Undecodable { item, .. }) => assert_eq!(&item[..], b"again"),
            other => panic!("expected Undecodable, got {other:?}"),
        }
        let back = raw.get_delivery().unwrap();
        assert_eq!((&back[..], back.deliveries()), (&b"again"[..], 2));
        back.ack().unwrap();
        assert_eq!(raw.len().unwrap(), 0);
    });
}

#[test]
fn the_tokio_client_has_the_same_deliveries() {
    on_tokio(LIMIT, || async {
        let broker = TestBroker::start();
        let client = ipcq::tokio::Client::connect(&broker.addr).await.unwrap();
        let jobs = client.queue::<u64>("jobs", 0).await.unwrap();
        jobs.set_prefetch(1);
        jobs.put_many(&[1, 2]).await.unwrap();
        let first = jobs.get_delivery().await.unwrap();
        drop(first);
        let again = jobs.get_delivery().await.unwrap();
        assert_eq!((*again, again.deliveries()), (1, 2));
        again.ack().unwrap();
        let second = jobs.get_delivery().await.unwrap();
        second.ack().unwrap();
        assert!(jobs.join_timeout(Duration::from_secs(10)).await.unwrap());
        assert_eq!(jobs.len().await.unwrap(), 0);
    });
}

fn with_dead_letter(max_deliveries: u32) -> QueueOptions {
    QueueOptions::new()
        .dead_letter("jobs.dead")
        .max_deliveries(max_deliveries)
}

#[test]
fn past_its_delivery_limit_an_item_goes_to_the_dead_letter_queue() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client
            .queue_with::<u64>("jobs", with_dead_letter(2))
            .unwrap();
        jobs.set_prefetch(1);
        jobs.put(&9).unwrap();
        // Delivered twice, rejected twice: then it stops looping.
        jobs.get_delivery().unwrap().reject().unwrap();
        let second = jobs.get_delivery().unwrap();
        assert_eq!(second.deliveries(), 2);
        second.reject().unwrap();
        assert!(jobs.get_nowait().unwrap_err().is_empty());
        // An ordinary queue anyone can read, and the item keeps its count.
        let dead = client.queue::<u64>("jobs.dead", 0).unwrap();
        let item = dead.get_delivery().unwrap();
        assert_eq!((*item, item.deliveries()), (9, 3));
        item.ack().unwrap();
        let stats = queue_stats(&client, "jobs");
        assert_eq!(
            (stats.dead_lettered, stats.in_flight, stats.ready),
            (1, 0, 0)
        );
        // Moved out, it counts as done for `join`.
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
        let out = cli(&broker.addr, &["get", "jobs.dead", "--timeout", "0.01"]);
        assert!(!out.status.success(), "the dead-letter queue is empty now");
    });
}

#[test]
fn a_worker_sends_what_it_cannot_do_to_the_dead_letters() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client
            .queue_with::<u64>("jobs", with_dead_letter(0))
            .unwrap();
        jobs.put_many(&[1, 2]).unwrap();
        jobs.get_delivery().unwrap().dead_letter().unwrap();
        let dead = client.queue::<u64>("jobs.dead", 0).unwrap();
        assert_eq!(dead.get().unwrap(), 1);
        // Without a limit, what comes back goes to the head as usual.
        jobs.get_delivery().unwrap().reject().unwrap();
        let again = jobs.get_delivery().unwrap();
        assert_eq!((*again, again.deliveries()), (2, 2));
        again.ack().unwrap();
        // A queue without a dead-letter queue takes it back at its head.
        let plain = client.queue::<u64>("plain", 0).unwrap();
        plain.put(&3).unwrap();
        plain.get_delivery().unwrap().dead_letter().unwrap();
        assert_eq!(plain.get().unwrap(), 3);
    });
}

#[test]
fn an_item_that_does_not_decode_goes_to_the_dead_letters() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client
            .queue_with::<Option<u32>>("jobs", with_dead_letter(0))
            .unwrap();
        client
            .raw_queue_with("jobs", with_dead_letter(0))
            .unwrap()
            .put(b"hello")
            .unwrap();
        assert!(matches!(
            jobs.get_delivery(),
            Err(Error::Undecodable { .. })
        ));
        let dead = client.raw_queue("jobs.dead", 0).unwrap();
        assert_eq!(&dead.get().unwrap()[..], b"hello");
        assert!(jobs.get_nowait().unwrap_err().is_empty());
    });
}

#[test]
fn dead_letter_options_are_checked() {
    let broker = TestBroker::start();
    let client = broker.client();
    client
        .queue_with::<u64>("jobs", with_dead_letter(2))
        .unwrap();
    // Every opener asks for the same.
    let other = QueueOptions::new().dead_letter("elsewhere");
    assert!(client
        .queue_with::<u64>("jobs", other)
        .unwrap_err()
        .is_conflict());
    assert!(client.queue::<u64>("jobs", 0).unwrap_err().is_conflict());
    // A limit needs somewhere to send items; a queue is not its own dead-letter queue; a
    // lock cannot be one.
    let limit_only = QueueOptions::new().max_deliveries(3);
    assert!(matches!(
        client.queue_with::<u64>("other", limit_only),
        Err(Error::Invalid(_))
    ));
    let own = QueueOptions::new().dead_letter("self");
    assert!(matches!(
        client.queue_with::<u64>("self", own),
        Err(Error::Invalid(_))
    ));
    client.lock("a-lock").unwrap();
    let to_lock = QueueOptions::new().dead_letter("a-lock");
    assert!(client
        .queue_with::<u64>("third", to_lock)
        .unwrap_err()
        .is_conflict());
}

#[test]
fn a_lease_that_runs_out_gives_the_item_to_another_and_a_late_ack_is_an_error() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let (hung, other) = (broker.client(), broker.client());
        let jobs = hung.queue::<u64>("jobs", 0).unwrap();
        jobs.set_prefetch(1);
        jobs.put(&1).unwrap();
        let mut held = jobs.get_delivery().unwrap();
        held.lease(Duration::from_millis(200)).unwrap();
        // The holder hangs: once the lease runs out, another worker gets the job.
        let theirs = other.queue::<u64>("jobs", 0).unwrap();
        theirs.set_prefetch(1);
        let again = theirs
            .get_delivery_timeout(Duration::from_secs(30))
            .unwrap();
        assert_eq!((*again, again.deliveries()), (1, 2));
        // The hung worker wakes up and acknowledges: too late, and it says so.
        assert!(matches!(held.ack(), Err(Error::LeaseExpired(_))));
        again.ack().unwrap();
        // Asked on the acknowledging connection: answered after its acknowledgement.
        assert_eq!(theirs.len().unwrap(), 0);
        let stats = queue_stats(&hung, "jobs");
        assert_eq!(
            (stats.total_got, stats.in_flight, stats.redelivered),
            (1, 0, 1)
        );
    });
}

#[test]
fn an_extended_lease_keeps_the_item_and_a_queue_can_lease_every_delivery() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let (worker, other) = (broker.client(), broker.client());
        let jobs = worker.queue::<u64>("jobs", 0).unwrap();
        jobs.set_prefetch(1);
        jobs.set_lease(Some(Duration::from_millis(300)));
        jobs.put_many(&[1, 2]).unwrap();
        // Leased at once by the queue's setting; still at work, the worker extends it.
        let mut held = jobs.get_delivery().unwrap();
        held.lease(Duration::from_secs(60)).unwrap();
        let theirs = other.queue::<u64>("jobs", 0).unwrap();
        theirs.set_prefetch(1);
        // The other worker gets the second job, never the first.
        let second = theirs.get_delivery().unwrap();
        assert_eq!(*second, 2);
        second.ack().unwrap();
        let err = theirs
            .get_delivery_timeout(Duration::from_millis(800))
            .unwrap_err();
        assert!(err.is_empty(), "{err}");
        held.ack().unwrap();
        assert_eq!(jobs.len().unwrap(), 0);
        assert_eq!(queue_stats(&worker, "jobs").total_got, 2);
    });
}

#[test]
fn the_tokio_client_learns_of_an_expired_lease_when_it_asks() {
    on_tokio(LIMIT, || async {
        let broker = TestBroker::start();
        let client = ipcq::tokio::Client::connect(&broker.addr).await.unwrap();
        let jobs = client.queue::<u64>("jobs", 0).await.unwrap();
        jobs.set_prefetch(1);
        jobs.put(&1).await.unwrap();
        let mut first = jobs.get_delivery().await.unwrap();
        first.lease(Duration::from_millis(100)).unwrap();
        // Another worker gets it once the lease runs out.
        let addr = broker.addr.clone();
        let again = tokio::task::spawn_blocking(move || {
            let other = ipcq::Client::connect(&addr).unwrap();
            let jobs = other.queue::<u64>("jobs", 0).unwrap();
            jobs.set_prefetch(1);
            let again = jobs.get_delivery_timeout(Duration::from_secs(30)).unwrap();
            let seen = (*again, again.deliveries());
            again.ack().unwrap();
            seen
        })
        .await
        .unwrap();
        assert_eq!(again, (1, 2));
        assert!(matches!(
            first.ack_checked().await,
            Err(Error::LeaseExpired(_))
        ));
        // A delivery still held: acknowledged, and the broker says so.
        jobs.put(&2).await.unwrap();
        let second = jobs.get_delivery().await.unwrap();
        second.ack_checked().await.unwrap();
        assert_eq!(jobs.len().await.unwrap(), 0);
    });
}
