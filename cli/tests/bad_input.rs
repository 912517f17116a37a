//! Bad input of every kind costs the sender its connection (or its request) and nothing
//! else: a second client keeps working throughout and the broker never panics.

mod common;

use std::time::Duration;

use common::raw::Raw;
use common::*;
use ipcq_proto::{BrokerMsg, ClientMsg, ErrorCode, Hello, Kind, Op, Reply, Wait};

const LIMIT: Duration = Duration::from_secs(60);

/// The last message before the broker closed the connection must be a fatal error of
/// `code` whose message contains `words`.
fn assert_refused(raw: &mut Raw, code: ErrorCode, words: &str) {
    let messages = raw.read_to_close();
    match messages.last() {
        Some(BrokerMsg::Fatal(err)) => {
            assert_eq!(err.code, code, "{err:?}");
            assert!(
                err.message.contains(words),
                "{:?} lacks {words:?}",
                err.message
            );
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

fn open_queue(raw: &mut Raw, id: u64, name: &str) -> u32 {
    let op = Op::Open {
        name: name.into(),
        kind: Kind::Queue {
            capacity: 0,
            auto_delete: false,
            dead_letter: None,
            slot_size: 0,
        },
    };
    raw.send(&ClientMsg::Request { id, op }, &[]);
    match raw.read_broker_msg().0 {
        BrokerMsg::Reply {
            id: got,
            body: Reply::Opened { handle },
        } if got == id => handle,
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_input_costs_only_the_offending_connection() {
    watchdog(LIMIT, || {
        let mut broker = TestBroker::start();
        let bystander = broker.client();
        let queue = bystander.queue::<u64>("steady", 0).unwrap();
        let mut sent = 0u64;
        let mut check_bystander = |what: &str| {
            queue
                .put(&sent)
                .unwrap_or_else(|err| panic!("after {what}: {err}"));
            assert_eq!(queue.get().unwrap(), sent, "after {what}");
            sent += 1;
        };

        // Garbage instead of a handshake: its "length" is far beyond a handshake's.
        let mut raw = Raw::connect(&broker.addr);
        raw.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_refused(&mut raw, ErrorCode::Protocol, "bad handshake");
        check_bystander("garbage");

        // A short frame that is not a handshake.
        let mut raw = Raw::connect(&broker.addr);
        raw.write(&[4, 0, 0, 0, b'a', b'b', b'c', b'd']);
        assert_refused(&mut raw, ErrorCode::Protocol, "handshake");
        check_bystander("a frame that is not a handshake");

        // The right shape from the wrong version.
        let mut raw = Raw::connect(&broker.addr);
        raw.send_hello(Hello {
            version: 99,
            ..Hello::new(1024)
        });
        assert_refused(&mut raw, ErrorCode::Protocol, "version");
        check_bystander("wrong version");

        // The right version with the wrong magic.
        let mut raw = Raw::connect(&broker.addr);
        raw.send_hello(Hello {
            magic: *b"NOPE",
            ..Hello::new(1024)
        });
        assert_refused(&mut raw, ErrorCode::Protocol, "not an ipcq peer");
        check_bystander("wrong magic");

        // After the handshake: a length prefix over the frame limit.
        let mut raw = Raw::handshake(&broker.addr);
        raw.write(&(64u32 << 20).to_le_bytes());
        assert_refused(&mut raw, ErrorCode::TooLarge, "exceeds the limit");
        check_bystander("oversized length prefix");

        // A complete frame with garbage inside.
        let mut raw = Raw::handshake(&broker.addr);
        raw.write(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert_refused(&mut raw, ErrorCode::Protocol, "malformed");
        check_bystander("garbage frame");

        // A truncated frame, then the sender goes away.
        let mut raw = Raw::handshake(&broker.addr);
        raw.write(&[100, 0, 0, 0, 1, 2, 3]);
        drop(raw);
        check_bystander("truncated frame");

        // Request-level errors answer the request and keep the connection.
        let mut raw = Raw::handshake(&broker.addr);
        let handle = open_queue(&mut raw, 1, "raw");
        let requests = [
            (
                2,
                Op::Get {
                    handle: 77,
                    wait: Wait::NoWait,
                },
                ErrorCode::UnknownHandle,
            ),
            (3, Op::Info { handle: 77 }, ErrorCode::UnknownHandle),
            (
                4,
                Op::GetMany {
                    handle,
                    max: 0,
                    wait: Wait::NoWait,
                },
                ErrorCode::InvalidArgument,
            ),
            (
                5,
                Op::PutMany {
                    handle,
                    lens: vec![10],
                    credits: 0,
                },
                ErrorCode::InvalidArgument,
            ),
            (
                6,
                Op::Remove {
                    name: "nothing-here".into(),
                },
                ErrorCode::NotFound,
            ),
            (
                7,
                Op::Open {
                    name: "\u{7}".into(),
                    kind: Kind::Queue {
                        capacity: 0,
                        auto_delete: false,
                        dead_letter: None,
                        slot_size: 0,
                    },
                },
                ErrorCode::InvalidName,
            ),
        ];
        for (id, op, code) in requests {
            raw.send(&ClientMsg::Request { id, op: op.clone() }, &[]);
            match raw.read_broker_msg().0 {
                BrokerMsg::Reply {
                    id: got,
                    body: Reply::Error(err),
                } if got == id => {
                    assert_eq!(err.code, code, "{op:?}: {err:?}")
                }
                other => panic!("{op:?}: {other:?}"),
            }
        }
        // Items on a request that takes none.
        raw.send(
            &ClientMsg::Request {
                id: 8,
                op: Op::Ping,
            },
            b"stray",
        );
        assert!(matches!(
            raw.read_broker_msg().0,
            BrokerMsg::Reply { id: 8, body: Reply::Error(ref err) } if err.code == ErrorCode::InvalidArgument
        ));
        // Acknowledging what was never delivered settles nothing.
        raw.send(
            &ClientMsg::Ack {
                tag: 12345,
                count: 1000,
            },
            &[],
        );
        raw.send(
            &ClientMsg::Request {
                id: 9,
                op: Op::Put {
                    handle,
                    wait: Wait::Block,
                    credits: 0,
                },
            },
            b"ok",
        );
        assert!(matches!(
            raw.read_broker_msg().0,
            BrokerMsg::Reply {
                id: 9,
                body: Reply::Accepted { credits: 0, .. }
            }
        ));
        check_bystander("request errors");

        // Through all of it the broker stayed up, and it shuts down cleanly.
        let log = broker.stop_cleanly();
        assert!(!log.contains("panicked"), "{log}");
    });
}

#[test]
fn disconnect_while_get_is_answered_returns_the_item_to_the_head() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.raw_queue("q", 0).unwrap();

        let mut raw = Raw::handshake(&broker.addr);
        let handle = open_queue(&mut raw, 1, "q");
        raw.send(
            &ClientMsg::Request {
                id: 2,
                op: Op::Get {
                    handle,
                    wait: Wait::Block,
                },
            },
            &[],
        );
        wait_until(&client, "q", "the raw getter to park", |s| s.getters == 1);
        queue.put_many([b"first".as_slice(), b"second"]).unwrap();
        // The item reached the raw client, which goes away without acknowledging it.
        match raw.read_broker_msg() {
            (
                BrokerMsg::Reply {
                    id: 2,
                    body: Reply::Item { .. },
                },
                item,
            ) => assert_eq!(&item[..], b"first"),
            other => panic!("{other:?}"),
        }
        assert_eq!(queue_stats(&client, "q").in_flight, 1);
        drop(raw);
        wait_until(&client, "q", "the item to come back", |s| {
            s.in_flight == 0 && s.ready == 2
        });

        // It is back at the head, before the item that was behind it.
        assert_eq!(
            &queue.get_timeout(Duration::from_secs(20)).unwrap()[..],
            b"first"
        );
        assert_eq!(&queue.get().unwrap()[..], b"second");
        let stats = queue_stats(&client, "q");
        assert_eq!(
            (stats.total_put, stats.total_got, stats.in_flight),
            (2, 2, 0)
        );
    });
}

#[test]
fn acknowledged_items_are_gone_for_good() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.raw_queue("q", 0).unwrap();
        queue.put(b"one").unwrap();

        let mut raw = Raw::handshake(&broker.addr);
        let handle = open_queue(&mut raw, 1, "q");
        raw.send(
            &ClientMsg::Request {
                id: 2,
                op: Op::Get {
                    handle,
                    wait: Wait::Block,
                },
            },
            &[],
        );
        let tag = match raw.read_broker_msg().0 {
            BrokerMsg::Reply {
                id: 2,
                body: Reply::Item { tag, .. },
            } => tag,
            other => panic!("{other:?}"),
        };
        raw.send(&ClientMsg::Ack { tag, count: 1 }, &[]);
        // Acknowledging twice does not settle anything twice.
        raw.send(&ClientMsg::Ack { tag, count: 1 }, &[]);
        raw.send(
            &ClientMsg::Request {
                id: 3,
                op: Op::Ping,
            },
            &[],
        );
        assert!(matches!(
            raw.read_broker_msg().0,
            BrokerMsg::Reply {
                id: 3,
                body: Reply::Pong
            }
        ));
        drop(raw);
        wait_until(&client, "q", "the raw client's departure", |s| {
            s.total_got == 1
        });
        assert!(queue.get_nowait().unwrap_err().is_empty());
        assert_eq!(queue.len().unwrap(), 0);
    });
}

/// Opens `name` as `kind` on `raw`; returns the handle.
fn open(raw: &mut Raw, id: u64, name: &str, kind: Kind) -> u32 {
    let op = Op::Open {
        name: name.into(),
        kind,
    };
    match request(raw, id, op) {
        Reply::Opened { handle } => handle,
        other => panic!("open {name}: {other:?}"),
    }
}

/// Sends one request and returns its answer, checking that it is the only one.
fn request(raw: &mut Raw, id: u64, op: Op) -> Reply {
    raw.send(&ClientMsg::Request { id, op: op.clone() }, &[]);
    match raw.read_broker_msg().0 {
        BrokerMsg::Reply { id: got, body } if got == id => body,
        other => panic!("{op:?}: {other:?}"),
    }
}

fn code(reply: &Reply) -> Option<ErrorCode> {
    match reply {
        Reply::Error(err) => Some(err.code),
        _ => None,
    }
}

/// Every request kind on every kind of handle, with unknown handles, extreme counts and
/// timeouts, and bad names: each gets exactly one clear answer on a connection that stays
/// open, while a well-behaved client keeps working the whole time.
#[test]
fn every_request_kind_with_bad_arguments_gets_a_clear_answer() {
    watchdog(LIMIT, || {
        let mut broker = TestBroker::start();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bystander = {
            let client = broker.client();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let queue = client.queue::<u64>("steady", 8).unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    queue.put(&n).unwrap();
                    assert_eq!(queue.get().unwrap(), n);
                    n += 1;
                }
                n
            })
        };
        let mut raw = Raw::handshake(&broker.addr);
        let kinds = [
            (
                "queue",
                Kind::Queue {
                    capacity: u64::MAX,
                    auto_delete: false,
                    dead_letter: None,
                    slot_size: 0,
                },
            ),
            ("lock", Kind::Lock),
            ("semaphore", Kind::Semaphore { permits: u64::MAX }),
            ("event", Kind::Event),
            ("barrier", Kind::Barrier { parties: u64::MAX }),
            (
                "pipe",
                Kind::PipeEnd {
                    duplex: false,
                    capacity: 1,
                    end: 1,
                },
            ),
        ];
        let mut id = 100;
        let handles: Vec<(&str, u32)> = kinds
            .iter()
            .map(|(name, kind)| {
                id += 1;
                (*name, open(&mut raw, id, name, kind.clone()))
            })
            .collect();
        // Which kinds take which requests, each without waiting.
        let ops = |h: u32| -> Vec<(Op, &'static [&'static str])> {
            let queues: &[&str] = &["queue", "pipe"];
            let w = Wait::NoWait;
            vec![
                (Op::Get { handle: h, wait: w }, &["queue"]),
                (
                    Op::GetMany {
                        handle: h,
                        max: u32::MAX,
                        wait: w,
                    },
                    &["queue"],
                ),
                (Op::Info { handle: h }, queues),
                (
                    Op::Reserve {
                        handle: h,
                        credits: u32::MAX,
                        len: u32::MAX,
                    },
                    queues,
                ),
                (
                    Op::WaitRoom {
                        handle: h,
                        len: 8,
                        wait: w,
                        credits: u32::MAX,
                    },
                    queues,
                ),
                (Op::Acquire { handle: h, wait: w }, &["lock", "semaphore"]),
                // Held by the acquire just before.
                (Op::ReleasePermit { handle: h }, &["lock", "semaphore"]),
                (Op::SetEvent { handle: h }, &["event"]),
                (Op::ClearEvent { handle: h }, &["event"]),
                (Op::WaitEvent { handle: h, wait: w }, &["event"]),
                (Op::ResetBarrier { handle: h }, &["barrier"]),
                (Op::TaskDone { handle: h }, &[]),
                (Op::Join { handle: h, wait: w }, &["queue"]),
            ]
        };
        for &(kind, handle) in &handles {
            for (op, takers) in ops(handle) {
                id += 1;
                let reply = request(&mut raw, id, op.clone());
                let code = code(&reply);
                if takers.contains(&kind) {
                    assert!(
                        !matches!(
                            code,
                            Some(
                                ErrorCode::WrongKind
                                    | ErrorCode::UnknownHandle
                                    | ErrorCode::Protocol
                            )
                        ),
                        "{kind} {op:?}: {reply:?}"
                    );
                } else {
                    // The wrong kind of object, or a request that is wrong in itself
                    // (releasing nothing held, one task_done too many, a simplex pipe's
                    // sending end asked to receive).
                    assert!(
                        matches!(
                            code,
                            Some(ErrorCode::WrongKind | ErrorCode::InvalidArgument)
                        ),
                        "{kind} {op:?}: {reply:?}"
                    );
                }
            }
            // Credits granted above go back, so the queue is clean.
            if kind == "queue" || kind == "pipe" {
                let msg = ClientMsg::Release {
                    handle,
                    credits: u32::MAX,
                    bytes: u64::MAX,
                };
                raw.send(&msg, &[]);
            }
        }
        // Unknown handles, on every request kind.
        for (op, _) in ops(u32::MAX) {
            id += 1;
            let reply = request(&mut raw, id, op.clone());
            assert_eq!(code(&reply), Some(ErrorCode::UnknownHandle), "{op:?}");
        }
        // Names: too long, control characters, empty; 255 bytes is fine.
        for (name, ok) in [
            ("x".repeat(256), false),
            ("tab\there".into(), false),
            ("nul\0".into(), false),
            (String::new(), false),
            ("x".repeat(255), true),
        ] {
            id += 1;
            let op = Op::Open {
                name: name.clone(),
                kind: Kind::Event,
            };
            let reply = request(&mut raw, id, op);
            assert_eq!(code(&reply).is_none(), ok, "{name:?}: {reply:?}");
            if !ok {
                assert_eq!(code(&reply), Some(ErrorCode::InvalidName));
            }
        }
        // A put declaring more bytes than it carries.
        id += 1;
        let queue = handles[0].1;
        raw.send(
            &ClientMsg::Request {
                id,
                op: Op::PutMany {
                    handle: queue,
                    lens: vec![u32::MAX, 1],
                    credits: 0,
                },
            },
            b"short",
        );
        assert!(matches!(
            raw.read_broker_msg().0,
            BrokerMsg::Reply { body: Reply::Error(ref err), .. } if err.code == ErrorCode::InvalidArgument
        ));
        // Zero and maximal timeouts: zero is "now"; the longest waits like `Block` and is
        // withdrawn like any parked request.
        id += 1;
        let reply = request(
            &mut raw,
            id,
            Op::Get {
                handle: queue,
                wait: Wait::Micros(0),
            },
        );
        assert_eq!(code(&reply), Some(ErrorCode::Empty));
        id += 1;
        raw.send(
            &ClientMsg::Request {
                id,
                op: Op::Get {
                    handle: queue,
                    wait: Wait::Micros(u64::MAX),
                },
            },
            &[],
        );
        raw.send(&ClientMsg::Cancel { handle: queue, id }, &[]);
        assert!(matches!(
            raw.read_broker_msg().0,
            BrokerMsg::Reply { id: got, body: Reply::Error(ref err) } if got == id && err.code == ErrorCode::Cancelled
        ));
        id += 1;
        assert_eq!(request(&mut raw, id, Op::Ping), Reply::Pong);

        // One-way messages that break the protocol end only their connection.
        let one_way: [(ClientMsg, &[u8]); 4] = [
            (ClientMsg::Send { handle: 99 }, b"item"),
            (ClientMsg::Cancel { handle: 99, id: 1 }, b""),
            (
                ClientMsg::Release {
                    handle: 99,
                    credits: 1,
                    bytes: 0,
                },
                b"",
            ),
            (
                ClientMsg::SendMany {
                    handle: 99,
                    lens: vec![4],
                },
                b"item",
            ),
        ];
        for (msg, tail) in one_way {
            let mut raw = Raw::handshake(&broker.addr);
            raw.send(&msg, tail);
            assert_refused(&mut raw, ErrorCode::Protocol, "");
        }
        // A put without a credit.
        let mut cheat = Raw::handshake(&broker.addr);
        let handle = open_queue(&mut cheat, 1, "cheat");
        cheat.send(&ClientMsg::Send { handle }, b"free ride");
        assert_refused(&mut cheat, ErrorCode::Protocol, "credit");

        // Half-written frames of every kind, then the writer goes away.
        let frames: Vec<Vec<u8>> = ops(0)
            .into_iter()
            .map(|(op, _)| {
                let mut frame = Vec::new();
                let msg = ClientMsg::Request { id: 1, op };
                ipcq_proto::encode(&msg, 0, 1 << 20, &mut frame).unwrap();
                frame
            })
            .collect();
        for frame in frames {
            for cut in [1, 3, 4, frame.len() - 1] {
                let mut half = Raw::handshake(&broker.addr);
                half.write(&frame[..cut]);
                drop(half);
            }
        }
        let mut half = Raw::connect(&broker.addr);
        half.write(&[12, 0, 0]);
        drop(half);

        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = bystander.join().unwrap();
        assert!(rounds > 0);
        let log = broker.stop_cleanly();
        assert!(!log.contains("panicked"), "{log}");
    });
}
