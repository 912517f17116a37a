//! Flow control keeps every guarantee: credits never let a queue exceed its capacity and
//! never lose a put, prefetched items go back when their holder dies or lets go, and
//! idle credits do not starve other producers.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::*;
use ipcq::Error;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn killed_consumer_returns_prefetched_items_in_order() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("jobs", 0).unwrap();
        queue.put_many(&(0..2000).collect::<Vec<u64>>()).unwrap();

        let mut holder = helper(&["hold", &broker.addr, "jobs", "0", "50"]);
        let mut line = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "holding");
        // Its acknowledgements and its fetch ahead were written before its last get
        // returned; they reach the broker by another connection than this question, so
        // wait for them.
        wait_until(&client, "jobs", "the holder's prefetch", |s| {
            s.total_got == 50 && s.in_flight > 0
        });
        assert_eq!(
            queue.len().unwrap() as u64,
            2000 - 50,
            "prefetched items count in len"
        );

        kill(&mut holder);
        holder.wait().unwrap();
        wait_until(&client, "jobs", "the prefetched items to come back", |s| {
            s.in_flight == 0
        });
        // Everything not handed out is back, in the original order.
        queue.set_prefetch(1);
        let rest: Vec<u64> = (0..1950).map(|_| queue.get().unwrap()).collect();
        assert_eq!(rest, (50..2000).collect::<Vec<u64>>());
        assert!(queue.get_nowait().unwrap_err().is_empty());
    });
}

#[test]
fn dropping_the_last_handle_returns_prefetched_items() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let observer = broker.client();
        let producer = observer.queue::<u64>("jobs", 0).unwrap();
        producer.put_many(&(0..500).collect::<Vec<u64>>()).unwrap();

        let consumer_client = broker.client();
        let consumer = consumer_client.queue::<u64>("jobs", 0).unwrap();
        // Taken in batches of 10: at that pace the consumer fetches ahead, even on a slow
        // transport (Wine's pipes), and holds more than it took.
        let mut taken: Vec<u64> = Vec::new();
        while taken.len() < 50 {
            taken.extend(consumer.get_many((50 - taken.len()).min(10)).unwrap());
        }
        assert_eq!(taken, (0..50).collect::<Vec<u64>>());
        // Its acknowledgements and its fetch ahead reach the broker by another connection
        // than this question: wait for them.
        wait_until(&observer, "jobs", "the consumer's prefetch", |s| {
            s.total_got == 50 && s.in_flight > 0
        });

        // The client stays connected; only the queue handle goes.
        drop(consumer);
        wait_until(
            &observer,
            "jobs",
            "the prefetched items to come back",
            |s| s.in_flight == 0,
        );
        consumer_client.ping().unwrap();
        let other = broker.client().queue::<u64>("jobs", 0).unwrap();
        let rest: Vec<u64> = (0..450).map(|_| other.get().unwrap()).collect();
        assert_eq!(rest, (50..500).collect::<Vec<u64>>());
    });
}

#[test]
fn prefetch_of_one_is_strict_fair_dispatch() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("jobs", 0).unwrap();
        queue.put_many(&(0..100).collect::<Vec<u64>>()).unwrap();
        let consumer = broker.client().queue::<u64>("jobs", 0).unwrap();
        consumer.set_prefetch(1);
        assert_eq!(consumer.prefetch(), 1);
        for expected in 0..30 {
            assert_eq!(consumer.get().unwrap(), expected);
            // Nothing was taken beyond what was handed out (whose acknowledgement may still
            // be on its way to the broker).
            let stats = queue_stats(&client, "jobs");
            assert_eq!(stats.ready, 99 - expected, "{stats:?}");
            assert!(stats.in_flight <= 1, "{stats:?}");
        }
    });
}

#[test]
fn credits_never_exceed_the_capacity() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let capacity = 50u64;
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let queue = broker.client().queue::<u64>("bounded", 50).unwrap();
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        queue.put(&(p * 10_000 + i)).unwrap();
                    }
                })
            })
            .collect();
        let consumer = broker.client().queue::<u64>("bounded", 50).unwrap();
        let mut seen = HashSet::new();
        while seen.len() < 9000 {
            for item in consumer.get_many(16).unwrap() {
                assert!(seen.insert(item), "{item} twice");
            }
            let s = queue_stats(&client, "bounded");
            assert!(
                s.ready + s.in_flight + s.reserved <= capacity,
                "over capacity: {s:?}"
            );
        }
        for producer in producers {
            producer.join().unwrap();
        }
    });
}

#[test]
fn idle_credits_are_revoked_when_another_producer_waits() {
    watchdog(LIMIT, || {
        // Credits are the socket path's (a queue's ring needs none).
        let broker = TestBroker::start_with(&["--no-shm"]);
        let observer = broker.client();
        // Producer A takes credits, then waits on another queue (so its client reads).
        let a = broker.client();
        let a_jobs = a.queue::<u64>("jobs", 8).unwrap();
        a_jobs.put(&0).unwrap();
        let reserved = queue_stats(&observer, "jobs").reserved;
        assert!(reserved > 0, "the first put was granted credits");
        let a_wait = a.queue::<u64>("wake-a", 0).unwrap();
        let a_thread = std::thread::spawn(move || a_wait.get());

        // Producer B fills the queue: it needs the slots A holds.
        let b_jobs = broker.client().queue::<u64>("jobs", 8).unwrap();
        for i in 1..8 {
            b_jobs
                .put_timeout(&i, Duration::from_secs(20))
                .unwrap_or_else(|err| panic!("put {i}: {err}"));
        }
        // B's last puts may have been on credits: wait until the broker has read them.
        wait_until(&observer, "jobs", "the queue to fill", |s| s.ready == 8);
        let s = queue_stats(&observer, "jobs");
        assert_eq!((s.ready, s.reserved), (8, 0), "{s:?}");

        observer.queue::<u64>("wake-a", 0).unwrap().put(&1).unwrap();
        a_thread.join().unwrap().unwrap();
        let all: Vec<u64> = (0..8).map(|_| b_jobs.get().unwrap()).collect();
        assert_eq!(all, (0..8).collect::<Vec<u64>>());
    });
}

#[test]
fn puts_on_credits_racing_a_close_are_never_lost() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let closer = broker.client();
        let producer = broker.client().queue::<u64>("closing", 0).unwrap();
        let consumer = broker.client().queue::<u64>("closing", 0).unwrap();
        // The producer streams on credits while another client closes the queue.
        let producing = std::thread::spawn(move || {
            let mut accepted = 0u64;
            for i in 0..100_000u64 {
                match producer.put(&i) {
                    Ok(()) => accepted += 1,
                    Err(Error::Closed) => break,
                    Err(err) => panic!("{err}"),
                }
            }
            accepted
        });
        wait_until(&closer, "closing", "some puts", |s| s.total_put > 1000);
        closer.queue::<u64>("closing", 0).unwrap().close().unwrap();
        let accepted = producing.join().unwrap();
        // Every put that returned Ok is there to take, in order.
        let mut next = 0;
        loop {
            match consumer.get() {
                Ok(item) => {
                    assert_eq!(item, next);
                    next += 1;
                }
                Err(Error::Closed) => break,
                Err(err) => panic!("{err}"),
            }
        }
        assert_eq!(next, accepted);
    });
}

#[test]
fn a_producer_may_exit_right_after_put() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let queue = broker.client().queue::<u64>("handoff", 0).unwrap();
        for round in 0..20u64 {
            let producer = helper(&[
                "produce",
                &broker.addr,
                "handoff",
                "0",
                &(round * 100).to_string(),
                "100",
            ]);
            assert_eq!(finish(producer).trim(), "done");
        }
        let mut got: Vec<u64> = (0..2000).map(|_| queue.get().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..2000).collect::<Vec<u64>>());
    });
}

/// A consumer streams its acknowledgements while the broker holds more deliveries for it
/// than the output soft limit (here, 4 KiB items prefetched a thousand at a time): the
/// broker must keep taking acknowledgements, or the consumer blocks writing them while
/// the broker waits for it to read, and both stop.
#[test]
fn a_consumer_acknowledging_while_over_the_output_soft_limit_keeps_going() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.raw_queue("large", 1000).unwrap();
        // Full before the consumer starts: its first fetches bring megabytes at once.
        let item = vec![7u8; 4096];
        for _ in 0..1000 {
            queue.put(&item).unwrap();
        }
        let more = scaled(19_000);
        let producer = std::thread::spawn({
            let client = broker.client();
            move || {
                let queue = client.raw_queue("large", 1000).unwrap();
                let item = vec![7u8; 4096];
                for _ in 0..more {
                    queue.put(&item).unwrap();
                }
            }
        });
        for _ in 0..1000 + more {
            assert_eq!(queue.get().unwrap().len(), 4096);
        }
        producer.join().unwrap();
        assert!(queue.get_nowait().unwrap_err().is_empty());
    });
}

/// A worker takes 4 KiB items (its prefetched deliveries put it over the output soft
/// limit) and puts a small result for each on credits, asking for more credits along the
/// way. Its credit requests wait while it is over the limit; its puts must not block on a
/// full socket while nobody in the worker reads, or worker and broker wait for each other.
#[test]
fn a_worker_over_the_soft_limit_that_puts_as_it_takes_keeps_going() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let jobs = 1000 + scaled(19_000);
        let client = broker.client();
        let inbox = client.raw_queue("in", 1000).unwrap();
        let item = vec![7u8; 4096];
        for _ in 0..1000 {
            inbox.put(&item).unwrap();
        }
        let producer = std::thread::spawn({
            let client = broker.client();
            move || {
                let inbox = client.raw_queue("in", 1000).unwrap();
                for _ in 1000..jobs {
                    inbox.put(&item).unwrap();
                }
            }
        });
        let drainer = std::thread::spawn({
            let client = broker.client();
            move || {
                let results = client.raw_queue("out", 0).unwrap();
                for _ in 0..jobs {
                    results.get().unwrap();
                }
            }
        });
        let results = client.raw_queue("out", 0).unwrap();
        for _ in 0..jobs {
            let job = inbox.get().unwrap();
            results.put(&job[..8]).unwrap();
        }
        producer.join().unwrap();
        drainer.join().unwrap();
    });
}
