//! The blocking client against a scripted broker: what it does when the socket (or the
//! named pipe) is full in both directions at once.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::BytesMut;
use common::raw::listen;
use common::{addr_in, watchdog};
use interprocess::local_socket::traits::ListenerExt as _;
use interprocess::local_socket::Stream;
use ipcq_proto::{BrokerMsg, ClientMsg, Hello, Kind, Op, Reply};

const LIMIT: Duration = Duration::from_secs(60);

/// A credit answer that grants nothing.
const NONE_GRANTED: Reply = Reply::Accepted {
    credits: 0,
    bytes: 0,
};

/// One side of a scripted connection: whole frames in and out.
struct Script {
    stream: Stream,
    buf: BytesMut,
}

impl Script {
    fn read<T: serde::de::DeserializeOwned>(&mut self) -> (T, bytes::Bytes) {
        loop {
            if let Some(frame) = ipcq_proto::decode_frame(&mut self.buf, 1 << 25).unwrap() {
                return ipcq_proto::decode::<T>(frame).unwrap();
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the client closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn write<T: serde::Serialize>(&mut self, msg: &T, tail: &[u8]) {
        let mut frame = Vec::new();
        ipcq_proto::encode(msg, tail.len(), 1 << 25, &mut frame).unwrap();
        frame.extend_from_slice(tail);
        self.stream.write_all(&frame).unwrap();
    }

    fn answer(&mut self, id: u64, body: Reply) {
        self.write(&BrokerMsg::Reply { id, body }, &[]);
    }
}

impl Script {
    /// The next request, skipping acknowledgements.
    fn request(&mut self) -> (u64, Op) {
        loop {
            match self.read().0 {
                ClientMsg::Request { id, op } => return (id, op),
                ClientMsg::Ack { .. } => {}
                other => panic!("expected a request, got {other:?}"),
            }
        }
    }

    /// Reads and answers the client's next request, which must be `Open` of a queue, and
    /// (on Linux, for a bounded queue) its request for the queue's ring: this broker has
    /// none to share.
    fn opened(&mut self) {
        let (id, op) = self.request();
        let Op::Open {
            kind: Kind::Queue { capacity, .. },
            ..
        } = op
        else {
            panic!("expected the open of a queue, got {op:?}");
        };
        self.answer(id, Reply::Opened { handle: 0 });
        if cfg!(target_os = "linux") && capacity > 0 {
            let (id, op) = self.request();
            assert_eq!(op, Op::ShareQueue { handle: 0 });
            self.answer(id, Reply::Flag(false));
        }
    }
}

/// A broker played by `script` on a thread, at a fresh socket: it greets the one client
/// that connects, answers the ping every connection starts with, and hands the
/// connection to `script`.
fn scripted<T: Send + 'static>(
    play: impl FnOnce(Script) -> T + Send + 'static,
) -> (ipcq::Client, std::thread::JoinHandle<T>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let addr = addr_in(dir.path(), "scripted");
    let listener = listen(&addr);
    let broker = std::thread::spawn(move || {
        let stream = listener.incoming().next().unwrap().unwrap();
        let mut script = Script {
            stream,
            buf: BytesMut::new(),
        };
        let (hello, _): (Hello, _) = script.read();
        hello.check().unwrap();
        script.write(&Hello::new(16 << 20), &[]);
        let (id, op) = script.request();
        assert_eq!(op, Op::Ping);
        script.answer(id, Reply::Pong);
        play(script)
    });
    let client = ipcq::Client::connect(&addr).unwrap();
    (client, broker, dir)
}

/// The broker stops reading a client that leaves its answers unread. A client thread that
/// writes (puts on credits) while none of its threads reads must read what has come
/// between its writes, or it waits for the broker while the broker waits for it.
#[test]
fn a_write_that_finds_the_socket_full_reads_what_has_come() {
    watchdog(LIMIT, || {
        let puts = 50_000u64;
        let (client, broker, _dir) = scripted(move |mut script| {
            script.opened();
            let mut sends = 0u64;
            loop {
                let (msg, _): (ClientMsg, _) = script.read();
                match msg {
                    ClientMsg::Request {
                        id,
                        op: Op::WaitRoom { .. },
                    } => {
                        // Credits for every put, then 16 MB of answers nobody asked
                        // for, written before reading anything more: the client has to
                        // read them for these writes to end.
                        let credits = u32::try_from(puts + 1).unwrap();
                        script.answer(
                            id,
                            Reply::Accepted {
                                credits,
                                bytes: u64::MAX / 2,
                            },
                        );
                        let junk = vec![0u8; 1 << 20];
                        for id in 0..16 {
                            let body = Reply::Item {
                                tag: id,
                                earlier: 0,
                            };
                            script.write(&BrokerMsg::Reply { id: 1 << 40, body }, &junk);
                        }
                    }
                    ClientMsg::Send { .. } => {
                        sends += 1;
                        if sends == puts + 1 {
                            return sends;
                        }
                    }
                    // Credit requests along the way: none granted.
                    ClientMsg::Request {
                        id,
                        op: Op::Reserve { .. },
                    } => script.answer(id, NONE_GRANTED),
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        let queue = client.raw_queue("q", 0).unwrap();
        queue.put(b"first").unwrap();
        // Each on a credit: a write of its own, with nobody else reading.
        for _ in 0..puts {
            queue.put(b"x").unwrap();
        }
        assert_eq!(broker.join().unwrap(), puts + 1);
    });
}

/// Asked to give its credits back, a client releases every one it has not spent, with
/// the bytes granted for them, and waits for room with a round trip from then on.
#[test]
fn a_revoke_gives_back_the_unspent_credits_and_their_bytes() {
    watchdog(LIMIT, || {
        let (client, broker, _dir) = scripted(|mut script| {
            script.opened();
            // The first put waits for room: 101 credits, with bytes for 101 items of 1
            // byte.
            let (id, op) = script.request();
            assert!(matches!(op, Op::WaitRoom { .. }), "{op:?}");
            let per_item = ipcq_proto::item_cost(1);
            script.answer(
                id,
                Reply::Accepted {
                    credits: 101,
                    bytes: 101 * per_item,
                },
            );
            // Its item and ten more on credits; more credits asked for along the way get
            // none: 90 are left.
            let mut sends = 0;
            while sends < 11 {
                let (msg, _): (ClientMsg, _) = script.read();
                match msg {
                    ClientMsg::Send { handle: 0 } => sends += 1,
                    ClientMsg::Request {
                        id,
                        op: Op::Reserve { .. },
                    } => script.answer(id, NONE_GRANTED),
                    other => panic!("{other:?}"),
                }
            }
            script.write(&BrokerMsg::Revoke { handle: 0 }, &[]);
            // The client gives its credits back once it reads the revoke: when it next
            // waits for an answer (the ping), or at once where a thread of the client
            // reads all along (Windows).
            let (mut release, mut pinged) = (None, false);
            while release.is_none() || !pinged {
                let (msg, _): (ClientMsg, _) = script.read();
                match msg {
                    ClientMsg::Request { id, op: Op::Ping } => {
                        script.answer(id, Reply::Pong);
                        pinged = true;
                    }
                    ClientMsg::Request {
                        id,
                        op: Op::Reserve { .. },
                    } => script.answer(id, NONE_GRANTED),
                    msg @ ClientMsg::Release { .. } => release = Some(msg),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(
                release,
                Some(ClientMsg::Release {
                    handle: 0,
                    credits: 90,
                    bytes: 90 * per_item,
                })
            );
            // With no credit left, the next put waits for room first.
            let (id, op) = script.request();
            assert!(matches!(op, Op::WaitRoom { .. }), "{op:?}");
            script.answer(
                id,
                Reply::Accepted {
                    credits: 1,
                    bytes: per_item,
                },
            );
            let (send, _): (ClientMsg, _) = script.read();
            assert_eq!(send, ClientMsg::Send { handle: 0 });
        });
        let queue = client.raw_queue("q", 0).unwrap();
        queue.put(b"a").unwrap();
        for _ in 0..10 {
            queue.put(b"b").unwrap();
        }
        client.ping().unwrap();
        queue.put(b"c").unwrap();
        broker.join().unwrap();
    });
}

/// The broker drops a client that still holds prefetched items (as for one that stays
/// over the output limit too long) and gives them back to their queue. The client must
/// not hand them out as well: a get whose acknowledgement cannot be written fails, and the
/// rest of the buffer goes.
#[test]
fn items_of_a_dropped_connection_are_not_handed_out_twice() {
    watchdog(LIMIT, || {
        let (client, broker, _dir) = scripted(|mut script| {
            script.opened();
            let (id, op) = script.request();
            assert!(matches!(op, Op::GetMany { .. }), "{op:?}");
            script.write(
                &BrokerMsg::Reply {
                    id,
                    body: Reply::Items {
                        tag: 0,
                        lens: vec![1; 5],
                        ready: 0,
                        earlier: Vec::new(),
                    },
                },
                b"abcde",
            );
            // The first item is acknowledged; then the broker drops the connection.
            let (ack, _): (ClientMsg, _) = script.read();
            assert_eq!(ack, ClientMsg::Ack { tag: 0, count: 1 });
        });
        let queue = client.raw_queue("q", 0).unwrap();
        queue.set_prefetch(5);
        assert_eq!(&queue.get_many(1).unwrap()[..], [&b"a"[..]]);
        broker.join().unwrap();
        // Four items are still in this client, and the broker gave them back to the queue.
        let err = queue.get().unwrap_err();
        assert!(matches!(err, ipcq::Error::BrokerGone(_)), "{err}");
        let err = queue.get_nowait().unwrap_err();
        assert!(matches!(err, ipcq::Error::BrokerGone(_)), "{err}");
    });
}
