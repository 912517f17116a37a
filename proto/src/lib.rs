//! The ipcq wire protocol: frames and messages, with no I/O.
//!
//! # Layout
//!
//! - frames: a little-endian `u32` length, then that many bytes ([`decode_frame`],
//!   [`frame_prefix`]); the length is checked before anything is allocated;
//! - messages: [`Hello`] (the handshake, first frame each way), [`ClientMsg`] and
//!   [`BrokerMsg`], postcard-encoded ([`encode`], [`decode`]); item bytes travel after
//!   the message as the frame's tail and are never decoded by the broker;
//! - addresses: [`default_addr`] and [`classify_addr`], shared by broker and clients.
//!
//! # Hello, world!
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use ipcq_proto::{decode, decode_frame, encode, ClientMsg, Op, Wait};
//!
//! // A client puts the item "hello" on the queue behind handle 0.
//! let request = ClientMsg::Request { id: 1, op: Op::Put { handle: 0, wait: Wait::Block, credits: 0 } };
//! let mut wire = Vec::new();
//! encode(&request, 5, 1 << 24, &mut wire).unwrap();
//! wire.extend_from_slice(b"hello");
//!
//! // The broker reads the frame and finds the message and the item.
//! let mut buf = BytesMut::from(&wire[..]);
//! let frame = decode_frame(&mut buf, 1 << 24).unwrap().unwrap();
//! let (msg, item): (ClientMsg, Bytes) = decode(frame).unwrap();
//! assert_eq!(msg, request);
//! assert_eq!(&item[..], b"hello");
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod addr;
mod error;
mod frame;
mod message;

pub use addr::{classify_addr, default_addr, platform_addr, private_dir, AddrKind, ADDR_ENV};
pub use error::{CodecError, Error};
pub use frame::{
    decode_frame, frame_prefix, DEFAULT_MAX_FRAME_LEN, ITEM_OVERHEAD, MAX_HANDSHAKE_LEN,
    PREFIX_LEN, REPLY_SLACK,
};
pub use message::{
    check_name, decode, encode, encoded_len, item_cost, split_items, BarrierStats, BrokerMsg,
    ClientMsg, DeadLetter, ErrorCode, ErrorReply, EventStats, Hello, Holder, Kind, ObjectDetail,
    ObjectStats, Op, PermitStats, PipeStats, QueueInfo, QueueStats, Reply, Wait, ITEM_COST, MAGIC,
    MAX_NAME_LEN, VERSION,
};
