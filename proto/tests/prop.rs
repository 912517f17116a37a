//! Properties of the codec over generated messages and bytes: every message survives a
//! round trip with its tail, a stream of frames decodes the same however it is split into
//! reads, and no input makes a decoder panic or hand out more than the frame limit.

use bytes::{Bytes, BytesMut};
use ipcq_proto::{
    decode, decode_frame, encode, split_items, BrokerMsg, ClientMsg, DeadLetter, ErrorCode,
    ErrorReply, Kind, Op, Reply, Wait,
};
use proptest::prelude::*;

const MAX: usize = 1 << 16;

fn wait() -> impl Strategy<Value = Wait> {
    prop_oneof![
        Just(Wait::Block),
        Just(Wait::NoWait),
        any::<u64>().prop_map(Wait::Micros),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (
            any::<u64>(),
            any::<bool>(),
            prop::option::of(("[a-z]{1,8}", any::<u32>())),
            any::<u32>()
        )
            .prop_map(
                |(capacity, auto_delete, dead_letter, slot_size)| Kind::Queue {
                    capacity,
                    auto_delete,
                    dead_letter: dead_letter.map(|(queue, max_deliveries)| DeadLetter {
                        queue,
                        max_deliveries
                    }),
                    slot_size,
                }
            ),
        (any::<bool>(), any::<u64>(), any::<u8>()).prop_map(|(duplex, capacity, end)| {
            Kind::PipeEnd {
                duplex,
                capacity,
                end,
            }
        }),
        Just(Kind::Lock),
        any::<u64>().prop_map(|permits| Kind::Semaphore { permits }),
        Just(Kind::Event),
        any::<u64>().prop_map(|parties| Kind::Barrier { parties }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let h = any::<u32>();
    prop_oneof![
        Just(Op::Ping),
        (".{0,300}", kind()).prop_map(|(name, kind)| Op::Open { name, kind }),
        (h, wait(), any::<u32>()).prop_map(|(handle, wait, credits)| Op::Put {
            handle,
            wait,
            credits
        }),
        (h, prop::collection::vec(any::<u32>(), 0..8), any::<u32>()).prop_map(
            |(handle, lens, credits)| Op::PutMany {
                handle,
                lens,
                credits
            }
        ),
        (h, wait()).prop_map(|(handle, wait)| Op::Get { handle, wait }),
        (h, any::<u32>(), wait()).prop_map(|(handle, max, wait)| Op::GetMany { handle, max, wait }),
        h.prop_map(|handle| Op::Info { handle }),
        h.prop_map(|handle| Op::Close { handle }),
        Just(Op::Stats),
        ".{0,40}".prop_map(|name| Op::Remove { name }),
        (h, any::<u32>(), any::<u32>()).prop_map(|(handle, credits, len)| Op::Reserve {
            handle,
            credits,
            len
        }),
        (h, wait()).prop_map(|(handle, wait)| Op::Acquire { handle, wait }),
        h.prop_map(|handle| Op::ReleasePermit { handle }),
        (h, wait()).prop_map(|(handle, wait)| Op::WaitBarrier { handle, wait }),
        (h, wait()).prop_map(|(handle, wait)| Op::Join { handle, wait }),
        (h, any::<u32>(), wait(), any::<u32>()).prop_map(|(handle, len, wait, credits)| {
            Op::WaitRoom {
                handle,
                len,
                wait,
                credits,
            }
        }),
        (".{0,40}", any::<u32>()).prop_map(|(after, max_len)| Op::StatsPage { after, max_len }),
        ".{0,40}".prop_map(|name| Op::Lookup { name }),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (any::<u64>(), op()).prop_map(|(id, op)| ClientMsg::Request { id, op }),
        (any::<u64>(), any::<u32>()).prop_map(|(tag, count)| ClientMsg::Ack { tag, count }),
        any::<u32>().prop_map(|handle| ClientMsg::Send { handle }),
        (any::<u32>(), prop::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(handle, lens)| ClientMsg::SendMany { handle, lens }),
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(handle, credits, bytes)| {
            ClientMsg::Release {
                handle,
                credits,
                bytes,
            }
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(tag, count)| ClientMsg::Return { tag, count }),
        (any::<u32>(), any::<u64>()).prop_map(|(handle, id)| ClientMsg::Cancel { handle, id }),
        (any::<u64>(), any::<u32>()).prop_map(|(tag, count)| ClientMsg::Finish { tag, count }),
        (any::<u64>(), any::<u32>()).prop_map(|(tag, count)| ClientMsg::DeadLetter { tag, count }),
        (any::<u64>(), any::<u32>(), any::<u64>())
            .prop_map(|(tag, count, millis)| { ClientMsg::Lease { tag, count, millis } }),
    ]
}

fn broker_msg() -> impl Strategy<Value = BrokerMsg> {
    let reply = prop_oneof![
        Just(Reply::Done),
        Just(Reply::Pong),
        any::<u32>().prop_map(|handle| Reply::Opened { handle }),
        (
            any::<u64>(),
            prop::collection::vec(any::<u32>(), 0..8),
            any::<u64>(),
            prop::collection::vec(any::<u32>(), 0..8)
        )
            .prop_map(|(tag, lens, ready, earlier)| Reply::Items {
                tag,
                lens,
                ready,
                earlier
            }),
        (any::<u64>(), any::<u32>()).prop_map(|(tag, earlier)| Reply::Item { tag, earlier }),
        (any::<u32>(), any::<u64>())
            .prop_map(|(credits, bytes)| Reply::Accepted { credits, bytes }),
        any::<bool>().prop_map(|owner_died| Reply::Acquired { owner_died }),
        any::<bool>().prop_map(Reply::Flag),
        any::<u64>().prop_map(|index| Reply::Passed { index }),
        any::<bool>().prop_map(|more| Reply::StatsPage {
            objects: Vec::new(),
            more
        }),
        ".{0,60}".prop_map(|m| Reply::Error(ErrorReply::new(ErrorCode::Cancelled, m))),
    ];
    prop_oneof![
        (any::<u64>(), reply).prop_map(|(id, body)| BrokerMsg::Reply { id, body }),
        ".{0,60}".prop_map(|m| BrokerMsg::Fatal(ErrorReply::new(ErrorCode::Denied, m))),
        any::<u32>().prop_map(|handle| BrokerMsg::Revoke { handle }),
    ]
}

/// `msg` with `tail` as one frame.
fn framed<T: serde::Serialize>(msg: &T, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, tail.len(), MAX, &mut out).unwrap();
    out.extend_from_slice(tail);
    out
}

proptest! {
    #[test]
    fn client_messages_round_trip(msg in client_msg(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&framed(&msg, &tail)[..]);
        let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
        let (back, rest): (ClientMsg, Bytes) = decode(frame).unwrap();
        prop_assert_eq!(back, msg);
        prop_assert_eq!(&rest[..], &tail[..]);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn broker_messages_round_trip(msg in broker_msg(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&framed(&msg, &tail)[..]);
        let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
        let (back, rest): (BrokerMsg, Bytes) = decode(frame).unwrap();
        prop_assert_eq!(back, msg);
        prop_assert_eq!(&rest[..], &tail[..]);
    }

    /// However a stream of frames is cut into reads, the same messages come out, in order,
    /// and a frame never comes out before its last byte arrived.
    #[test]
    fn any_split_decodes_the_same(
        msgs in prop::collection::vec(client_msg(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let wire: Vec<u8> = msgs.iter().flat_map(|m| framed(m, b"item")).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for pair in cuts.windows(2) {
            buf.extend_from_slice(&wire[pair[0]..pair[1]]);
            while let Some(frame) = decode_frame(&mut buf, MAX).unwrap() {
                out.push(decode::<ClientMsg>(frame).unwrap().0);
            }
        }
        prop_assert_eq!(out, msgs);
        prop_assert!(buf.is_empty());
    }

    /// Any bytes: each decoder returns a value or an error, frames stay within the limit,
    /// and item lengths that do not add up to the tail are refused.
    #[test]
    fn any_bytes_are_refused_or_decoded(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decode_frame(&mut buf, 256) {
            prop_assert!(frame.len() <= 256);
            if let Ok((ClientMsg::SendMany { lens, .. }, tail)) = decode::<ClientMsg>(frame.clone()) {
                let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
                prop_assert_eq!(split_items(tail.clone(), &lens).is_ok(), total == tail.len() as u64);
            }
            let _ = decode::<BrokerMsg>(frame);
        }
    }
}
