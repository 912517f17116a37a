//! Whatever bytes arrive on a broker's socket go through the frame decoder and then the
//! message decoders. None of that may panic, allocate past the frame limit, or loop: every
//! input is either whole frames, a partial frame waiting for more, or an error.
#![no_main]

use bytes::BytesMut;
use ipcq_proto::{decode, decode_frame, split_items, BrokerMsg, ClientMsg, Hello, Reply};
use libfuzzer_sys::fuzz_target;

/// A small limit, so that "too large" is reached too.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The bytes as they might arrive, in two reads.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut buf = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decode_frame(&mut buf, MAX) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX);
                    assert!(buf.len() < before, "a frame consumes its bytes");
                    let _ = decode::<Hello>(frame.clone());
                    if let Ok((msg, tail)) = decode::<ClientMsg>(frame.clone()) {
                        if let ClientMsg::SendMany { lens, .. } = msg {
                            let _ = split_items(tail, &lens);
                        }
                    }
                    if let Ok((
                        BrokerMsg::Reply {
                            body: Reply::Items { lens, .. },
                            ..
                        },
                        tail,
                    )) = decode::<BrokerMsg>(frame)
                    {
                        let _ = split_items(tail, &lens);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
