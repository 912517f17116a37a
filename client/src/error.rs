use std::io;

pub use ipcq_proto::CodecError;
use ipcq_proto::{ErrorCode, ErrorReply};

/// Everything that can go wrong talking to a broker.
///
/// The conditions of a bounded queue (`Full`, `Empty`, `Closed`) are values to match on,
/// as in `crossbeam-channel`; the predicates (`is_full()`, ...) save the `matches!`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No room: `put_nowait` on a full queue, or `put_timeout` ran out of time.
    #[error("the queue is full")]
    Full,
    /// No item: `get_nowait` on an empty queue, or `get_timeout` ran out of time.
    #[error("the queue is empty")]
    Empty,
    /// The object was closed (or removed); for a queue, every item has been taken.
    #[error("the object is closed")]
    Closed,
    /// The name exists with another kind or other parameters.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object is held by another client.
    #[error("busy: {0}")]
    Busy(String),
    /// An item does not fit in a frame; nothing was sent and the connection is still usable.
    #[error("item too large: a frame of {len} bytes exceeds the broker's limit of {max} bytes")]
    TooLarge {
        /// The frame the item needs.
        len: usize,
        /// The broker's limit.
        max: usize,
    },
    /// No object has this name.
    #[error("not found: {0}")]
    NotFound(String),
    /// The broker refused the request as invalid (bad name, unknown handle, wrong kind,
    /// argument out of range).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A barrier is broken: a party gave up or went away while waiting, or it was reset
    /// (Python's `BrokenBarrierError`).
    #[error("broken barrier: {0}")]
    Broken(String),
    /// A broker limit was reached (connections, objects).
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The broker does not admit this client: its user (or group) is not one the broker
    /// allows (by default, the broker's own user and root; see `ipcq-broker --allow-uid`).
    #[error("access denied: {0}")]
    Denied(String),
    /// No broker answers at the address.
    #[error("no broker answers at {addr} (start one with `ipcq-broker`, or set IPCQ_ADDR)")]
    NoBroker {
        /// The address tried.
        addr: String,
    },
    /// Something listens at the address but did not complete the ipcq handshake in time
    /// (see [`ConnectOptions::timeout`](crate::ConnectOptions::timeout)): a stopped broker,
    /// or a listener that is not an ipcq broker.
    #[error("no answer from {addr} within {waited:?} ({what}): is an ipcq broker running there, and not stopped?")]
    NoAnswer {
        /// The address tried.
        addr: String,
        /// How long the client waited.
        waited: std::time::Duration,
        /// The step that ran out of time.
        what: String,
    },
    /// The process serving the address is not one this client trusts (another user's), or
    /// the private directory of the default address is not private: nothing was sent.
    #[error("untrusted server: {0}")]
    Untrusted(String),
    /// The broker went away (it shut down, or the connection broke) before answering.
    #[error("the broker is gone: {0}")]
    BrokerGone(String),
    /// The broker or the bytes on the connection do not follow the ipcq protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An item could not be encoded as the queue's type (nothing was sent).
    #[error("item encoding: {0}")]
    Codec(#[from] CodecError),
    /// An item taken from the queue is not of the queue's type (another program put it, or
    /// an older version of this one). Nothing is lost: a `get` took the item, and here are
    /// its bytes; an acknowledging get (`get_delivery`) gave it back to the head of the
    /// queue, where a raw handle can take it.
    #[error("an item of {} bytes is not of the queue's type: {source}", item.len())]
    Undecodable {
        /// Why it does not decode.
        source: CodecError,
        /// The item as it was in the queue.
        item: bytes::Bytes,
    },
    /// A delivery was acknowledged after its lease ran out: the broker had already put the
    /// item back in its queue (for another worker, or a dead-letter queue), so it was not
    /// removed again.
    #[error("lease expired: {0}")]
    LeaseExpired(String),
    /// Another I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// What was asked has no form on this client's backend (pipes, barriers, selects and
    /// leases on NATS), or the backend was not built in (a `nats://` address without the
    /// `nats` feature).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The NATS server refused a request or could not be reached (NATS backend).
    #[error("NATS: {0}")]
    Nats(String),
}

impl Error {
    /// `true` for [`Error::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, Error::Full)
    }

    /// `true` for [`Error::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Error::Empty)
    }

    /// `true` for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// `true` for [`Error::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// `true` for [`Error::Broken`].
    pub fn is_broken(&self) -> bool {
        matches!(self, Error::Broken(_))
    }

    /// `true` for [`Error::TooLarge`].
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::TooLarge { .. })
    }

    /// `true` when the broker is gone or was never there ([`Error::BrokerGone`],
    /// [`Error::NoBroker`], [`Error::NoAnswer`]).
    pub fn is_broker_gone(&self) -> bool {
        matches!(
            self,
            Error::BrokerGone(_) | Error::NoBroker { .. } | Error::NoAnswer { .. }
        )
    }

    /// `true` for [`Error::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported(_))
    }

    /// `true` for [`Error::Untrusted`].
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Error::Untrusted(_))
    }

    pub(crate) fn from_reply(reply: ErrorReply) -> Self {
        let ErrorReply { code, message } = reply;
        match code {
            ErrorCode::Full => Error::Full,
            ErrorCode::Empty => Error::Empty,
            ErrorCode::Closed => Error::Closed,
            ErrorCode::Conflict => Error::Conflict(message),
            ErrorCode::Busy => Error::Busy(message),
            ErrorCode::NotFound => Error::NotFound(message),
            ErrorCode::Broken => Error::Broken(message),
            ErrorCode::LimitReached => Error::LimitReached(message),
            ErrorCode::Denied => Error::Denied(message),
            ErrorCode::Expired => Error::LeaseExpired(message),
            ErrorCode::ShuttingDown => Error::BrokerGone(message),
            // A withdrawn request's answer goes to no caller; seeing one is a protocol slip.
            ErrorCode::TooLarge => too_large(&message),
            ErrorCode::Protocol | ErrorCode::Cancelled => Error::Protocol(message),
            ErrorCode::UnknownHandle
            | ErrorCode::WrongKind
            | ErrorCode::InvalidName
            | ErrorCode::InvalidArgument => Error::Invalid(message),
        }
    }
}

/// `TooLarge` from the broker's message, which names the item's length and then the limit
/// ("an item of 2000 bytes does not fit in a frame of 1024 bytes").
fn too_large(message: &str) -> Error {
    let mut numbers = message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse::<usize>().ok());
    let len = numbers.next().unwrap_or(0);
    let max = numbers.next().unwrap_or(0);
    Error::TooLarge { len, max }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
