//! Clients that try to make the broker hold memory for them or hang others: one that never
//! reads its answers, one that parks requests and lets deliveries pile up unread.
//!
//! The flood of a client that never reads is Unix only: it needs a write that gives up when
//! the broker stops reading (named pipes have no write timeout) and the broker's resident
//! memory (`/proc`).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::*;
use ipcq_proto::{ClientMsg, Kind, Op, Wait};

const LIMIT: Duration = Duration::from_secs(120);

/// A raw connection that announced `max_frame_len` and opened queue `name` as handle 0.
fn open_raw(addr: &str, name: &str, max_frame_len: u32) -> Raw {
    let mut raw = Raw::connect(addr);
    raw.send_hello(ipcq_proto::Hello::new(max_frame_len));
    let _hello: ipcq_proto::Hello = raw.read_message();
    let open = Op::Open {
        name: name.into(),
        kind: Kind::Queue {
            capacity: 0,
            auto_delete: false,
            dead_letter: None,
            slot_size: 0,
        },
    };
    raw.send(&ClientMsg::Request { id: 1, op: open }, &[]);
    let _opened = raw.read_broker_msg();
    raw
}

/// Writes `requests` encoded requests to `raw` without ever reading, until they are all
/// written or the socket stays full for a second (the broker stopped reading); returns the
/// bytes written.
#[cfg(unix)]
fn flood(raw: &mut Raw, op: &Op, requests: usize) -> usize {
    let mut frame = Vec::new();
    for id in 0..requests {
        let msg = ClientMsg::Request {
            id: id as u64,
            op: op.clone(),
        };
        ipcq_proto::encode(&msg, 0, 1 << 24, &mut frame).unwrap();
    }
    assert!(raw.set_timeouts(Some(Duration::from_secs(1)), Some(Duration::from_secs(20))));
    let mut written = 0;
    while written < frame.len() {
        match raw.stream.write(&frame[written..]) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    written
}

#[cfg(unix)]
#[test]
fn a_client_that_never_reads_does_not_grow_the_broker_or_slow_others() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let pid = broker.child.id();
        let client = broker.client();
        // Many objects with long names make every stats answer large.
        for i in 0..2000 {
            let name = format!("{i:0>200}");
            client.raw_queue(&name, 0).unwrap();
        }
        let before = rss_kib(pid);
        let mut hostile = Raw::handshake(&broker.addr);
        // 40 MB of answers if they were all kept: 100 stats requests of ~420 KB each.
        let sent = flood(&mut hostile, &Op::Stats, 100);
        let mut pinger = Raw::handshake(&broker.addr);
        let sent_pings = flood(&mut pinger, &Op::Ping, 2_000_000);
        // The broker stopped reading both: far less than all was taken.
        assert!(
            sent_pings < 2_000_000 * 7,
            "the broker stopped reading the pinger"
        );
        let start = Instant::now();
        client.ping().unwrap();
        let ping = start.elapsed();
        let after = rss_kib(pid);
        eprintln!(
            "stats requests written {sent} B, pings written {sent_pings} B; broker RSS \
             {before} KiB -> {after} KiB; another client's ping took {ping:?}"
        );
        assert!(
            after < before + 32 * 1024,
            "broker grew from {before} KiB to {after} KiB"
        );
        assert!(ping < Duration::from_secs(2), "a ping took {ping:?}");
        drop(hostile);
        drop(pinger);
    });
}

#[test]
fn a_connection_over_the_soft_limit_too_long_is_dropped_and_its_items_go_back() {
    watchdog(LIMIT, || {
        let broker =
            TestBroker::start_with(&["--output-soft-limit", "4096", "--output-soft-seconds", "1"]);
        let client = broker.client();
        let jobs = client.raw_queue("jobs", 0).unwrap();
        for i in 0..50u8 {
            jobs.put(&[i; 60_000]).unwrap();
        }
        // A consumer that asks for everything and reads none of it.
        let mut hostile = open_raw(&broker.addr, "jobs", 1 << 24);
        let get = Op::GetMany {
            handle: 0,
            max: 50,
            wait: Wait::Block,
        };
        hostile.send(&ClientMsg::Request { id: 2, op: get }, &[]);
        // It is dropped, and the 50 items are back in the queue, in order.
        wait_until(&client, "jobs", "the unread items to come back", |q| {
            q.ready == 50 && q.in_flight == 0
        });
        broker.wait_for_log("does not read its answers");
        for i in 0..50u8 {
            assert_eq!(jobs.get().unwrap()[0], i);
        }
    });
}

#[test]
fn deliveries_past_the_hard_limit_drop_the_connection_and_the_items_go_back() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start_with(&[
            "--max-frame-len",
            "65536",
            "--output-soft-limit",
            "4096",
            "--output-hard-limit",
            "200000",
        ]);
        let client = broker.client();
        let jobs = client.raw_queue("jobs", 0).unwrap();
        // A consumer that parks 20 gets and reads nothing.
        let mut hostile = open_raw(&broker.addr, "jobs", 1 << 24);
        for id in 2..22 {
            let get = Op::Get {
                handle: 0,
                wait: Wait::Block,
            };
            hostile.send(&ClientMsg::Request { id, op: get }, &[]);
        }
        wait_until(&client, "jobs", "20 parked getters", |q| q.getters == 20);
        for i in 0..20u8 {
            jobs.put(&[i; 30_000]).unwrap();
        }
        wait_until(&client, "jobs", "the unread items to come back", |q| {
            q.ready == 20 && q.in_flight == 0
        });
        broker.wait_for_log("does not read its answers");
        for i in 0..20u8 {
            assert_eq!(jobs.get().unwrap()[0], i);
        }
    });
}

#[test]
fn stats_of_65536_long_names_come_page_by_page() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        // 65,536 objects of 255-byte names: 17.5 MB of figures, more than one frame.
        let name = |i: usize| format!("{i:0>255}");
        for i in 0..65_536 {
            client.event(&name(i)).unwrap();
        }
        let stats = client.stats().unwrap();
        assert_eq!(stats.len(), 65_536);
        assert!(stats.windows(2).all(|pair| pair[0].name < pair[1].name));
        assert_eq!(stats[12_345].name, name(12_345));
        // The command line lists them all too, and the old one-answer request gets a clear
        // error rather than silence.
        let out = cli(&broker.addr, &["stats", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(value["objects"].as_array().unwrap().len(), 65_536);
        let mut raw = Raw::handshake(&broker.addr);
        raw.send(
            &ClientMsg::Request {
                id: 9,
                op: Op::Stats,
            },
            &[],
        );
        let (reply, _) = raw.read_broker_msg();
        let text = format!("{reply:?}");
        assert!(
            text.contains("TooLarge") && text.contains("page by page"),
            "{text}"
        );
    });
}

#[test]
fn an_item_larger_than_a_client_accepts_is_too_large_for_it_and_stays() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.raw_queue("big", 0).unwrap();
        queue.put(&[1; 5000]).unwrap();
        // A client that accepts frames of 2 KiB at most.
        let mut small = open_raw(&broker.addr, "big", 2048);
        for (id, wait) in [(2, Wait::NoWait), (3, Wait::Block)] {
            let get = Op::Get { handle: 0, wait };
            small.send(&ClientMsg::Request { id, op: get }, &[]);
            let (reply, _) = small.read_broker_msg();
            let text = format!("{reply:?}");
            assert!(
                text.contains("TooLarge") && text.contains("5000 bytes"),
                "{text}"
            );
        }
        // A getter parked before the item came is told the same when it comes.
        let mut parked = open_raw(&broker.addr, "later", 2048);
        let get = Op::Get {
            handle: 0,
            wait: Wait::Block,
        };
        parked.send(&ClientMsg::Request { id: 2, op: get }, &[]);
        wait_until(&client, "later", "the parked get", |q| q.getters == 1);
        let later = client.raw_queue("later", 0).unwrap();
        later.put(&[2; 5000]).unwrap();
        let (reply, _) = parked.read_broker_msg();
        assert!(format!("{reply:?}").contains("TooLarge"), "{reply:?}");
        // Both items stayed, whole, for a client that accepts them.
        assert_eq!(queue.get().unwrap().len(), 5000);
        assert_eq!(later.get().unwrap().len(), 5000);
    });
}

#[test]
fn a_half_sent_frame_counts_against_the_broker_wide_budget() {
    watchdog(LIMIT, || {
        let mib = (1 << 20).to_string();
        let broker = TestBroker::start_with(&[
            "--max-frame-len",
            &mib,
            "--max-queue-bytes",
            &mib,
            "--max-total-bytes",
            &mib,
        ]);
        let client = broker.client();
        let queue = client.raw_queue("q", 0).unwrap();
        queue.set_prefetch(1);
        let item = vec![5u8; 100_000];
        queue.put_nowait(&item).unwrap();
        queue.get().unwrap();
        // A frame of 1,000,000 bytes announced, 100,000 sent, then nothing.
        let mut stalled = Raw::handshake(&broker.addr);
        stalled.write(&1_000_000u32.to_le_bytes());
        stalled.write(&vec![0u8; 100_000]);
        // Once the broker has read that far, the frame holds the budget: no room for more.
        let start = Instant::now();
        loop {
            match queue.put_nowait(&item) {
                Err(err) if err.is_full() => break,
                Ok(()) => {
                    queue.get().unwrap();
                }
                Err(err) => panic!("{err}"),
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never counted");
            std::thread::yield_now();
        }
        // The stalled client goes away: its bytes are released and a waiting put goes in.
        let waiting = {
            let queue = queue.clone();
            let item = item.clone();
            std::thread::spawn(move || queue.put_timeout(&item, Duration::from_secs(30)))
        };
        wait_until(&client, "q", "a waiting put", |q| q.putters == 1);
        drop(stalled);
        waiting.join().unwrap().unwrap();
        assert_eq!(queue.len().unwrap(), 1);
    });
}

/// A consumer over the output soft limit that goes on acknowledging (as a client taking
/// items from its prefetch buffer does, one small write each) must not be stopped: its
/// acknowledgements ask for nothing back, and a broker that left them unread would block
/// the consumer's writes while waiting for it to read, and both would stop.
#[test]
fn acknowledgements_are_read_while_a_consumer_is_over_the_soft_limit() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.raw_queue("large", 0).unwrap();
        queue.put_many(vec![vec![7u8; 4096]; 1000]).unwrap();

        let mut consumer = open_raw(&broker.addr, "large", 1 << 24);
        // 4 MB of deliveries, far over the 256 KiB soft limit, left unread.
        let op = Op::GetMany {
            handle: 0,
            max: 1000,
            wait: Wait::NoWait,
        };
        consumer.send(&ClientMsg::Request { id: 2, op }, &[]);
        // The reply's head only: [length][Reply][id 2][Items][tag]...
        let mut head = [0u8; 16];
        std::io::Read::read_exact(&mut consumer.stream, &mut head).unwrap();
        assert_eq!(head[4..7], [0, 2, 4], "{head:?}");
        let (mut tag, mut shift, mut at) = (0u64, 0, 7);
        loop {
            let byte = head[at];
            at += 1;
            tag |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        // One write per acknowledgement, as many as a socket holds several times over.
        // (On Windows a write that never completes is caught by the watchdog instead.)
        consumer.set_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(20)));
        for tag in tag..tag + 1000 {
            let mut frame = Vec::new();
            ipcq_proto::encode(&ClientMsg::Ack { tag, count: 1 }, 0, 1 << 24, &mut frame).unwrap();
            consumer.stream.write_all(&frame).expect(
                "the broker reads acknowledgements while the consumer is over the soft limit",
            );
        }
        // A ping behind them, answered after the deliveries: once it is back, every
        // acknowledgement has been handled.
        consumer.send(
            &ClientMsg::Request {
                id: 3,
                op: Op::Ping,
            },
            &[],
        );
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut rest = vec![0u8; len + 4 - head.len()];
        std::io::Read::read_exact(&mut consumer.stream, &mut rest).unwrap();
        assert!(matches!(
            consumer.read_broker_msg().0,
            ipcq_proto::BrokerMsg::Reply {
                id: 3,
                body: ipcq_proto::Reply::Pong
            }
        ));
        // Every delivery was acknowledged: the items are taken for good.
        let stats = queue_stats(&client, "large");
        assert_eq!((stats.ready, stats.in_flight), (0, 0), "{stats:?}");
        assert_eq!(stats.total_got, 1000);
    });
}
