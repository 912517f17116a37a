//! End-to-end queue semantics against a real `ipcq-broker` process, with real client
//! processes where the behaviour crosses processes.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use ipcq::{Error, QueueOptions};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn fifo_across_processes() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let n = scaled(100_000);
        let count = n.to_string();
        let producer = helper(&["produce", &broker.addr, "fifo", "1000", "0", &count]);
        let consumer = helper(&["fifo", &broker.addr, "fifo", "1000", &count]);
        assert_eq!(finish(producer).trim(), "done");
        assert_eq!(finish(consumer).trim(), format!("in order: {n}"));
        let stats = queue_stats(&broker.client(), "fifo");
        assert_eq!((stats.total_put, stats.total_got, stats.ready), (n, n, 0));
    });
}

#[test]
fn no_loss_no_duplicates_4_producers_4_consumers() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("work", 64).unwrap();
        let per_producer = scaled(50_000);
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let first = (p * per_producer).to_string();
                helper(&[
                    "produce",
                    &broker.addr,
                    "work",
                    "64",
                    &first,
                    &per_producer.to_string(),
                ])
            })
            .collect();
        // Each consumer's output is read as it comes, so that a full pipe never stalls it.
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let consumer = helper(&["consume", &broker.addr, "work", "64"]);
                std::thread::spawn(move || finish(consumer))
            })
            .collect();
        for producer in producers {
            assert_eq!(finish(producer).trim(), "done");
        }
        queue.close().unwrap();
        let mut seen = HashSet::new();
        let mut received = 0u64;
        let mut busy_consumers = 0;
        for consumer in consumers {
            let out = consumer.join().unwrap();
            let mut count = 0;
            for line in out.lines() {
                let id: u64 = line.parse().unwrap();
                assert!(seen.insert(id), "item {id} was received twice");
                count += 1;
            }
            received += count;
            if count > 0 {
                busy_consumers += 1;
            }
        }
        assert_eq!(
            received,
            4 * per_producer,
            "every item received exactly once"
        );
        assert_eq!(seen.len() as u64, 4 * per_producer);
        assert!(seen.iter().all(|&id| id < 4 * per_producer));
        assert!(busy_consumers >= 2, "the work was shared between consumers");
    });
}

#[test]
fn put_nowait_full_and_get_nowait_empty() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u32>("small", 2).unwrap();
        assert_eq!(queue.capacity(), Some(2));
        assert!(matches!(queue.get_nowait(), Err(Error::Empty)));
        queue.put_nowait(&1).unwrap();
        queue.put_nowait(&2).unwrap();
        assert!(queue.is_full().unwrap());
        assert_eq!(queue.len().unwrap(), 2);
        let err = queue.put_nowait(&3).unwrap_err();
        assert!(err.is_full(), "{err}");
        let err = queue
            .put_timeout(&3, Duration::from_millis(50))
            .unwrap_err();
        assert!(err.is_full(), "{err}");
        assert_eq!(queue.get().unwrap(), 1);
        assert_eq!(queue.get().unwrap(), 2);
        assert!(queue.is_empty().unwrap());
        assert!(!queue.is_full().unwrap());
    });
}

#[test]
fn blocked_put_completes_when_get_frees_a_slot() {
    watchdog(LIMIT, || {
        // Parked in the broker, where the test can see it (the ring's waits are in
        // tests/shared_memory.rs).
        let broker = TestBroker::start_with(&["--no-shm"]);
        let client = broker.client();
        let queue = client.queue::<u32>("one", 1).unwrap();
        queue.put(&1).unwrap();
        let putter = {
            let queue = broker.client().queue::<u32>("one", 1).unwrap();
            std::thread::spawn(move || queue.put(&2))
        };
        wait_until(&client, "one", "a parked putter", |s| s.putters == 1);
        assert!(!putter.is_finished());
        assert_eq!(queue.get().unwrap(), 1);
        putter.join().unwrap().unwrap();
        assert_eq!(queue.get().unwrap(), 2);
    });
}

#[test]
fn get_timeout_waits_at_least_the_timeout() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let queue = broker.client().queue::<u32>("idle", 0).unwrap();
        assert_eq!(queue.capacity(), None);
        for millis in [1u64, 20, 150] {
            let timeout = Duration::from_millis(millis);
            let start = Instant::now();
            assert!(matches!(queue.get_timeout(timeout), Err(Error::Empty)));
            assert!(
                start.elapsed() >= timeout,
                "returned after {:?}",
                start.elapsed()
            );
        }
    });
}

#[test]
fn blocked_getters_are_served_in_arrival_order() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u32>("order", 0).unwrap();
        let mut getters = Vec::new();
        for i in 0..4u64 {
            // One process per getter: arrival order is fixed by waiting until each is parked.
            getters.push(helper(&["get", &broker.addr, "order", "0"]));
            wait_until(&client, "order", "getter to park", |s| s.getters == i + 1);
        }
        for item in 0..4u32 {
            queue.put(&item).unwrap();
        }
        for (i, getter) in getters.into_iter().enumerate() {
            assert_eq!(finish(getter).trim(), i.to_string(), "getter {i}");
        }
    });
}

#[test]
fn close_drains_then_fails_and_wakes_waiters() {
    watchdog(LIMIT, || {
        // Parked in the broker, where the test can see it (the ring's waits are in
        // tests/shared_memory.rs).
        let broker = TestBroker::start_with(&["--no-shm"]);
        let client = broker.client();
        let full = client.queue::<u32>("full", 1).unwrap();
        full.put(&7).unwrap();
        let putter = {
            let full = broker.client().queue::<u32>("full", 1).unwrap();
            std::thread::spawn(move || full.put(&8))
        };
        let empty = client.queue::<u32>("empty", 0).unwrap();
        let getter = {
            let empty = broker.client().queue::<u32>("empty", 0).unwrap();
            std::thread::spawn(move || empty.get())
        };
        wait_until(&client, "full", "a parked putter", |s| s.putters == 1);
        wait_until(&client, "empty", "a parked getter", |s| s.getters == 1);

        full.close().unwrap();
        empty.close().unwrap();
        assert!(putter.join().unwrap().unwrap_err().is_closed());
        assert!(getter.join().unwrap().unwrap_err().is_closed());

        // Later puts fail; getters drain what is left, then get Closed.
        assert!(full.put(&9).unwrap_err().is_closed());
        assert!(full.put_nowait(&9).unwrap_err().is_closed());
        assert!(full.is_closed().unwrap());
        assert_eq!(full.get().unwrap(), 7);
        assert!(full.get().unwrap_err().is_closed());
        assert!(full.get_nowait().unwrap_err().is_closed());
        assert!(empty
            .get_timeout(Duration::from_secs(5))
            .unwrap_err()
            .is_closed());
    });
}

#[test]
fn none_sentinel_ends_each_consumer() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<Option<String>>("jobs", 4).unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let queue = broker.client().queue::<Option<String>>("jobs", 4).unwrap();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(job) = queue.get().unwrap() {
                        got.push(job);
                    }
                    got
                })
            })
            .collect();
        for i in 0..20 {
            queue.put(&Some(format!("job-{i}"))).unwrap();
        }
        queue.put(&None).unwrap();
        queue.put(&None).unwrap();
        let mut all: Vec<String> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_by_key(|job| job[4..].parse::<u32>().unwrap());
        assert_eq!(all, (0..20).map(|i| format!("job-{i}")).collect::<Vec<_>>());
    });
}

#[test]
fn put_many_and_get_many_keep_order() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u32>("batch", 0).unwrap();
        let items: Vec<u32> = (0..1000).collect();
        queue.put_many(&items).unwrap();
        assert_eq!(queue.len().unwrap(), 1000);
        let mut got = Vec::new();
        while got.len() < 1000 {
            let batch = queue.get_many(64).unwrap();
            assert!(!batch.is_empty() && batch.len() <= 64);
            got.extend(batch);
        }
        assert_eq!(got, items);
        assert!(matches!(
            client.queue::<u32>("batch", 0).unwrap().raw().get_many(0),
            Err(Error::Invalid(_))
        ));
    });
}

#[test]
fn put_many_larger_than_capacity_waits_for_room() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u32>("narrow", 8).unwrap();
        let producer = {
            let queue = broker.client().queue::<u32>("narrow", 8).unwrap();
            std::thread::spawn(move || queue.put_many(&(0..100).collect::<Vec<u32>>()))
        };
        let mut got = Vec::new();
        while got.len() < 100 {
            got.extend(queue.get_many(16).unwrap());
            assert!(queue.len().unwrap() <= 8, "capacity is never exceeded");
        }
        producer.join().unwrap().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<u32>>());
    });
}

#[test]
fn killed_getter_loses_nothing() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("precious", 0).unwrap();
        let mut doomed = helper(&["get", &broker.addr, "precious", "0"]);
        wait_until(&client, "precious", "the doomed getter to park", |s| {
            s.getters == 1
        });
        kill(&mut doomed);
        doomed.wait().unwrap();
        // Whether or not the broker has noticed the death yet, the item must reach the
        // next getter.
        queue.put(&42).unwrap();
        let survivor = helper(&["get", &broker.addr, "precious", "0"]);
        assert_eq!(finish(survivor).trim(), "42");
        // The survivor acknowledged it before exiting; the broker reads that on the
        // survivor's connection, so wait for it rather than race it.
        wait_until(&client, "precious", "the survivor's acknowledgement", |s| {
            s.total_got == 1
        });
        let stats = queue_stats(&client, "precious");
        assert_eq!((stats.ready, stats.in_flight, stats.total_got), (0, 0, 1));
        assert!(
            queue.get_nowait().unwrap_err().is_empty(),
            "taken exactly once"
        );
    });
}

#[test]
fn get_timeout_racing_a_put_never_loses_an_item() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let consumer = broker.client().queue::<u64>("race", 0).unwrap();
        let producer = broker.client().queue::<u64>("race", 0).unwrap();
        let rounds = 300u64;
        let start = Arc::new(Barrier::new(2));
        let putter = {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                for id in 0..rounds {
                    start.wait();
                    // Aim the put at the moment the get's timeout expires.
                    if id % 3 != 0 {
                        std::thread::sleep(Duration::from_micros(500 + (id % 7) * 150));
                    }
                    producer.put(&id).unwrap();
                    start.wait();
                }
            })
        };
        let mut got = Vec::new();
        let mut timeouts = 0;
        for id in 0..rounds {
            start.wait();
            match consumer.get_timeout(Duration::from_micros(500 + (id % 5) * 200)) {
                Ok(item) => got.push(item),
                Err(Error::Empty) => timeouts += 1,
                Err(err) => panic!("{err}"),
            }
            start.wait();
        }
        putter.join().unwrap();
        // A put that returned is in the broker's socket; wait until the broker has read the
        // last ones (another connection than the consumer's) before draining.
        let observer = broker.client();
        wait_until(&observer, "race", "every put to reach the queue", |s| {
            s.total_put == rounds
        });
        // What the timed-out gets did not take is still in the queue, in order.
        while let Ok(item) = consumer.get_nowait() {
            got.push(item);
        }
        let unique: HashSet<u64> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "no duplicates");
        assert_eq!(got.len() as u64, rounds, "no losses ({timeouts} timeouts)");
    });
}

#[test]
fn blocked_get_does_not_stall_other_threads_of_the_same_client() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let idle = client.queue::<u32>("idle", 0).unwrap();
        let busy = client.queue::<u32>("busy", 0).unwrap();
        let blocked = {
            let idle = idle.clone();
            std::thread::spawn(move || idle.get())
        };
        let observer = broker.client();
        wait_until(&observer, "idle", "the blocked get", |s| s.getters == 1);
        for i in 0..1000 {
            busy.put(&i).unwrap();
            assert_eq!(busy.get().unwrap(), i);
        }
        assert!(!blocked.is_finished());
        busy.put(&5).unwrap();
        idle.put(&99).unwrap();
        assert_eq!(blocked.join().unwrap().unwrap(), 99);
    });
}

#[test]
fn many_threads_share_one_client() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("shared", 16).unwrap();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    if t % 2 == 0 {
                        for i in 0..2000 {
                            queue.put(&(t * 10_000 + i)).unwrap();
                        }
                        Vec::new()
                    } else {
                        (0..2000)
                            .map(|_| queue.get().unwrap())
                            .collect::<Vec<u64>>()
                    }
                })
            })
            .collect();
        let mut got: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        got.sort_unstable();
        let mut expected: Vec<u64> = (0..8u64)
            .step_by(2)
            .flat_map(|t| (0..2000).map(move |i| t * 10_000 + i))
            .collect();
        expected.sort_unstable();
        assert_eq!(got, expected);
    });
}

#[test]
fn reopening_with_another_capacity_is_a_conflict() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        client.queue::<u32>("jobs", 10).unwrap();
        let err = broker.client().queue::<u32>("jobs", 20).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert!(err.to_string().contains("capacity 10"), "{err}");
        let err = client.queue::<u32>("jobs", 0).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        client.queue::<u32>("jobs", 10).unwrap();
    });
}

#[test]
fn an_auto_delete_queue_goes_with_the_last_client_that_opened_it() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let options = QueueOptions::new().capacity(3).auto_delete(true);
        // Another process holds it open.
        let mut holder = helper(&["hold", &broker.addr, "tmp", "3:auto-delete", "0"]);
        expect_line(&mut holder, "holding");
        let client = broker.client();
        let queue = client.queue_with::<u64>("tmp", options).unwrap();
        queue.put(&1).unwrap();
        queue.put(&2).unwrap();
        // Opening it otherwise is a conflict that names the difference.
        let err = client.queue::<u64>("tmp", 3).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert!(err.to_string().contains("auto-delete"), "{err}");
        drop(queue);
        drop(client);
        // One of its two openers left: it stays, with its items.
        let observer = broker.client();
        let stats = queue_stats(&observer, "tmp");
        assert!(stats.auto_delete);
        assert_eq!(stats.ready, 2);
        // The last one dies: it goes, items and all.
        kill(&mut holder);
        holder.wait().unwrap();
        broker.wait_for_log("auto-delete queue removed");
        assert!(matches!(observer.lookup("tmp"), Err(Error::NotFound(_))));
        // The name is free again: a new queue, empty, with whatever options come first.
        let fresh = observer.queue::<u64>("tmp", 0).unwrap();
        assert!(fresh.is_empty().unwrap());
    });
}

#[test]
fn bad_names_are_refused() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        for name in [String::new(), "a\nb".to_string(), "x".repeat(256)] {
            let err = client.queue::<u32>(&name, 0).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{name:?}: {err}");
        }
        client.queue::<u32>(&"x".repeat(255), 0).unwrap();
    });
}

#[test]
fn item_larger_than_the_frame_limit_is_refused_before_sending() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start_with(&["--max-frame-len", "65536"]);
        let client = broker.client();
        let queue = client.raw_queue("big", 0).unwrap();
        let err = queue.put(&vec![0u8; 70_000]).unwrap_err();
        assert!(err.is_too_large(), "{err}");
        assert!(matches!(err, Error::TooLarge { max: 65536, .. }), "{err}");
        let err = queue
            .put_many([vec![1u8; 10], vec![0u8; 70_000]])
            .unwrap_err();
        assert!(err.is_too_large(), "{err}");
        // The connection is still usable, and the largest item that fits goes through.
        let largest = vec![7u8; 65536 - 64];
        queue.put(&largest).unwrap();
        assert_eq!(queue.get().unwrap(), &largest[..]);
        assert_eq!(queue_stats(&client, "big").total_put, 1);
    });
}

#[test]
fn remove_drops_items_and_wakes_waiters() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let doomed = client.queue::<u32>("doomed", 0).unwrap();
        let getter = {
            let doomed = broker.client().queue::<u32>("doomed", 0).unwrap();
            std::thread::spawn(move || doomed.get())
        };
        wait_until(&client, "doomed", "a parked getter", |s| s.getters == 1);
        client.remove("doomed").unwrap();
        assert!(getter.join().unwrap().unwrap_err().is_closed());
        assert!(doomed.put(&1).unwrap_err().is_closed());
        assert!(matches!(client.remove("doomed"), Err(Error::NotFound(_))));
        // The name is free again.
        let fresh = client.queue::<u32>("doomed", 3).unwrap();
        fresh.put(&1).unwrap();
        assert_eq!(fresh.get().unwrap(), 1);
    });
}
