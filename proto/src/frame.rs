//! Length-prefixed frames: a little-endian `u32` length, then that many bytes.

use bytes::{Buf, Bytes, BytesMut};

use crate::Error;

/// Room kept in every frame for the message in front of its items: an item is at most
/// the frame limit less this, so that an item accepted in a `put` frame fits in the reply
/// frame that later carries it to a getter. Both sides check it: the client before
/// sending, the broker on receipt.
pub const ITEM_OVERHEAD: usize = 64;

/// How much longer than its frame limit a frame from the broker may be: replies carry, in
/// front of items that fit the limit, a message of up to this many bytes. A client reads
/// with a limit this much larger than the one it announced.
pub const REPLY_SLACK: usize = 1024;

/// Size of the length prefix in bytes.
pub const PREFIX_LEN: usize = 4;

/// Default limit on a frame's length (the bytes after the prefix): 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Limit on the first frame of a connection (the handshake). A handshake is a few bytes;
/// anything longer is not an ipcq peer, and must not make the other side wait for megabytes.
pub const MAX_HANDSHAKE_LEN: usize = 1024;

/// Takes one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete: partial input is an expected
/// condition, not an error. The length is checked against `max_len` before any memory is
/// reserved for the frame, so a hostile prefix cannot make the reader allocate.
///
/// # Errors
///
/// [`Error::FrameTooLarge`] when the prefix announces more than `max_len` bytes.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use ipcq_proto::decode_frame;
///
/// let mut buf = BytesMut::from(&[3, 0, 0, 0, b'a', b'b', b'c', 9][..]);
/// let frame = decode_frame(&mut buf, 1024).unwrap().unwrap();
/// assert_eq!(&frame[..], b"abc");
/// assert_eq!(&buf[..], &[9]); // the start of the next frame is kept
/// assert_eq!(decode_frame(&mut buf, 1024).unwrap(), None);
/// ```
pub fn decode_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Bytes>, Error> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max_len {
        return Err(Error::FrameTooLarge { len, max: max_len });
    }
    let total = PREFIX_LEN + len;
    if buf.len() < total {
        // Reserve only once the length is known to be acceptable.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(PREFIX_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The length prefix for a frame of `len` bytes.
///
/// # Errors
///
/// [`Error::FrameTooLarge`] when `len` exceeds `max_len`: an oversized frame is refused
/// before anything is written.
///
/// # Examples
///
/// ```
/// assert_eq!(ipcq_proto::frame_prefix(258, 1024).unwrap(), [2, 1, 0, 0]);
/// assert!(ipcq_proto::frame_prefix(2000, 1024).is_err());
/// ```
pub fn frame_prefix(len: usize, max_len: usize) -> Result<[u8; PREFIX_LEN], Error> {
    if len > max_len {
        return Err(Error::FrameTooLarge { len, max: max_len });
    }
    let len = u32::try_from(len).map_err(|_| Error::FrameTooLarge { len, max: max_len })?;
    Ok(len.to_le_bytes())
}
