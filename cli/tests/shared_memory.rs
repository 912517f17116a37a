//! Queues served by their ring in shared memory (Linux): a real broker process and real
//! client processes. Items move through the ring with every guarantee of the socket path:
//! each once, each producer's in order, the bound, exact `len`, `close`; a client that
//! needs the broker's bookkeeping turns the queue over to the socket with nothing lost;
//! producers killed while writing never stop the queue.

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ipcq::{ConnectOptions, Error};

/// Waits until a thread of process `pid` sleeps on a futex: a get waiting on the ring (a
/// get on the socket would sleep in a socket read).
fn wait_for_futex_sleep(pid: u32) {
    let start = std::time::Instant::now();
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let asleep = tasks.filter_map(Result::ok).any(|task| {
            std::fs::read_to_string(task.path().join("wchan"))
                .is_ok_and(|wchan| wchan.contains("futex"))
        });
        if asleep {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "process {pid} never slept on a futex"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The figures say whether the ring serves the queue.
fn on_ring(broker: &TestBroker, name: &str) -> bool {
    queue_stats(&broker.client(), name).shared_memory
}

#[test]
fn items_move_through_the_ring_once_each_and_in_order() {
    watchdog(Duration::from_secs(120), || {
        let broker = TestBroker::start();
        let per: u64 = scaled(20_000);
        // Two producer processes with ranges of their own, two consumer processes.
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                start(&[
                    "produce",
                    &broker.addr,
                    "ring",
                    "64",
                    &(p * 1_000_000).to_string(),
                    &per.to_string(),
                ])
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| start(&["consume", &broker.addr, "ring", "64"]))
            .collect();
        for producer in producers {
            assert_eq!(stop(producer, false), ["done"]);
        }
        let client = broker.client();
        client.queue::<u64>("ring", 64).unwrap().close().unwrap();
        let mut all: BTreeMap<u64, u32> = BTreeMap::new();
        for consumer in consumers {
            let mut last: BTreeMap<u64, u64> = BTreeMap::new();
            for line in stop(consumer, false) {
                let id: u64 = line.parse().unwrap();
                let producer = id / 1_000_000;
                // Each consumer sees each producer's items in the order they were put.
                if let Some(&before) = last.get(&producer) {
                    assert!(id > before, "{id} after {before}");
                }
                last.insert(producer, id);
                *all.entry(id).or_default() += 1;
            }
        }
        let expected: Vec<u64> = (0..2u64)
            .flat_map(|p| p * 1_000_000..p * 1_000_000 + per)
            .collect();
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), expected);
        assert!(all.values().all(|&n| n == 1), "an item came twice");
        let stats = queue_stats(&client, "ring");
        assert!(
            stats.shared_memory,
            "the socket served the queue: {stats:?}"
        );
        assert_eq!((stats.total_put, stats.total_got), (2 * per, 2 * per));
        assert_eq!(stats.ready, 0);
    });
}

#[test]
fn the_ring_keeps_the_bound_exact_len_and_close() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("bounded", 8).unwrap();
        for id in 0..8 {
            queue.put_nowait(&id).unwrap();
        }
        assert!(matches!(queue.put_nowait(&8), Err(Error::Full)));
        assert!(matches!(
            queue.put_timeout(&8, Duration::from_millis(20)),
            Err(Error::Full)
        ));
        // Another client sees the exact length, and the queue full.
        let other = broker.client().queue::<u64>("bounded", 8).unwrap();
        assert_eq!(other.len().unwrap(), 8);
        assert!(other.is_full().unwrap());
        assert_eq!(other.get().unwrap(), 0);
        assert_eq!(queue.len().unwrap(), 7);
        queue.put(&8).unwrap();
        other.close().unwrap();
        assert!(matches!(queue.put(&9), Err(Error::Closed)));
        // A closed queue is drained, in order, then says so.
        let rest: Vec<u64> = std::iter::from_fn(|| queue.get().ok()).collect();
        assert_eq!(rest, (1..=8).collect::<Vec<_>>());
        assert!(matches!(queue.get(), Err(Error::Closed)));
        assert!(matches!(queue.get_nowait(), Err(Error::Closed)));
        assert!(on_ring(&broker, "bounded"));
        let empty = broker.client().queue::<u64>("empty", 8).unwrap();
        assert!(matches!(empty.get_nowait(), Err(Error::Empty)));
        assert!(matches!(
            empty.get_timeout(Duration::from_millis(20)),
            Err(Error::Empty)
        ));
    });
}

#[test]
fn a_queue_made_for_large_items_carries_them_in_its_ring() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let client = broker.client();
        let big = ipcq::QueueOptions::new()
            .capacity(4)
            .shared_slot_size(1 << 20);
        let queue = client.raw_queue_with("big", big).unwrap();
        let other = broker.client().raw_queue_with("big", big).unwrap();
        for i in 0..20u8 {
            let item = vec![i; 1 << 20];
            queue.put(&item).unwrap();
            assert_eq!(other.get().unwrap(), item);
        }
        assert!(on_ring(&broker, "big"));
        // One byte more than a slot: over the socket from then on, in order.
        queue.put(&[1]).unwrap();
        queue.put(&vec![2; (1 << 20) + 1]).unwrap();
        assert!(!on_ring(&broker, "big"));
        assert_eq!(&other.get().unwrap()[..], &[1]);
        assert_eq!(other.get().unwrap().len(), (1 << 20) + 1);
        // The default slots carry 496 bytes.
        let small = client.raw_queue("small", 4).unwrap();
        small.put(&[0; 496]).unwrap();
        assert!(on_ring(&broker, "small"));
        small.put(&[0; 497]).unwrap();
        assert!(!on_ring(&broker, "small"));
    });
}

#[test]
fn a_waiting_get_on_the_ring_is_woken_by_a_put_and_by_close() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let getter = start(&["get", &broker.addr, "wake", "4"]);
        // The getter is asleep on the ring (nothing in it); the broker does not see it.
        let client = broker.client();
        client.queue::<u64>("wake", 4).unwrap().put(&42).unwrap();
        assert_eq!(stop(getter, false), ["42"]);
        let mut waiting = helper(&["consume", &broker.addr, "wake", "4"]);
        client.queue::<u64>("wake", 4).unwrap().close().unwrap();
        let status = waiting.wait().unwrap();
        assert!(status.success(), "the consumer ends on Closed");
        assert!(on_ring(&broker, "wake"));
    });
}

#[test]
fn a_put_waiting_for_room_on_the_ring_is_woken_by_a_get_and_by_close() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("one", 1).unwrap();
        queue.put(&1).unwrap();
        let putter = start(&["produce", &broker.addr, "one", "1", "2", "1"]);
        wait_for_futex_sleep(putter.child.id());
        assert_eq!(queue.get().unwrap(), 1);
        assert_eq!(stop(putter, false), ["done"]);
        assert_eq!(queue.len().unwrap(), 1);
        let mut blocked = helper(&["produce", &broker.addr, "one", "1", "3", "1"]);
        wait_for_futex_sleep(blocked.id());
        queue.close().unwrap();
        assert!(
            !blocked.wait().unwrap().success(),
            "a put on a closed queue fails"
        );
        assert_eq!(queue.get().unwrap(), 2);
        assert!(matches!(queue.get(), Err(Error::Closed)));
        assert!(on_ring(&broker, "one"));
    });
}

#[test]
fn a_client_of_the_socket_shares_the_ring_until_its_get_must_wait() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let client = broker.client();
        let ring = client.queue::<u64>("mixed", 100).unwrap();
        for id in 0..60 {
            ring.put(&id).unwrap();
        }
        assert_eq!(ring.get().unwrap(), 0);
        // A client on the socket alone: the broker takes from the ring for it (holding
        // what it hands out until acknowledged), and the ring goes on serving the queue.
        let options = ConnectOptions::new().shared_memory(false);
        let socket = ipcq::Client::connect_with(&broker.addr, &options)
            .unwrap()
            .queue::<u64>("mixed", 100)
            .unwrap();
        // Each client takes in queue order, whichever path it is on (the socket's client
        // fetches ahead, as always: those items are in flight to it, and count).
        let mut by_socket = Vec::new();
        let mut by_ring = Vec::new();
        for _ in 0..10 {
            by_socket.push(socket.get().unwrap());
            by_ring.push(ring.get().unwrap());
        }
        assert!(
            by_socket.is_sorted() && by_ring.is_sorted(),
            "{by_socket:?} {by_ring:?}"
        );
        assert!(on_ring(&broker, "mixed"));
        assert_eq!(ring.len().unwrap(), 39);
        // Its puts (room asked for, then the item sent on that credit) go into the ring
        // too, after what is there; so does a put of the ring's client after them.
        for id in 60..70 {
            socket.put(&id).unwrap();
        }
        ring.put(&70).unwrap();
        by_socket.extend(std::iter::from_fn(|| socket.get_nowait().ok()));
        assert!(by_socket.is_sorted(), "{by_socket:?}");
        let mut all: Vec<u64> = by_socket.into_iter().chain(by_ring).collect();
        all.sort_unstable();
        assert_eq!(all, (1..71).collect::<Vec<_>>());
        assert!(on_ring(&broker, "mixed"));
        // A get that waits turns the queue over; a put from the ring's client wakes it.
        let waiting = std::thread::spawn(move || socket.get_timeout(Duration::from_secs(30)));
        wait_until(&client, "mixed", "the socket get to park", |stats| {
            stats.getters == 1
        });
        assert!(!on_ring(&broker, "mixed"));
        ring.put(&71).unwrap();
        assert_eq!(waiting.join().unwrap().unwrap(), 71);
        // Its client is gone with the thread: its last acknowledgement went before it.
        wait_until(&client, "mixed", "every item acknowledged", |stats| {
            (stats.total_put, stats.total_got, stats.in_flight) == (72, 72, 0)
        });
    });
}

/// The protocol as any client could speak it: a put that needs no room reserved goes into
/// the ring; a ticket is good once and only for a ring; a client of the socket is told
/// when there is no ring to share.
#[test]
fn requests_over_the_socket_use_the_ring_and_tickets_are_checked() {
    use common::raw::Raw;
    use ipcq_proto::{BrokerMsg, ClientMsg, ErrorCode, Kind, Op, Reply, Wait};
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let mut raw = Raw::handshake(&broker.addr);
        let ask = |raw: &mut Raw, id: u64, op: Op, tail: &[u8]| {
            raw.send(&ClientMsg::Request { id, op }, tail);
            match raw.read_broker_msg().0 {
                BrokerMsg::Reply { id: got, body } if got == id => body,
                other => panic!("{other:?}"),
            }
        };
        let open = |name: &str, capacity| Op::Open {
            name: name.into(),
            kind: Kind::Queue {
                capacity,
                auto_delete: false,
                dead_letter: None,
                slot_size: 0,
            },
        };
        let Reply::Opened { handle } = ask(&mut raw, 1, open("raw", 4), &[]) else {
            panic!("not opened")
        };
        let put = Op::Put {
            handle,
            wait: Wait::Block,
            credits: 0,
        };
        let item = postcard::to_stdvec(&7u64).unwrap();
        assert!(matches!(
            ask(&mut raw, 2, put, &item),
            Reply::Accepted { credits: 0, .. }
        ));
        assert!(on_ring(&broker, "raw"));
        assert_eq!(
            broker
                .client()
                .queue::<u64>("raw", 4)
                .unwrap()
                .get()
                .unwrap(),
            7
        );
        // A ticket for the ring, fetched on a connection of its own: a wrong one is
        // refused, the right one answered (the file rides on the answer), and only once.
        let Reply::Shared { token, owner } = ask(&mut raw, 3, Op::ShareQueue { handle }, &[])
        else {
            panic!("no ring shared")
        };
        assert!(owner > 0);
        let mut fetch = Raw::handshake(&broker.addr);
        let wrong = ask(&mut fetch, 1, Op::FetchShared { token: token ^ 1 }, &[]);
        assert!(matches!(wrong, Reply::Error(ref err) if err.code == ErrorCode::NotFound));
        assert_eq!(
            ask(&mut fetch, 2, Op::FetchShared { token }, &[]),
            Reply::Done
        );
        let again = ask(&mut fetch, 3, Op::FetchShared { token }, &[]);
        assert!(matches!(again, Reply::Error(ref err) if err.code == ErrorCode::NotFound));
        // An unbounded queue has no ring.
        let Reply::Opened { handle } = ask(&mut raw, 4, open("unbounded", 0), &[]) else {
            panic!("not opened")
        };
        assert_eq!(
            ask(&mut raw, 5, Op::ShareQueue { handle }, &[]),
            Reply::Flag(false)
        );
    });
}

/// A client of the socket asks for room, then sends its item on the credit: the broker
/// claims a slot in the ring for it. Consumers wait at that slot (FIFO); it is filled by
/// the send, given up when the client goes, and becomes a credit of the socket path when
/// the queue is turned over meanwhile.
#[test]
fn room_claimed_in_the_ring_for_a_client_of_the_socket() {
    use common::raw::Raw;
    use ipcq_proto::{BrokerMsg, ClientMsg, Kind, Op, Reply, Wait};
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let ring = broker.client().queue::<u64>("claims", 4).unwrap();
        let claim = |raw: &mut Raw| {
            let open = Op::Open {
                name: "claims".into(),
                kind: Kind::Queue {
                    capacity: 4,
                    auto_delete: false,
                    dead_letter: None,
                    slot_size: 0,
                },
            };
            raw.send(&ClientMsg::Request { id: 1, op: open }, &[]);
            let BrokerMsg::Reply {
                body: Reply::Opened { handle },
                ..
            } = raw.read_broker_msg().0
            else {
                panic!("not opened")
            };
            let room = Op::WaitRoom {
                handle,
                len: 8,
                wait: Wait::Block,
                credits: 0,
            };
            raw.send(&ClientMsg::Request { id: 2, op: room }, &[]);
            assert!(matches!(
                raw.read_broker_msg().0,
                BrokerMsg::Reply {
                    body: Reply::Accepted { credits: 1, .. },
                    ..
                }
            ));
            handle
        };
        let item = |id: u64| postcard::to_stdvec(&id).unwrap();
        // Claimed, then the client goes without sending: consumers pass the slot.
        let mut gone = Raw::handshake(&broker.addr);
        claim(&mut gone);
        ring.put(&1).unwrap();
        assert!(matches!(
            ring.get_timeout(Duration::from_millis(100)),
            Err(Error::Empty)
        ));
        drop(gone);
        assert_eq!(ring.get().unwrap(), 1);
        // Claimed and sent: the item is in the ring, in its place.
        let mut sender = Raw::handshake(&broker.addr);
        let handle = claim(&mut sender);
        ring.put(&3).unwrap();
        sender.send(&ClientMsg::Send { handle }, &item(2));
        assert_eq!(ring.get().unwrap(), 2);
        assert_eq!(ring.get().unwrap(), 3);
        assert!(on_ring(&broker, "claims"));
        // Claimed, and the queue turned over before the item comes: it comes all the
        // same, on a credit of the socket path.
        let mut late = Raw::handshake(&broker.addr);
        let handle = claim(&mut late);
        ring.task_done().unwrap();
        assert!(!on_ring(&broker, "claims"));
        late.send(&ClientMsg::Send { handle }, &item(4));
        assert_eq!(ring.get().unwrap(), 4);
        late.send(
            &ClientMsg::Request {
                id: 3,
                op: Op::Ping,
            },
            &[],
        );
        assert!(matches!(
            late.read_broker_msg().0,
            BrokerMsg::Reply {
                body: Reply::Pong,
                ..
            }
        ));
    });
}

#[test]
fn task_done_and_join_count_items_that_went_through_the_ring() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 16).unwrap();
        for id in 0..10 {
            jobs.put(&id).unwrap();
        }
        let worker = broker.client().queue::<u64>("jobs", 16).unwrap();
        for _ in 0..4 {
            worker.get().unwrap();
        }
        // The first task_done needs the broker's count: the queue is turned over, and the
        // items taken from the ring count as put and not yet done.
        for _ in 0..4 {
            worker.task_done().unwrap();
        }
        assert!(!on_ring(&broker, "jobs"));
        assert!(!jobs.join_timeout(Duration::from_millis(10)).unwrap());
        for _ in 0..6 {
            worker.get().unwrap();
            worker.task_done().unwrap();
        }
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
        assert!(worker.task_done().is_err(), "more task_done than items");
    });
}

#[test]
fn an_acknowledging_get_takes_what_the_ring_held() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start();
        let queue = broker.client().queue::<u64>("acked", 16).unwrap();
        for id in 0..5 {
            queue.put(&id).unwrap();
        }
        let delivery = queue.get_delivery().unwrap();
        assert_eq!(*delivery, 0);
        delivery.reject().unwrap();
        let again = queue.get_delivery().unwrap();
        assert_eq!((*again, again.is_redelivered()), (0, true));
        again.ack().unwrap();
        let rest: Vec<u64> = std::iter::from_fn(|| queue.get_nowait().ok()).collect();
        assert_eq!(rest, vec![1, 2, 3, 4]);
        // Served from the ring throughout: the broker held the delivered item's slot.
        assert!(on_ring(&broker, "acked"));
        let stats = queue_stats(&broker.client(), "acked");
        assert_eq!((stats.total_put, stats.total_got, stats.ready), (5, 5, 0));
    });
}

#[test]
fn a_broker_without_rings_serves_the_same_clients_over_the_socket() {
    watchdog(Duration::from_secs(60), || {
        let broker = TestBroker::start_with(&["--no-shm"]);
        let queue = broker.client().queue::<u64>("plain", 8).unwrap();
        queue.put(&1).unwrap();
        assert_eq!(queue.get().unwrap(), 1);
        assert!(!on_ring(&broker, "plain"));
    });
}

#[test]
fn a_get_asleep_on_the_ring_learns_that_the_broker_died_or_stopped() {
    for how in ["KILL", "TERM"] {
        watchdog(Duration::from_secs(60), move || {
            let broker = TestBroker::start();
            broker.client().queue::<u64>("orphan", 4).unwrap();
            let mut getter = helper(&["get", &broker.addr, "orphan", "4"]);
            wait_for_futex_sleep(getter.id());
            assert!(on_ring(&broker, "orphan"));
            signal(&broker.child, how);
            // Woken by the stopping broker, or within a look at the socket (every 100 ms)
            // when it was killed: the get fails, it does not hang.
            let status = getter.wait().unwrap();
            assert!(!status.success(), "after SIG{how}");
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut getter.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(stderr.contains("broker"), "after SIG{how}: {stderr}");
        });
    }
}

/// Producer processes killed at random while they put as fast as they can: some die in
/// the middle of writing an item into the ring. None of it is ever delivered, and the
/// queue keeps flowing for the rest.
#[test]
fn producers_killed_mid_write_never_stop_the_queue() {
    watchdog(Duration::from_secs(300), || {
        let kills = scaled(200);
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("torn", 64).unwrap();
        let mut seed = 0x7042_1e57_u64;
        let mut taken = 0u64;
        for _ in 0..kills {
            let mut producer = helper(&["spin-produce", &broker.addr, "torn", "64"]);
            expect_line(&mut producer, "started");
            // Take while it puts, so that it is writing rather than waiting for room.
            for _ in 0..next(&mut seed) % 200 {
                queue.get().unwrap();
                taken += 1;
            }
            kill(&mut producer);
            producer.wait().unwrap();
            // Whatever it left in the ring is taken, whole.
            while let Ok(id) = queue.get_nowait() {
                assert!(id < 1 << 32, "a torn item: {id:#x}");
                taken += 1;
            }
        }
        // The queue still flows, on its ring, and its figures add up.
        for id in 0..1000 {
            queue.put(&id).unwrap();
            assert_eq!(queue.get().unwrap(), id);
        }
        let stats = queue_stats(&client, "torn");
        println!(
            "{kills} producers killed; {} of them in the middle of a write; {taken} items taken",
            stats.torn_writes
        );
        assert!(stats.shared_memory, "{stats:?}");
        assert_eq!(stats.total_got, taken + 1000);
        assert_eq!(stats.ready, 0);
    });
}
