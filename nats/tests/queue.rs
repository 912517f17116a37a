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

/// An item whose worker never settles it (as when the worker dies) goes to another after
/// the ack wait, marked as delivered before; one rejected comes again at once.
#[test]
fn unsettled_items_come_again_after_the_ack_wait_and_rejected_ones_at_once() {
    let server = NatsServer::start();
    run(LIMIT, async move {
        let connection = Connection::connect(&server.addr).await.unwrap();
        let queue = connection.queue("jobs", 0).await.unwrap();
        queue.put_nowait(item(7)).await.unwrap();
        let abandoned = queue.get_delivery_timeout(None).await.unwrap();
        let taken = Instant::now();
        drop(abandoned);
        let again = queue.get_delivery_timeout(None).await.unwrap();
        let after = taken.elapsed();
        assert_eq!(again.item(), &item(7));
        assert!(again.is_redelivered().unwrap());
        assert!(
            after >= ACK_WAIT - Duration::from_millis(100) && after < ACK_WAIT * 2,
            "redelivered after {after:?}"
        );
        again.reject().await.unwrap();
        let third = queue
            .get_delivery_timeout(Some(Duration::from_secs(2)))
            .await
            .unwrap();
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
