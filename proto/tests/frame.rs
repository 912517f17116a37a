//! Frames: round trips, partial input, leftovers, limits.

use bytes::{Bytes, BytesMut};
use ipcq_proto::{decode, decode_frame, encode, ClientMsg, Error, Op, Wait};

fn put_frame(id: u64, item: &[u8]) -> Vec<u8> {
    let msg = ClientMsg::Request {
        id,
        op: Op::Put {
            handle: 3,
            wait: Wait::Micros(1500),
            credits: 0,
        },
    };
    let mut out = Vec::new();
    encode(&msg, item.len(), 1 << 20, &mut out).unwrap();
    out.extend_from_slice(item);
    out
}

#[test]
fn round_trip_with_tail() {
    let wire = put_frame(7, b"payload");
    let mut buf = BytesMut::from(&wire[..]);
    let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    let (msg, tail): (ClientMsg, Bytes) = decode(frame).unwrap();
    assert_eq!(
        msg,
        ClientMsg::Request {
            id: 7,
            op: Op::Put {
                handle: 3,
                wait: Wait::Micros(1500),
                credits: 0
            }
        }
    );
    assert_eq!(&tail[..], b"payload");
    assert!(buf.is_empty());
}

#[test]
fn split_at_every_byte_is_partial_then_whole() {
    let wire = put_frame(u64::MAX, &[0xAB; 300]);
    for split in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..split]);
        assert_eq!(
            decode_frame(&mut buf, 1 << 20).unwrap(),
            None,
            "split at {split}"
        );
        buf.extend_from_slice(&wire[split..]);
        let frame = decode_frame(&mut buf, 1 << 20)
            .unwrap()
            .expect("whole frame");
        let (_, tail): (ClientMsg, Bytes) = decode(frame).unwrap();
        assert_eq!(tail.len(), 300);
        assert!(buf.is_empty());
    }
}

#[test]
fn leftover_bytes_are_kept_for_the_next_frame() {
    let mut wire = put_frame(1, b"a");
    wire.extend(put_frame(2, b"bb"));
    wire.extend(&put_frame(3, b"ccc")[..5]);
    let mut buf = BytesMut::from(&wire[..]);
    for (id, item) in [(1u64, &b"a"[..]), (2, b"bb")] {
        let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        let (msg, tail): (ClientMsg, Bytes) = decode(frame).unwrap();
        assert!(matches!(msg, ClientMsg::Request { id: got, .. } if got == id));
        assert_eq!(&tail[..], item);
    }
    assert_eq!(decode_frame(&mut buf, 1 << 20).unwrap(), None);
    assert_eq!(buf.len(), 5);
}

#[test]
fn oversized_length_is_refused_before_allocating() {
    let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
    let before = buf.capacity();
    match decode_frame(&mut buf, 16 << 20) {
        Err(Error::FrameTooLarge { len, max }) => {
            assert_eq!((len, max), (u32::MAX as usize, 16 << 20))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.capacity(), before, "nothing was reserved");
}

#[test]
fn oversized_frame_is_refused_on_encode_and_leaves_the_buffer_alone() {
    let mut out = vec![1, 2, 3];
    let msg = ClientMsg::Request {
        id: 1,
        op: Op::Ping,
    };
    assert!(matches!(
        encode(&msg, 2000, 1024, &mut out),
        Err(Error::FrameTooLarge { max: 1024, .. })
    ));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn garbage_in_a_complete_frame_is_a_decode_error() {
    let frame = Bytes::from_static(&[0xff, 0xff, 0xff]);
    assert!(matches!(decode::<ClientMsg>(frame), Err(Error::Decode(_))));
    // A frame that ends inside the message is corrupt, not partial.
    let frame = Bytes::from_static(&[0]);
    assert!(matches!(decode::<ClientMsg>(frame), Err(Error::Decode(_))));
}

#[test]
fn split_items_checks_lengths() {
    let items = ipcq_proto::split_items(Bytes::from_static(b"aabbb"), &[2, 3]).unwrap();
    assert_eq!(items, [&b"aa"[..], b"bbb"]);
    assert!(ipcq_proto::split_items(Bytes::from_static(b"aabbb"), &[2, 2]).is_err());
    assert!(ipcq_proto::split_items(Bytes::from_static(b"a"), &[u32::MAX, 2]).is_err());
}
