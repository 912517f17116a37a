//! The read side of one connection: frames read into a buffer, large ones into an
//! allocation of their own, counted against the budget while they arrive. (The write side
//! is in `link.rs`.)

use bytes::{Buf, Bytes, BytesMut};
use ipcq_proto::PREFIX_LEN;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Frame(#[from] ipcq_proto::Error),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames at least this long are read into an allocation of their own, exactly their
/// size, so that an item kept from one pins nothing but its frame. Shorter frames are read
/// into the connection's buffer, and items kept from them are copied out of it.
pub(crate) const OWN_ALLOCATION: usize = 64 * 1024;

/// Reads the next frame. `Ok(None)` is a clean close between frames. Cancel-safe while
/// it waits for a frame in `buf`: bytes read so far stay there; a large frame in progress
/// is abandoned if the read is cancelled, which happens only as its connection ends.
///
/// While a large frame arrives, its length counts against the broker-wide byte budget
/// (`partial`), so that stalled half-sent frames are not memory outside every budget.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_len: usize,
    partial: &Partial,
) -> Result<Option<Bytes>, ReadError> {
    loop {
        if let Some(len) = announced(buf) {
            if len >= OWN_ALLOCATION && len <= max_len && buf.len() < PREFIX_LEN + len {
                return read_large(reader, buf, len, partial).await.map(Some);
            }
        }
        if let Some(frame) = ipcq_proto::decode_frame(buf, max_len)? {
            return Ok(Some(frame));
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        if reader.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Truncated)
            };
        }
    }
}

/// The length a complete prefix at the front of `buf` announces.
fn announced(buf: &BytesMut) -> Option<usize> {
    let prefix = buf.get(..PREFIX_LEN)?;
    Some(u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize)
}

/// Reads a frame of `len` bytes, whose start is in `buf`, into an allocation of its own.
async fn read_large<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    len: usize,
    partial: &Partial,
) -> Result<Bytes, ReadError> {
    let total = PREFIX_LEN + len;
    partial.begin(total);
    let mut frame = BytesMut::with_capacity(total);
    frame.extend_from_slice(buf);
    // Only this frame's bytes are read into it: what follows stays for `buf`.
    while frame.len() < total {
        let want = (total - frame.len()) as u64;
        let read = (&mut *reader).take(want).read_buf(&mut frame).await;
        match read {
            Ok(0) => {
                buf.clear();
                partial.end();
                return Err(ReadError::Truncated);
            }
            Ok(_) => {}
            Err(err) => {
                partial.end();
                return Err(err.into());
            }
        }
    }
    buf.clear();
    partial.end();
    frame.advance(PREFIX_LEN);
    Ok(frame.freeze())
}

/// The bytes of a large frame being received on one connection, counted against the
/// broker-wide budget until it is whole (then its items count as they enter a queue).
#[derive(Debug)]
pub(crate) struct Partial {
    budget: Arc<crate::budget::Budget>,
    counted: std::sync::atomic::AtomicUsize,
}

impl Partial {
    pub(crate) fn new(budget: Arc<crate::budget::Budget>) -> Self {
        Partial {
            budget,
            counted: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn begin(&self, len: usize) {
        self.end();
        self.budget.force(len);
        self.counted
            .store(len, std::sync::atomic::Ordering::Relaxed);
    }

    fn end(&self) {
        let len = self.counted.swap(0, std::sync::atomic::Ordering::Relaxed);
        if len != 0 {
            self.budget.release(len);
            self.budget.wake_waiting();
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        self.end();
    }
}
