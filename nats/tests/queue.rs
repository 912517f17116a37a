//! Queues on a real nats-server with JetStream: order, the bound, waiting puts and gets,
//! acknowledged deliveries and their redelivery.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{run, NatsServer};
use ipcq_nats::{Connection, Error, ACK_WAIT};

const LIMIT: Duration = Duration::from_secs(60);

fn item(i: u32) -> Bytes {
    Bytes::from(i.to_le_bytes().to_vec())
}

#[test]
fn items_come_out_in_order_and_len_is_exact() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        let queue = connection.queue("fifo", 100).await.unwrap();
        for i in 0..50 {
            queue.put_nowait(item(i)).await.unwrap();
        }
        assert_eq!(queue.len().await.unwrap(), 50);
        for i in 0..50 {
            assert_eq!(queue.get_timeout(None).await.unwrap(), item(i));
        }
        assert!(queue.is_empty().await.unwrap());
        let start = Instant::now();
        let err = queue
            .get_timeout(Some(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Empty(_)), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(200));
        let err = queue.get_timeout(Some(Duration::ZERO)).await.unwrap_err();
        assert!(matches!(err, Error::Empty(_)), "{err}");
    });
}

/// The bound counts items handed out and not yet acknowledged, as the local broker's does.
#[test]
fn the_bound_counts_unacknowledged_items() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        let queue = connection.queue("bounded", 3).await.unwrap();
        for i in 0..3 {
            queue.put_nowait(item(i)).await.unwrap();
        }
        let err = queue.put_nowait(item(3)).await.unwrap_err();
        assert!(matches!(err, Error::Full(_)), "{err}");
        let delivery = queue.get_delivery_timeout(None).await.unwrap();
        assert_eq!(delivery.item(), &item(0));
        assert!(!delivery.is_redelivered().unwrap());
        // In a worker's hands: still in the queue, still taking room.
        assert_eq!(queue.len().await.unwrap(), 3);
        assert!(matches!(
            queue.put_nowait(item(3)).await,
            Err(Error::Full(_))
        ));
        delivery.ack().await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 2);
        queue.put_nowait(item(3)).await.unwrap();
        let err = queue
            .put_timeout(item(4), Some(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Full(_)), "{err}");
    });
}

#[test]
fn a_put_waits_for_room_and_a_get_for_an_item() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        let queue = connection.queue("waits", 1).await.unwrap();
        queue.put_nowait(item(1)).await.unwrap();
        let putter = {
            let queue = connection.queue("waits", 1).await.unwrap();
            tokio::spawn(async move { queue.put_timeout(item(2), None).await })
        };
        assert_eq!(queue.get_timeout(None).await.unwrap(), item(1));
        putter.await.unwrap().unwrap();
        assert_eq!(queue.get_timeout(None).await.unwrap(), item(2));
        // A get that waits is served by a later put.
        let getter = {
            let queue = connection.queue("waits", 1).await.unwrap();
            tokio::spawn(async move { queue.get_timeout(None).await })
        };
        queue.put_timeout(item(3), None).await.unwrap();
        assert_eq!(getter.await.unwrap().unwrap(), item(3));
    });
}

/// A rejected item, and one dropped unsettled, come again at once.
#[test]
fn rejected_and_dropped_deliveries_come_again_at_once() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        let queue = connection.queue("jobs", 0).await.unwrap();
        queue.put_nowait(item(7)).await.unwrap();
        let first = queue.get_delivery_timeout(None).await.unwrap();
        first.reject().await.unwrap();
        let again = Some(ACK_WAIT / 2);
        let second = queue.get_delivery_timeout(again).await.unwrap();
        assert_eq!(second.item(), &item(7));
        assert!(second.is_redelivered().unwrap());
        drop(second);
        let third = queue.get_delivery_timeout(again).await.unwrap();
        assert_eq!(third.item(), &item(7));
        third.ack().await.unwrap();
        assert!(queue.is_empty().await.unwrap());
    });
}

#[test]
fn another_capacity_is_a_conflict_and_bad_names_are_refused() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        connection.queue("sized", 10).await.unwrap();
        connection.queue("sized", 10).await.unwrap();
        let err = connection.queue("sized", 11).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        for name in ["", "a.b", "a b", "a*", "a>"] {
            let err = connection.queue(name, 0).await.unwrap_err();
            assert!(matches!(err, Error::BadName(_)), "{name:?}: {err}");
        }
    });
}

/// Four producers and four consumers on a queue of 16: the stream never holds more than
/// its capacity (items handed out and not yet acknowledged included), and every item
/// arrives exactly once.
#[test]
fn the_bound_holds_with_four_producers_and_four_consumers() {
    const PER_PRODUCER: u32 = 500;
    const CAPACITY: usize = 16;
    let server = NatsServer::start();
    let addr = server.addr.clone();
    run(Duration::from_secs(120), async move {
        let open = || {
            let addr = addr.clone();
            async move {
                Connection::connect(&addr)
                    .await
                    .unwrap()
                    .queue("busy", CAPACITY)
                    .await
                    .unwrap()
            }
        };
        let producers: Vec<_> = (0..4u32)
            .map(|p| {
                let queue = open();
                tokio::spawn(async move {
                    let queue = queue.await;
                    for i in p * PER_PRODUCER..(p + 1) * PER_PRODUCER {
                        queue.put_timeout(item(i), None).await.unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let queue = open();
                tokio::spawn(async move {
                    let queue = queue.await;
                    let mut got = Vec::new();
                    loop {
                        match queue
                            .get_delivery_timeout(Some(Duration::from_secs(3)))
                            .await
                        {
                            Ok(delivery) => {
                                got.push(delivery.item().clone());
                                delivery.ack().await.unwrap();
                            }
                            Err(Error::Empty(_)) => return got,
                            Err(err) => panic!("{err}"),
                        }
                    }
                })
            })
            .collect();
        let watcher = open().await;
        let mut most = 0;
        let mut samples = 0;
        while producers.iter().any(|p| !p.is_finished()) {
            let len = watcher.len().await.unwrap();
            assert!(len <= CAPACITY, "{len} items in a queue of {CAPACITY}");
            most = most.max(len);
            samples += 1;
        }
        for producer in producers {
            producer.await.unwrap();
        }
        let mut all = Vec::new();
        for consumer in consumers {
            all.extend(consumer.await.unwrap());
        }
        all.sort();
        let expected: Vec<Bytes> = {
            let mut items: Vec<Bytes> = (0..4 * PER_PRODUCER).map(item).collect();
            items.sort();
            items
        };
        assert_eq!(all, expected, "lost or duplicated items");
        assert!(
            most > 0,
            "the watcher never saw an item ({samples} samples)"
        );
        println!("at most {most} of {CAPACITY} in the stream over {samples} samples");
    });
}

/// `close` is seen by every client: puts fail at once, gets take what is left and then
/// fail, and a get waiting on the empty queue is told within the longest pull.
#[test]
fn close_fails_puts_drains_gets_and_wakes_waiters() {
    let server = NatsServer::start();
    let addr = server.addr.clone();
    run(LIMIT, async move {
        let connection = Connection::connect(&addr).await.unwrap();
        let queue = connection.queue("closing", 10).await.unwrap();
        let idle = Connection::connect(&addr)
            .await
            .unwrap()
            .queue("idle", 0)
            .await
            .unwrap();
        let waiting = tokio::spawn(async move { idle.get_timeout(None).await });
        for i in 0..3 {
            queue.put_nowait(item(i)).await.unwrap();
        }
        let other = Connection::connect(&addr)
            .await
            .unwrap()
            .queue("closing", 10)
            .await
            .unwrap();
        other.close().await.unwrap();
        other.close().await.unwrap();
        assert!(queue.is_closed().await.unwrap());
        let err = queue.put_nowait(item(3)).await.unwrap_err();
        assert!(matches!(err, Error::Closed(_)), "{err}");
        let err = queue.put_timeout(item(3), None).await.unwrap_err();
        assert!(matches!(err, Error::Closed(_)), "{err}");
        for i in 0..3 {
            assert_eq!(queue.get_timeout(None).await.unwrap(), item(i));
        }
        let err = queue.get_timeout(None).await.unwrap_err();
        assert!(matches!(err, Error::Closed(_)), "{err}");
        let err = queue.get_timeout(Some(Duration::ZERO)).await.unwrap_err();
        assert!(matches!(err, Error::Closed(_)), "{err}");
        // Reopened, it stays closed.
        let again = connection.queue("closing", 10).await.unwrap();
        assert!(matches!(
            again.put_nowait(item(4)).await,
            Err(Error::Closed(_))
        ));
        // The waiter on another queue is untouched; closing that one tells it.
        assert!(!waiting.is_finished());
        let idle = connection.queue("idle", 0).await.unwrap();
        let closed_at = Instant::now();
        idle.close().await.unwrap();
        let err = waiting.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Closed(_)), "{err}");
        assert!(closed_at.elapsed() <= ipcq_nats::LONGEST_PULL + Duration::from_secs(1));
    });
}

#[test]
fn queues_are_listed_looked_up_and_removed() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        assert_eq!(connection.lookup("listed").await.unwrap(), None);
        let queue = connection.queue("listed", 5).await.unwrap();
        connection.queue("another", 0).await.unwrap();
        queue.put_nowait(item(1)).await.unwrap();
        queue.put_nowait(item(2)).await.unwrap();
        let held = queue.get_delivery_timeout(None).await.unwrap();
        let info = connection.lookup("listed").await.unwrap().unwrap();
        assert_eq!(
            (info.capacity, info.len, info.in_flight, info.closed),
            (5, 2, 1, false)
        );
        held.ack().await.unwrap();
        let names: Vec<String> = connection
            .queues()
            .await
            .unwrap()
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(names, ["another", "listed"]);
        connection.remove("listed").await.unwrap();
        assert_eq!(connection.lookup("listed").await.unwrap(), None);
        let err = connection.remove("listed").await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    });
}

/// An item delivered more than the limit goes to the dead-letter queue instead of a
/// fourth delivery; one sent there by its worker goes at once; every opener must agree.
#[test]
fn dead_letters_past_the_limit_or_on_request() {
    use ipcq_nats::QueueOptions;
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        let options = QueueOptions::new().dead_letter("failed").max_deliveries(3);
        let queue = connection.queue_with("risky", &options).await.unwrap();
        queue.put_nowait(item(1)).await.unwrap();
        for _ in 0..3 {
            let delivery = queue.get_delivery_timeout(None).await.unwrap();
            assert_eq!(delivery.item(), &item(1));
            delivery.reject().await.unwrap();
        }
        queue.put_nowait(item(2)).await.unwrap();
        // The fourth would be one too many: item 1 is dead-lettered, item 2 comes.
        let next = queue.get_delivery_timeout(None).await.unwrap();
        assert_eq!(next.item(), &item(2));
        next.dead_letter().await.unwrap();
        assert!(queue.is_empty().await.unwrap());
        let failed = connection.queue("failed", 0).await.unwrap();
        assert_eq!(failed.get_timeout(None).await.unwrap(), item(1));
        assert_eq!(failed.get_timeout(None).await.unwrap(), item(2));
        // Another limit, or none, is a conflict; a queue without one cannot dead-letter.
        let err = connection
            .queue_with("risky", &QueueOptions::new().dead_letter("failed"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        let plain = connection.queue("plain", 0).await.unwrap();
        plain.put_nowait(item(3)).await.unwrap();
        let delivery = plain.get_delivery_timeout(None).await.unwrap();
        let err = delivery.dead_letter().await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert_eq!(
            plain
                .get_timeout(Some(Duration::from_secs(2)))
                .await
                .unwrap(),
            item(3)
        );
    });
}
