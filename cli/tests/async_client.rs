//! The tokio client against a real broker: the same semantics as the blocking client, and
//! futures that can be dropped at any await point without losing or duplicating anything.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use ipcq::stats::ObjectDetail;
use ipcq::tokio::Client as AsyncClient;
use ipcq::Error;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `test` on a two-thread runtime under the watchdog.
fn run<F: std::future::Future<Output = ()> + Send + 'static>(
    test: impl FnOnce() -> F + Send + 'static,
) {
    on_tokio(LIMIT, test);
}

/// A pseudo-random sequence, so that timeouts fall at every point of a request's life.
fn jitter(seed: &mut u64, max_micros: u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_micros(*seed % max_micros)
}

#[test]
fn async_producers_and_blocking_consumer_processes_share_a_queue() {
    run(|| async {
        let broker = TestBroker::start();
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        let queue = client.queue::<u64>("mixed", 64).await.unwrap();
        let consumers: Vec<_> = (0..3)
            .map(|_| helper(&["consume", &broker.addr, "mixed", "64"]))
            .collect();
        // Their output is read as it comes, so that no consumer blocks on a full pipe.
        let outputs: Vec<_> = consumers
            .into_iter()
            .map(|c| tokio::task::spawn_blocking(move || finish(c)))
            .collect();
        let per_task = scaled(20_000);
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for id in p * per_task..(p + 1) * per_task {
                        queue.put(&id).await.unwrap();
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.await.unwrap();
        }
        queue.close().await.unwrap();
        let mut received = Vec::new();
        for output in outputs {
            let output = output.await.unwrap();
            received.extend(output.lines().map(|l| l.parse::<u64>().unwrap()));
        }
        let distinct: BTreeSet<u64> = received.iter().copied().collect();
        assert_eq!(received.len() as u64, 4 * per_task, "duplicates or losses");
        assert_eq!(distinct, (0..4 * per_task).collect());
    });
}

#[test]
fn every_operation_of_the_blocking_client_is_there() {
    run(|| async {
        let broker = TestBroker::start();
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        client.ping().await.unwrap();
        let queue = client.queue::<String>("ops", 2).await.unwrap();
        assert_eq!(queue.capacity(), Some(2));
        queue.put(&"a".into()).await.unwrap();
        queue.put_nowait(&"b".into()).await.unwrap();
        assert!(queue.is_full().await.unwrap());
        assert!(matches!(
            queue.put_nowait(&"c".into()).await,
            Err(Error::Full)
        ));
        let short = Duration::from_millis(20);
        assert!(matches!(
            queue.put_timeout(&"c".into(), short).await,
            Err(Error::Full)
        ));
        assert_eq!(queue.len().await.unwrap(), 2);
        assert_eq!(queue.get_many(10).await.unwrap(), ["a", "b"]);
        assert!(matches!(queue.get_nowait().await, Err(Error::Empty)));
        assert!(matches!(queue.get_timeout(short).await, Err(Error::Empty)));
        queue
            .put_many(&["x".to_string(), "y".to_string()])
            .await
            .unwrap();
        assert_eq!(queue.get_many_timeout(1, short).await.unwrap(), ["x"]);
        assert_eq!(queue.get().await.unwrap(), "y");
        // Joinable: four items put so far.
        for _ in 0..4 {
            assert!(!queue.join_timeout(Duration::ZERO).await.unwrap());
            queue.task_done().await.unwrap();
        }
        queue.join().await.unwrap();
        assert!(matches!(queue.task_done().await, Err(Error::Invalid(_))));
        queue.close().await.unwrap();
        assert!(queue.is_closed().await.unwrap());
        assert!(matches!(queue.get().await, Err(Error::Closed)));
        assert!(matches!(queue.put(&"z".into()).await, Err(Error::Closed)));
        assert!(matches!(
            client.queue::<u8>("ops", 3).await,
            Err(Error::Conflict(_))
        ));
        let big = vec![0u8; client.max_frame_len()];
        let raw = client.raw_queue("raw", 0).await.unwrap();
        assert!(matches!(raw.put(&big).await, Err(Error::TooLarge { .. })));

        // Pipes: both ends, EOF when one closes.
        let zero = client.pipe::<u32>("p", ipcq::End::Zero).await.unwrap();
        let other = AsyncClient::connect(&broker.addr).await.unwrap();
        let one = other.pipe::<u32>("p", ipcq::End::One).await.unwrap();
        zero.send(&1).await.unwrap();
        assert!(one.poll(LIMIT).await.unwrap());
        assert_eq!(one.recv().await.unwrap(), 1);
        one.send(&2).await.unwrap();
        assert_eq!(zero.recv_timeout(LIMIT).await.unwrap(), 2);
        assert!(matches!(
            client.pipe::<u32>("p", ipcq::End::One).await,
            Err(Error::Busy(_))
        ));
        one.close().await.unwrap();
        assert!(matches!(zero.recv().await, Err(Error::Closed)));

        // Lock, semaphore, event, barrier.
        let lock = client.lock("l").await.unwrap();
        let rival = other.lock("l").await.unwrap();
        let guard = lock.lock().await.unwrap();
        assert!(!guard.owner_died());
        assert!(rival.try_acquire().await.unwrap().is_none());
        assert!(rival.acquire_timeout(short).await.unwrap().is_none());
        drop(guard);
        assert!(rival.acquire().await.is_ok());
        assert!(matches!(lock.release().await, Err(Error::Invalid(_))));
        rival.release().await.unwrap();
        let sem = client.semaphore("s", 2).await.unwrap();
        let a = sem.enter().await.unwrap();
        let _ = sem.acquire().await.unwrap();
        assert!(sem.try_acquire().await.unwrap().is_none());
        drop(a);
        sem.release().await.unwrap();
        assert!(sem.try_acquire().await.unwrap().is_some());
        let event = client.event("e").await.unwrap();
        assert!(!event.is_set().await.unwrap());
        assert!(!event.wait_timeout(short).await.unwrap());
        let waiter = {
            let event = other.event("e").await.unwrap();
            tokio::spawn(async move { event.wait().await })
        };
        event.set().await.unwrap();
        waiter.await.unwrap().unwrap();
        event.clear().await.unwrap();
        assert!(!event.is_set().await.unwrap());
        let barrier = client.barrier("b", 2).await.unwrap();
        let party = other.barrier("b", 2).await.unwrap();
        let (x, y) = tokio::join!(barrier.wait(), party.wait());
        let mut places = [x.unwrap(), y.unwrap()];
        places.sort_unstable();
        assert_eq!(places, [0, 1]);
        assert!(matches!(
            barrier.wait_timeout(short).await,
            Err(Error::Broken(_))
        ));
        barrier.reset().await.unwrap();

        client.remove("raw").await.unwrap();
        assert!(matches!(
            client.remove("raw").await,
            Err(Error::NotFound(_))
        ));
        assert!(!client.stats().await.unwrap().is_empty());
    });
}

/// Gets that time out at random points of their life, while a producer puts: every item
/// arrives exactly once, and in order.
#[test]
fn dropped_gets_lose_nothing_and_keep_order() {
    run(|| async {
        let broker = TestBroker::start();
        let n = scaled(20_000);
        let producer = {
            let client = AsyncClient::connect(&broker.addr).await.unwrap();
            let queue = client.queue::<u64>("q", 16).await.unwrap();
            tokio::spawn(async move {
                for i in 0..n {
                    queue.put(&i).await.unwrap();
                }
            })
        };
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        let queue = client.queue::<u64>("q", 16).await.unwrap();
        let (mut got, mut dropped, mut seed) = (Vec::new(), 0u64, 0x9e37_79b9_7f4a_7c15);
        while (got.len() as u64) < n {
            match timeout(jitter(&mut seed, 200), queue.get()).await {
                Ok(item) => got.push(item.unwrap()),
                Err(_) => dropped += 1,
            }
        }
        producer.await.unwrap();
        assert!(dropped > 0, "no get was dropped: the test tested nothing");
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        assert!(matches!(queue.get_nowait().await, Err(Error::Empty)));
        let stats = queue_stats_async(&client, "q").await;
        assert_eq!((stats.total_got, stats.in_flight, stats.getters), (n, 0, 0));
    });
}

/// `select!` over two queues' gets, 10k times, while producers fill both: the losing get
/// of each round is dropped, and still nothing is lost or duplicated.
#[test]
fn select_over_two_queues_loses_nothing() {
    run(|| async {
        let broker = TestBroker::start();
        let per_queue = scaled(5_000);
        let producer = AsyncClient::connect(&broker.addr).await.unwrap();
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let producer = producer.clone();
                tokio::spawn(async move {
                    let queue = producer.queue::<u64>(name, 8).await.unwrap();
                    for i in 0..per_queue {
                        queue.put(&i).await.unwrap();
                    }
                })
            })
            .collect();
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        let a = client.queue::<u64>("a", 8).await.unwrap();
        let b = client.queue::<u64>("b", 8).await.unwrap();
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        for _ in 0..2 * per_queue {
            tokio::select! {
                item = a.get() => from_a.push(item.unwrap()),
                item = b.get() => from_b.push(item.unwrap()),
            }
        }
        for producer in producers {
            producer.await.unwrap();
        }
        assert_eq!(from_a, (0..per_queue).collect::<Vec<_>>());
        assert_eq!(from_b, (0..per_queue).collect::<Vec<_>>());
        for name in ["a", "b"] {
            let stats = queue_stats_async(&client, name).await;
            assert_eq!(
                (stats.total_got, stats.ready, stats.in_flight, stats.getters),
                (per_queue, 0, 0, 0),
                "{name}"
            );
        }
    });
}

/// Puts on a full queue that time out at random points: exactly the puts that returned
/// `Ok` arrive, in order; a dropped put put nothing.
#[test]
fn dropped_puts_put_nothing() {
    run(|| async {
        let broker = TestBroker::start();
        let n = 3_000u64;
        let done = u64::MAX;
        let consumer = {
            let client = AsyncClient::connect(&broker.addr).await.unwrap();
            let queue = client.queue::<u64>("full", 2).await.unwrap();
            queue.set_prefetch(1);
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let item = queue.get().await.unwrap();
                    if item == done {
                        return (got, client);
                    }
                    got.push(item);
                    // A slow consumer keeps the queue full.
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
            })
        };
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        let queue = client.queue::<u64>("full", 2).await.unwrap();
        let (mut put, mut dropped, mut seed) = (Vec::new(), 0u64, 0x2545_f491_4f6c_dd1d);
        for i in 0..n {
            match timeout(jitter(&mut seed, 150), queue.put(&i)).await {
                Ok(result) => {
                    result.unwrap();
                    put.push(i);
                }
                Err(_) => dropped += 1,
            }
        }
        queue.put(&done).await.unwrap();
        let (got, consumer) = consumer.await.unwrap();
        assert!(
            dropped > 0 && !put.is_empty(),
            "put {} dropped {dropped}",
            put.len()
        );
        assert_eq!(got, put);
        // Asked on the consumer's connection, after its last acknowledgement.
        let stats = queue_stats_async(&consumer, "full").await;
        assert_eq!((stats.putters, stats.in_flight, stats.ready), (0, 0, 0));
    });
}

/// Acquires that are dropped while a rival takes and gives the lock back: the lock never
/// ends up held by nobody's guard.
#[test]
fn dropped_acquires_hold_nothing() {
    run(|| async {
        let broker = TestBroker::start();
        let rival = {
            let client = AsyncClient::connect(&broker.addr).await.unwrap();
            let lock = client.lock("l").await.unwrap();
            tokio::spawn(async move {
                for _ in 0..2_000 {
                    let guard = lock.lock().await.unwrap();
                    tokio::task::yield_now().await;
                    drop(guard);
                }
            })
        };
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        let lock = client.lock("l").await.unwrap();
        let (mut held, mut dropped, mut seed) = (0, 0, 0x1234_5678_9abc_def1);
        while !rival.is_finished() {
            match timeout(jitter(&mut seed, 100), lock.lock()).await {
                Ok(guard) => {
                    drop(guard.unwrap());
                    held += 1;
                }
                Err(_) => dropped += 1,
            }
        }
        rival.await.unwrap();
        assert!(dropped > 0 && held > 0, "held {held} dropped {dropped}");
        // Releases and withdrawals are settled in order on this connection: after a round
        // trip, nothing is held or parked.
        client.ping().await.unwrap();
        let third = AsyncClient::connect(&broker.addr).await.unwrap();
        let free = third.lock("l").await.unwrap().try_acquire().await.unwrap();
        assert!(free.is_some(), "a dropped acquire kept the lock");
        assert!(!free.unwrap().owner_died());
    });
}

/// Dropped barrier waits are not counted and do not break the barrier; dropped event
/// waits and joins leave nothing parked.
#[test]
fn dropped_waits_leave_no_trace() {
    run(|| async {
        let broker = TestBroker::start();
        let client = AsyncClient::connect(&broker.addr).await.unwrap();
        let barrier = client.barrier("b", 2).await.unwrap();
        let event = client.event("e").await.unwrap();
        let queue = client.queue::<u8>("j", 0).await.unwrap();
        queue.put(&1).await.unwrap();
        // Waits dropped at random points of their life, 300 times each; the event's waits
        // race a task that sets and clears it, so some are answered as they are dropped.
        let toggler = {
            let other = AsyncClient::connect(&broker.addr).await.unwrap();
            let event = other.event("e").await.unwrap();
            tokio::spawn(async move {
                for _ in 0..300 {
                    event.set().await.unwrap();
                    event.clear().await.unwrap();
                }
            })
        };
        let mut seed = 0x0bad_5eed_1234_5678;
        for _ in 0..300 {
            assert!(timeout(jitter(&mut seed, 300), barrier.wait())
                .await
                .is_err());
            let _ = timeout(jitter(&mut seed, 300), event.wait()).await;
            assert!(timeout(jitter(&mut seed, 300), queue.join()).await.is_err());
        }
        toggler.await.unwrap();
        // The withdrawals went before this round trip on the same connection.
        client.ping().await.unwrap();
        for stats in client.stats().await.unwrap() {
            match stats.detail {
                ObjectDetail::Barrier(b) => assert_eq!((b.waiting, b.broken), (0, false)),
                ObjectDetail::Event(e) => assert_eq!(e.waiters, 0),
                ObjectDetail::Queue(_) => {}
                other => panic!("unexpected object {other:?}"),
            }
        }
        let other = AsyncClient::connect(&broker.addr).await.unwrap();
        let party = other.barrier("b", 2).await.unwrap();
        let (x, y) = tokio::join!(barrier.wait(), party.wait());
        assert_eq!(x.unwrap() + y.unwrap(), 1);
    });
}

/// A broker embedded on the caller's runtime with `serve`, used by the async client and
/// by the blocking client on the same queue; shutting it down wakes every waiter of both
/// with `BrokerGone`.
#[test]
fn embedded_broker_serves_both_clients_and_shutdown_wakes_waiters() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let addr = addr_in(dir.path(), "embedded");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ipcq::broker::Config::new().addr(addr.clone());
        let served = tokio::spawn(ipcq::broker::serve(config, async {
            let _ = stopped.await;
        }));
        let client = loop {
            // `serve` binds when first polled; connect once it listens.
            match AsyncClient::connect(&addr).await {
                Ok(client) => break client,
                Err(Error::NoBroker { .. }) => tokio::task::yield_now().await,
                Err(err) => panic!("{err}"),
            }
        };
        let queue = client.queue::<u32>("shared", 10).await.unwrap();
        queue.put(&1).await.unwrap();
        let (answered, answer) = tokio::sync::oneshot::channel();
        let blocking = {
            let addr = addr.clone();
            tokio::task::spawn_blocking(move || {
                let client = ipcq::Client::connect(&addr).unwrap();
                let queue = client.queue::<u32>("shared", 10).unwrap();
                let first = queue.get().unwrap();
                queue.put(&(first + 1)).unwrap();
                answered.send(()).unwrap();
                // Parks in the broker until it goes (unbounded: no ring to sleep on).
                let idle = client.queue::<u32>("idle", 0).unwrap();
                idle.get_many(10).map(|items| items.len())
            })
        };
        answer.await.unwrap();
        assert_eq!(queue.get().await.unwrap(), 2);
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        let sync_client = AsyncClient::connect(&addr).await.unwrap();
        loop {
            let shared = queue_stats_async(&sync_client, "shared").await;
            let idle = client
                .stats()
                .await
                .unwrap()
                .iter()
                .any(|s| matches!(&s.detail, ObjectDetail::Queue(q) if s.name == "idle" && q.getters == 1));
            if shared.getters == 1 && idle {
                break;
            }
            tokio::task::yield_now().await;
        }
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
        assert!(matches!(waiting.await.unwrap(), Err(Error::BrokerGone(_))));
        assert!(matches!(blocking.await.unwrap(), Err(Error::BrokerGone(_))));
        // A round trip learns it for sure; then every call says so. (A put alone may still
        // write its item before the client has read that the broker closed: on Windows
        // the broker's end of a pipe closes once what it wrote was read.)
        assert!(matches!(client.ping().await, Err(Error::BrokerGone(_))));
        let put = queue.put(&3).await;
        assert!(matches!(put, Err(Error::BrokerGone(_))), "{put:?}");
    });
}

async fn queue_stats_async(client: &AsyncClient, name: &str) -> ipcq::stats::QueueStats {
    client
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find_map(|s| match s.detail {
            ObjectDetail::Queue(q) if s.name == name => Some(q),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no queue {name}"))
}
