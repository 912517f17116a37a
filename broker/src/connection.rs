//! Framed I/O for one connection: reading frames into a buffer, and the writer task that
//! coalesces outgoing frames.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::peer::{Link, Outgoing, Owner};

/// Items at least this long are written straight from their `Bytes` rather than copied into
/// the write buffer.
pub(crate) const DIRECT_WRITE: usize = 16 * 1024;

/// Flush the write buffer once it holds this much.
const WRITE_BATCH: usize = 256 * 1024;

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

/// Reads the next frame. `Ok(None)` is a clean close between frames. Cancel-safe: bytes
/// read so far stay in `buf`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<Bytes>, ReadError> {
    loop {
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

/// Writes what the connection's [`Link`] holds whenever the link hands it the socket,
/// until the link is closed and empty; then shuts the write side down. Messages waiting
/// together go out in one write.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    link: Arc<Link>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let batch: Vec<Outgoing> = {
            let mut state = link.lock();
            if state.owner == Some(Owner::Task) && !state.queue.is_empty() {
                state.queue.drain(..).collect()
            } else {
                if state.owner == Some(Owner::Task) {
                    state.owner = None;
                }
                if state.closed && state.owner.is_none() && state.queue.is_empty() {
                    break;
                }
                Vec::new()
            }
        };
        if batch.is_empty() {
            link.wake.notified().await;
            continue;
        }
        let taken: usize = batch.iter().map(Outgoing::len).sum();
        for msg in batch {
            buf.extend_from_slice(&msg.head);
            for item in msg.tail {
                if item.len() >= DIRECT_WRITE {
                    writer.write_all(&buf).await?;
                    buf.clear();
                    writer.write_all(&item).await?;
                } else {
                    buf.extend_from_slice(&item);
                }
            }
            if buf.len() >= WRITE_BATCH {
                writer.write_all(&buf).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            writer.write_all(&buf).await?;
            buf.clear();
        }
        writer.flush().await?;
        link.written(taken);
        if buf.capacity() > WRITE_BATCH * 4 {
            // A large answer passed through: do not keep its buffer for the small ones.
            buf = Vec::with_capacity(64 * 1024);
        }
    }
    writer.shutdown().await
}
