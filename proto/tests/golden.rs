//! Golden bytes: the wire format of every message is pinned here. postcard is not
//! self-describing, so a change to these types changes the protocol; if one of these
//! tests fails, either the change was a mistake or the protocol version must change.

use ipcq_proto::*;

fn bytes<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, 0, 1 << 20, &mut out).unwrap();
    // Strip the length prefix, but check it first.
    assert_eq!(
        u32::from_le_bytes(out[..4].try_into().unwrap()) as usize,
        out.len() - 4
    );
    out.split_off(4)
}

#[test]
fn hello() {
    assert_eq!(
        bytes(&Hello::new(16 << 20)),
        [b'I', b'P', b'C', b'Q', 4, 0x80, 0x80, 0x80, 0x08]
    );
}

#[test]
fn client_messages() {
    let request = |op| bytes(&ClientMsg::Request { id: 300, op });
    assert_eq!(request(Op::Ping), [0, 0xac, 0x02, 0]);
    assert_eq!(
        request(Op::Open {
            name: "jobs".into(),
            kind: Kind::Queue {
                capacity: 64,
                auto_delete: true,
                dead_letter: None,
                slot_size: 300
            }
        }),
        [0, 0xac, 0x02, 1, 4, b'j', b'o', b'b', b's', 0, 64, 1, 0, 0xac, 0x02]
    );
    assert_eq!(
        request(Op::Put {
            handle: 2,
            wait: Wait::Block,
            credits: 64
        }),
        [0, 0xac, 0x02, 2, 2, 0, 64]
    );
    assert_eq!(
        request(Op::Put {
            handle: 2,
            wait: Wait::NoWait,
            credits: 0
        }),
        [0, 0xac, 0x02, 2, 2, 1, 0]
    );
    assert_eq!(
        request(Op::Put {
            handle: 2,
            wait: Wait::Micros(1000),
            credits: 1
        }),
        [0, 0xac, 0x02, 2, 2, 2, 0xe8, 0x07, 1]
    );
    assert_eq!(
        request(Op::PutMany {
            handle: 2,
            lens: vec![1, 200],
            credits: 3
        }),
        [0, 0xac, 0x02, 3, 2, 2, 1, 0xc8, 0x01, 3]
    );
    assert_eq!(
        request(Op::Get {
            handle: 2,
            wait: Wait::Block
        }),
        [0, 0xac, 0x02, 4, 2, 0]
    );
    assert_eq!(
        request(Op::GetMany {
            handle: 2,
            max: 64,
            wait: Wait::NoWait
        }),
        [0, 0xac, 0x02, 5, 2, 64, 1]
    );
    assert_eq!(request(Op::Info { handle: 2 }), [0, 0xac, 0x02, 6, 2]);
    assert_eq!(request(Op::Close { handle: 2 }), [0, 0xac, 0x02, 7, 2]);
    assert_eq!(request(Op::Stats), [0, 0xac, 0x02, 8]);
    assert_eq!(
        request(Op::Remove { name: "q".into() }),
        [0, 0xac, 0x02, 9, 1, b'q']
    );
    assert_eq!(
        request(Op::Reserve {
            handle: 2,
            credits: 128,
            len: 3
        }),
        [0, 0xac, 0x02, 10, 2, 0x80, 0x01, 3]
    );
    assert_eq!(
        request(Op::Acquire {
            handle: 2,
            wait: Wait::Block
        }),
        [0, 0xac, 0x02, 11, 2, 0]
    );
    assert_eq!(
        request(Op::ReleasePermit { handle: 2 }),
        [0, 0xac, 0x02, 12, 2]
    );
    assert_eq!(request(Op::SetEvent { handle: 2 }), [0, 0xac, 0x02, 13, 2]);
    assert_eq!(
        request(Op::ClearEvent { handle: 2 }),
        [0, 0xac, 0x02, 14, 2]
    );
    assert_eq!(
        request(Op::WaitEvent {
            handle: 2,
            wait: Wait::NoWait
        }),
        [0, 0xac, 0x02, 15, 2, 1]
    );
    assert_eq!(
        request(Op::WaitBarrier {
            handle: 2,
            wait: Wait::Block
        }),
        [0, 0xac, 0x02, 16, 2, 0]
    );
    assert_eq!(
        request(Op::ResetBarrier { handle: 2 }),
        [0, 0xac, 0x02, 17, 2]
    );
    assert_eq!(request(Op::TaskDone { handle: 2 }), [0, 0xac, 0x02, 18, 2]);
    assert_eq!(
        request(Op::Join {
            handle: 2,
            wait: Wait::NoWait
        }),
        [0, 0xac, 0x02, 19, 2, 1]
    );
    assert_eq!(bytes(&ClientMsg::Ack { tag: 5, count: 2 }), [1, 5, 2]);
    assert_eq!(bytes(&ClientMsg::Send { handle: 2 }), [2, 2]);
    assert_eq!(
        bytes(&ClientMsg::SendMany {
            handle: 2,
            lens: vec![64, 1]
        }),
        [3, 2, 2, 64, 1]
    );
    assert_eq!(
        bytes(&ClientMsg::Release {
            handle: 2,
            credits: 7,
            bytes: 9
        }),
        [4, 2, 7, 9]
    );
    assert_eq!(bytes(&ClientMsg::Return { tag: 5, count: 2 }), [5, 5, 2]);
    assert_eq!(
        bytes(&ClientMsg::Cancel { handle: 2, id: 300 }),
        [6, 2, 0xac, 0x02]
    );
    assert_eq!(bytes(&ClientMsg::Finish { tag: 5, count: 2 }), [7, 5, 2]);
    assert_eq!(
        bytes(&ClientMsg::DeadLetter { tag: 5, count: 2 }),
        [8, 5, 2]
    );
    assert_eq!(
        bytes(&ClientMsg::Lease {
            tag: 5,
            count: 1,
            millis: 300
        }),
        [9, 5, 1, 0xac, 0x02]
    );
    assert_eq!(
        request(Op::Finish { tag: 5, count: 2 }),
        [0, 0xac, 0x02, 23, 5, 2]
    );
    assert_eq!(
        request(Op::WaitRoom {
            handle: 2,
            len: 200,
            wait: Wait::Block,
            credits: 8
        }),
        [0, 0xac, 0x02, 20, 2, 0xc8, 0x01, 0, 8]
    );
    assert_eq!(
        request(Op::StatsPage {
            after: "q".into(),
            max_len: 300
        }),
        [0, 0xac, 0x02, 21, 1, b'q', 0xac, 0x02]
    );
    assert_eq!(
        request(Op::Lookup { name: "q".into() }),
        [0, 0xac, 0x02, 22, 1, b'q']
    );
    assert_eq!(
        request(Op::ShareQueue { handle: 2 }),
        [0, 0xac, 0x02, 24, 2]
    );
    assert_eq!(
        request(Op::FetchShared { token: 300 }),
        [0, 0xac, 0x02, 25, 0xac, 0x02]
    );
}

#[test]
fn broker_messages() {
    let reply = |body| bytes(&BrokerMsg::Reply { id: 1, body });
    assert_eq!(reply(Reply::Done), [0, 1, 0]);
    assert_eq!(reply(Reply::Pong), [0, 1, 1]);
    assert_eq!(reply(Reply::Opened { handle: 4 }), [0, 1, 2, 4]);
    assert_eq!(
        reply(Reply::Shared {
            token: 300,
            owner: 7
        }),
        [0, 1, 13, 0xac, 0x02, 7]
    );
    assert_eq!(reply(Reply::Item { tag: 9, earlier: 2 }), [0, 1, 3, 9, 2]);
    assert_eq!(
        reply(Reply::Items {
            tag: 9,
            lens: vec![3, 4],
            ready: 5,
            earlier: Vec::new()
        }),
        [0, 1, 4, 9, 2, 3, 4, 5, 0]
    );
    assert_eq!(
        reply(Reply::Items {
            tag: 9,
            lens: vec![3],
            ready: 0,
            earlier: vec![1]
        }),
        [0, 1, 4, 9, 1, 3, 0, 1, 1]
    );
    assert_eq!(
        reply(Reply::QueueInfo(QueueInfo {
            len: 3,
            capacity: 10,
            full: false,
            closed: true
        })),
        [0, 1, 5, 3, 10, 0, 1]
    );
    let stats = QueueStats {
        ready: 1,
        in_flight: 2,
        reserved: 9,
        capacity: 3,
        bytes: 4,
        getters: 5,
        putters: 6,
        total_put: 7,
        total_got: 8,
        closed: false,
        auto_delete: true,
        redelivered: 2,
        dead_lettered: 3,
        holders: vec![Holder {
            pid: 300,
            connection: 4,
            in_flight: 2,
        }],
        shared_memory: true,
        torn_writes: 5,
    };
    assert_eq!(
        reply(Reply::Stats(vec![ObjectStats {
            name: "q".into(),
            detail: ObjectDetail::Queue(stats.clone())
        }])),
        [
            0, 1, 6, 1, 1, b'q', 0, 1, 2, 9, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 1, 0xac, 0x02, 4, 2, 1,
            5
        ]
    );
    assert_eq!(
        reply(Reply::StatsPage {
            objects: vec![ObjectStats {
                name: "q".into(),
                detail: ObjectDetail::Queue(stats)
            }],
            more: true
        }),
        [
            0, 1, 12, 1, 1, b'q', 0, 1, 2, 9, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 1, 0xac, 0x02, 4, 2, 1,
            5, 1
        ]
    );
    assert_eq!(
        reply(Reply::Accepted {
            credits: 3,
            bytes: 200
        }),
        [0, 1, 8, 3, 0xc8, 0x01]
    );
    assert_eq!(
        reply(Reply::Error(ErrorReply::new(ErrorCode::Full, "f"))),
        [0, 1, 7, 0, 1, b'f']
    );
    assert_eq!(
        bytes(&BrokerMsg::Fatal(ErrorReply::new(
            ErrorCode::ShuttingDown,
            ""
        ))),
        [1, 11, 0]
    );
}

#[test]
fn error_codes_keep_their_numbers() {
    let codes = [
        ErrorCode::Full,
        ErrorCode::Empty,
        ErrorCode::Closed,
        ErrorCode::Conflict,
        ErrorCode::Busy,
        ErrorCode::TooLarge,
        ErrorCode::UnknownHandle,
        ErrorCode::WrongKind,
        ErrorCode::InvalidName,
        ErrorCode::NotFound,
        ErrorCode::Protocol,
        ErrorCode::ShuttingDown,
        ErrorCode::LimitReached,
        ErrorCode::InvalidArgument,
        ErrorCode::Broken,
        ErrorCode::Cancelled,
        ErrorCode::Denied,
        ErrorCode::Expired,
    ];
    for (number, code) in codes.into_iter().enumerate() {
        assert_eq!(
            postcard::to_stdvec(&code).unwrap(),
            [u8::try_from(number).unwrap()],
            "{code:?}"
        );
    }
}

#[test]
fn only_requests_and_cancels_ask_for_an_answer() {
    let asks = |msg: &ClientMsg| ClientMsg::asks_for_answer(&bytes(msg));
    assert!(asks(&ClientMsg::Request {
        id: 1,
        op: Op::Ping
    }));
    assert!(asks(&ClientMsg::Cancel { handle: 1, id: 2 }));
    assert!(!asks(&ClientMsg::Ack { tag: 1, count: 1 }));
    assert!(!asks(&ClientMsg::Send { handle: 1 }));
    assert!(!asks(&ClientMsg::SendMany {
        handle: 1,
        lens: vec![1]
    }));
    assert!(!asks(&ClientMsg::Release {
        handle: 1,
        credits: 1,
        bytes: 64
    }));
    assert!(!asks(&ClientMsg::Return { tag: 1, count: 1 }));
    assert!(!asks(&ClientMsg::Finish { tag: 1, count: 1 }));
    assert!(!asks(&ClientMsg::DeadLetter { tag: 1, count: 1 }));
    assert!(!asks(&ClientMsg::Lease {
        tag: 1,
        count: 1,
        millis: 1
    }));
    assert!(!ClientMsg::asks_for_answer(&[]));
}
