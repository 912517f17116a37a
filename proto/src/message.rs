//! The messages carried in frames.
//!
//! Every message is postcard-encoded, and postcard is not self-describing: these Rust types
//! *are* the wire format. Enum variants and struct fields are append-only; never reorder
//! them. The golden-byte tests in `tests/golden.rs` pin the encoding.
//!
//! A frame holds one message followed by its *tail*: the opaque item bytes that the message
//! announces. Items never pass through postcard, so the broker hands them on as
//! [`Bytes`] slices of the frame it read, without decoding or copying them.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{frame::PREFIX_LEN, Error};

/// The four bytes every ipcq handshake starts with.
pub const MAGIC: [u8; 4] = *b"IPCQ";

/// The protocol version this crate speaks. Peers with another version refuse each other
/// with a clear error during the handshake.
pub const VERSION: u16 = 4;

/// What every item counts against the broker's byte budgets and byte credits on top of
/// its length: the broker's own record of it (its place in a queue or on a client's
/// ledger, its allocation). Without it, empty and tiny items would cost nothing and could
/// fill memory while a queue never counted as full.
pub const ITEM_COST: usize = 64;

/// The bytes an item of `len` payload bytes counts against byte budgets and byte credits:
/// `len` + [`ITEM_COST`].
///
/// ```
/// assert_eq!(ipcq_proto::item_cost(0), 64);
/// assert_eq!(ipcq_proto::item_cost(1000), 1064);
/// ```
pub fn item_cost(len: usize) -> u64 {
    len as u64 + ITEM_COST as u64
}

/// The first frame each way: who is speaking and what it accepts.
///
/// # Examples
///
/// ```
/// use ipcq_proto::{Hello, MAGIC, VERSION};
///
/// let hello = Hello::new(1 << 24);
/// assert_eq!(hello.magic, MAGIC);
/// assert_eq!(hello.version, VERSION);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The sender's protocol version.
    pub version: u16,
    /// The longest frame the sender accepts (bytes after the length prefix).
    pub max_frame_len: u32,
}

impl Hello {
    /// A handshake for this protocol version that accepts frames up to `max_frame_len`.
    pub fn new(max_frame_len: u32) -> Self {
        Hello {
            magic: MAGIC,
            version: VERSION,
            max_frame_len,
        }
    }

    /// Checks magic and version.
    ///
    /// # Errors
    ///
    /// [`Error::NotIpcq`] for a wrong magic, [`Error::VersionMismatch`] for another version.
    pub fn check(&self) -> Result<(), Error> {
        if self.magic != MAGIC {
            return Err(Error::NotIpcq);
        }
        if self.version != VERSION {
            return Err(Error::VersionMismatch {
                ours: VERSION,
                theirs: self.version,
            });
        }
        Ok(())
    }
}

/// How long a request may wait in the broker. The broker enforces it: a client never gives
/// up on a request by itself, because a timeout that races a delivery would lose the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wait {
    /// Wait as long as it takes.
    Block,
    /// Fail at once (`Full` or `Empty`) rather than wait.
    NoWait,
    /// Wait at most this many microseconds.
    Micros(u64),
}

impl Wait {
    /// `Micros` for a duration, saturating at `u64::MAX` microseconds.
    pub fn timeout(duration: std::time::Duration) -> Self {
        Wait::Micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
    }
}

/// The kind of object to open, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A bounded FIFO queue; `capacity` 0 means unbounded (the byte budgets still apply).
    Queue {
        /// Maximum number of items, 0 for unbounded.
        capacity: u64,
        /// Removed, with whatever it holds, when the last connection that opened it
        /// closes; otherwise it lives until removed.
        auto_delete: bool,
        /// Where items go that cannot be done: an ordinary queue, created (unbounded) if
        /// it does not exist.
        dead_letter: Option<DeadLetter>,
        /// Bytes a slot of the queue's ring in shared memory holds (Linux), if this open
        /// makes the queue: 0 for the broker's default. Not a parameter of the queue:
        /// later opens may give any.
        slot_size: u32,
    },
    /// One end of a two-ended pipe, claimed for this connection alone. Requests on the
    /// handle act on the end: puts send to the other end, gets receive from it.
    PipeEnd {
        /// Both ends send and receive; otherwise end 0 only receives and end 1 only sends.
        duplex: bool,
        /// Items buffered per direction, 0 for unbounded.
        capacity: u64,
        /// Which end: 0 or 1.
        end: u8,
    },
    /// A lock: a semaphore of one permit whose holder is told apart.
    Lock,
    /// A semaphore of `permits` permits.
    Semaphore {
        /// Permits in all.
        permits: u64,
    },
    /// An event: a flag that waiters wait to see set.
    Event,
    /// A barrier for `parties` parties.
    Barrier {
        /// How many waits release the barrier.
        parties: u64,
    },
}

/// A queue's dead-letter queue, and when an item goes there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The dead-letter queue's name.
    pub queue: String,
    /// Deliveries after which an item that comes back (its getter died, returned or
    /// rejected it) goes to the dead-letter queue instead of the head of its queue; 0 for
    /// no limit (items then go there only when a client sends them, with
    /// [`ClientMsg::DeadLetter`]).
    pub max_deliveries: u32,
}

/// Client to broker, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// A request; the broker answers with a [`BrokerMsg::Reply`] carrying the same `id`.
    Request {
        /// Chosen by the client, unique among its outstanding requests.
        id: u64,
        /// What to do.
        op: Op,
    },
    /// The client has handed the deliveries `tag .. tag + count` to its application.
    /// Until then, they return to their queue if the connection goes away.
    Ack {
        /// First delivery tag acknowledged.
        tag: u64,
        /// Number of consecutive tags acknowledged.
        count: u32,
    },
    /// A put on a slot the broker reserved for this connection (a credit): the tail is
    /// the item. No reply; sending without a credit is a protocol error.
    Send {
        /// Queue handle.
        handle: u32,
    },
    /// Puts on reserved slots, one per item of the tail (lengths in `lens`). No reply.
    SendMany {
        /// Queue handle.
        handle: u32,
        /// Length of each item in the tail.
        lens: Vec<u32>,
    },
    /// Gives back unused credits and bytes. No reply. With the last credit, the bytes
    /// granted with the credits go back whatever `bytes` says.
    Release {
        /// Queue handle.
        handle: u32,
        /// Credits given back.
        credits: u32,
        /// Bytes given back.
        bytes: u64,
    },
    /// The deliveries `tag .. tag + count` were not handed to the application: they go back
    /// to the head of their queue, in order. No reply.
    Return {
        /// First delivery tag returned.
        tag: u64,
        /// Number of consecutive tags returned.
        count: u32,
    },
    /// Nobody waits for the answer to request `id` on `handle` any more. If it is still
    /// parked, it leaves its object and is answered with [`ErrorCode::Cancelled`]; if it
    /// was answered already, this does nothing (the client settles that answer). Either
    /// way, request `id` gets exactly one answer.
    Cancel {
        /// The object the request was made on.
        handle: u32,
        /// The request's id.
        id: u64,
    },
    /// The work on the deliveries `tag .. tag + count` is done: they leave their queue as
    /// an [`Ack`](ClientMsg::Ack) does, and each counts as one `task_done` for
    /// [`Op::Join`]. No reply.
    Finish {
        /// First delivery tag finished.
        tag: u64,
        /// Number of consecutive tags finished.
        count: u32,
    },
    /// The deliveries `tag .. tag + count` cannot be done: they go to their queue's
    /// dead-letter queue, with their delivery counts, and count as done for `Join`; or,
    /// for a queue without one, back to its head as with `Return`. No reply.
    DeadLetter {
        /// First delivery tag.
        tag: u64,
        /// Number of consecutive tags.
        count: u32,
    },
    /// The deliveries `tag .. tag + count` are leased for `millis` from now (set, or
    /// extended): if they are not settled by then, they go back to their queue as if their
    /// connection had closed, and a later [`Op::Finish`] of them fails with
    /// [`ErrorCode::Expired`]. No reply.
    Lease {
        /// First delivery tag.
        tag: u64,
        /// Number of consecutive tags.
        count: u32,
        /// How long from now.
        millis: u64,
    },
}

impl ClientMsg {
    /// Whether the message a frame starts with (after its length prefix) asks for an
    /// answer: a `Request`, or a `Cancel` (answered through the request it cancels). Read
    /// from the variant's index alone, without decoding the rest: a broker that holds
    /// back a client's requests can still take the messages that ask for nothing.
    ///
    /// ```
    /// use ipcq_proto::{ClientMsg, Op};
    ///
    /// let mut frame = Vec::new();
    /// let ack = ClientMsg::Ack { tag: 7, count: 1 };
    /// ipcq_proto::encode(&ack, 0, 1024, &mut frame)?;
    /// assert!(!ClientMsg::asks_for_answer(&frame[ipcq_proto::PREFIX_LEN..]));
    /// frame.clear();
    /// ipcq_proto::encode(&ClientMsg::Request { id: 1, op: Op::Ping }, 0, 1024, &mut frame)?;
    /// assert!(ClientMsg::asks_for_answer(&frame[ipcq_proto::PREFIX_LEN..]));
    /// # Ok::<(), ipcq_proto::Error>(())
    /// ```
    pub fn asks_for_answer(frame: &[u8]) -> bool {
        // Postcard writes the variant's index first, as a varint: one byte for each of
        // these. The golden tests pin the indices.
        const REQUEST: u8 = 0;
        const CANCEL: u8 = 6;
        matches!(frame.first(), Some(&(REQUEST | CANCEL)))
    }
}

/// An operation on the broker or on one of its objects.
///
/// Objects are addressed by the handle that [`Op::Open`] returned on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Answered with [`Reply::Pong`].
    Ping,
    /// Open (creating if needed) the object `name`; answered with [`Reply::Opened`].
    Open {
        /// Non-empty UTF-8, at most 255 bytes, no control characters.
        name: String,
        /// Kind and parameters; must match an existing object's.
        kind: Kind,
    },
    /// Put the frame's tail as one item; answered with [`Reply::Accepted`].
    Put {
        /// Queue handle.
        handle: u32,
        /// How long to wait for room.
        wait: Wait,
        /// Credits wanted for later puts; the broker grants what it can spare.
        credits: u32,
    },
    /// Put the items of the tail (lengths in `lens`) in order, waiting for room as needed;
    /// answered with [`Reply::Accepted`] once the last is in.
    PutMany {
        /// Queue handle.
        handle: u32,
        /// Length of each item in the tail.
        lens: Vec<u32>,
        /// Credits wanted for later puts.
        credits: u32,
    },
    /// Take one item; answered with [`Reply::Item`].
    Get {
        /// Queue handle.
        handle: u32,
        /// How long to wait for an item.
        wait: Wait,
    },
    /// Take between 1 and `max` items; answered with [`Reply::Items`].
    GetMany {
        /// Queue handle.
        handle: u32,
        /// Most items to take.
        max: u32,
        /// How long to wait for the first item.
        wait: Wait,
    },
    /// Answered with [`Reply::QueueInfo`].
    Info {
        /// Queue handle.
        handle: u32,
    },
    /// Close the object: later puts fail, getters drain what is left.
    Close {
        /// Object handle.
        handle: u32,
    },
    /// Answered with [`Reply::Stats`].
    Stats,
    /// Remove the object `name` from the broker; its waiters get `Closed`.
    Remove {
        /// Object name.
        name: String,
    },
    /// Ask for credits (slots reserved for later puts) without putting anything; answered
    /// at once with [`Reply::Accepted`], granting what the broker can spare now (maybe 0).
    Reserve {
        /// Queue handle.
        handle: u32,
        /// Credits wanted.
        credits: u32,
        /// About how long the items they are for will be: the broker grants bytes for
        /// `credits` items of this length.
        len: u32,
    },
    /// Take a permit of a lock or semaphore; answered with [`Reply::Acquired`], or `Busy`
    /// when none came before the wait ran out.
    Acquire {
        /// Lock or semaphore handle.
        handle: u32,
        /// How long to wait for a permit.
        wait: Wait,
    },
    /// Give back a permit this connection holds; answered with [`Reply::Done`].
    ReleasePermit {
        /// Lock or semaphore handle.
        handle: u32,
    },
    /// Set an event, waking every waiter; answered with [`Reply::Done`].
    SetEvent {
        /// Event handle.
        handle: u32,
    },
    /// Clear an event; answered with [`Reply::Done`].
    ClearEvent {
        /// Event handle.
        handle: u32,
    },
    /// Wait until an event is set; answered with [`Reply::Flag`]: whether it is set
    /// (false only when the wait ran out).
    WaitEvent {
        /// Event handle.
        handle: u32,
        /// How long to wait.
        wait: Wait,
    },
    /// Wait at a barrier until all parties have come; answered with [`Reply::Passed`], or
    /// `Broken` when a party gave up (its wait ran out) or went away, or the barrier was
    /// reset.
    WaitBarrier {
        /// Barrier handle.
        handle: u32,
        /// How long to wait; running out breaks the barrier for everyone.
        wait: Wait,
    },
    /// Reset a barrier: waiting parties get `Broken`, later waits start afresh.
    ResetBarrier {
        /// Barrier handle.
        handle: u32,
    },
    /// Mark one item of a queue as processed (`JoinableQueue.task_done`).
    TaskDone {
        /// Queue handle.
        handle: u32,
    },
    /// Wait until every item put on a queue has been marked done; answered with
    /// [`Reply::Flag`] (false when the wait ran out).
    Join {
        /// Queue handle.
        handle: u32,
        /// How long to wait.
        wait: Wait,
    },
    /// Wait for room for one item of `len` bytes, in turn with parked puts, without sending
    /// it: answered with [`Reply::Accepted`] granting at least one credit (the slot), and
    /// up to `credits` more as [`Op::Reserve`] would; `Full` when the wait runs out. The
    /// item then goes as a [`ClientMsg::Send`], so a client that stops waiting has put
    /// nothing.
    WaitRoom {
        /// Queue handle.
        handle: u32,
        /// Length of the item that will use the slot.
        len: u32,
        /// How long to wait for room.
        wait: Wait,
        /// Credits wanted beyond the slot.
        credits: u32,
    },
    /// One page of [`Op::Stats`]: the objects whose names sort after `after` (all of them
    /// when it is empty), in name order, as many as fit in about `max_len` bytes (at least
    /// one); answered with [`Reply::StatsPage`]. A client lists any number of objects this
    /// way, each answer well within the frame limit.
    StatsPage {
        /// The last name of the previous page; empty for the first page.
        after: String,
        /// About how many bytes the page may take; the broker may send less.
        max_len: u32,
    },
    /// The figures of the object `name` alone; answered with [`Reply::Stats`] holding it,
    /// or `NotFound`. Creates nothing.
    Lookup {
        /// Object name.
        name: String,
    },
    /// As [`ClientMsg::Finish`], answered: [`Reply::Done`] once the deliveries `tag ..
    /// tag + count` are settled, or an error with [`ErrorCode::Expired`] if any was no
    /// longer held (its lease ran out; those that were held are settled all the same).
    Finish {
        /// First delivery tag finished.
        tag: u64,
        /// Number of consecutive tags finished.
        count: u32,
    },
    /// Move this queue's items through shared memory (Linux, a client of the broker's
    /// own user): answered with [`Reply::Shared`], or [`Reply::Flag`]`(false)` when the
    /// queue has no ring (the socket path then serves it, as always). The ring's memory
    /// comes on a connection of its own, with [`Op::FetchShared`].
    ShareQueue {
        /// Queue handle.
        handle: u32,
    },
    /// The first request of a connection made to fetch a ring's memory: answered with
    /// [`Reply::Done`] carrying the memfd as `SCM_RIGHTS` ancillary data on the frame's
    /// bytes. Each token works once, within 10 s, for the user it was given to.
    FetchShared {
        /// From [`Reply::Shared`].
        token: u64,
    },
}

/// Broker to client, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerMsg {
    /// The answer to request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Reply,
    },
    /// The connection is unusable (bad frame, bad handshake, broker shutting down); the
    /// broker closes it after this message.
    Fatal(ErrorReply),
    /// The broker wants this connection's unused credits on `handle` back (others wait for
    /// room, or the queue was closed): answer with [`ClientMsg::Release`].
    Revoke {
        /// Queue handle.
        handle: u32,
    },
}

/// The body of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done, nothing to return.
    Done,
    /// Answer to [`Op::Ping`].
    Pong,
    /// Answer to [`Op::Open`].
    Opened {
        /// The handle for later requests on this connection.
        handle: u32,
    },
    /// One item (the frame's tail), delivered under `tag`: acknowledge it with
    /// [`ClientMsg::Ack`] once the application has it.
    Item {
        /// Delivery tag.
        tag: u64,
        /// How many times the item was delivered before (0: this is its first delivery).
        earlier: u32,
    },
    /// Items of the tail with lengths `lens`, delivered under tags `tag ..`.
    Items {
        /// Tag of the first item; the rest follow consecutively.
        tag: u64,
        /// Length of each item in the tail.
        lens: Vec<u32>,
        /// Items left waiting in the queue after these: a hint for prefetching.
        ready: u64,
        /// How many times each item was delivered before; empty when none was (the usual
        /// case, which costs one byte).
        earlier: Vec<u32>,
    },
    /// Answer to [`Op::Info`], exact at the broker when it was taken.
    QueueInfo(QueueInfo),
    /// Answer to [`Op::Stats`].
    Stats(Vec<ObjectStats>),
    /// The request failed.
    Error(ErrorReply),
    /// Answer to [`Op::Put`], [`Op::PutMany`], [`Op::Reserve`] and [`Op::WaitRoom`]: the items
    /// are in the queue, and `credits` slots and `bytes` bytes are reserved for this
    /// connection's next puts ([`ClientMsg::Send`]). Each item sent on them spends one
    /// credit and [`item_cost`] of its length in bytes; a send beyond either is a protocol
    /// error. The bytes are granted for items about as long as those of the request.
    Accepted {
        /// Credits granted.
        credits: u32,
        /// Bytes granted with them.
        bytes: u64,
    },
    /// Answer to [`Op::Acquire`]: a permit is held.
    Acquired {
        /// The permit came back from a holder whose connection went away without releasing
        /// it (as a robust mutex's `EOWNERDEAD`): what it guarded may be half-done.
        owner_died: bool,
    },
    /// A yes-or-no answer ([`Op::WaitEvent`], [`Op::Join`]).
    Flag(bool),
    /// Answer to [`Op::WaitBarrier`]: every party came.
    Passed {
        /// This party's place in arrival order, from 0.
        index: u64,
    },
    /// Answer to [`Op::StatsPage`].
    StatsPage {
        /// Objects in name order.
        objects: Vec<ObjectStats>,
        /// More objects sort after the last one: ask again with its name as `after`.
        more: bool,
    },
    /// Answer to [`Op::ShareQueue`]: fetch the ring with `token`, and mark its slots as
    /// `owner`'s (the broker recovers what `owner` holds when this connection closes).
    Shared {
        /// For [`Op::FetchShared`].
        token: u64,
        /// This connection's owner number in the ring.
        owner: u32,
    },
}

/// A queue's state as [`Op::Info`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// Items put and not yet acknowledged by a getter: those waiting in the queue plus those
    /// in flight to a getter.
    pub len: u64,
    /// Maximum items, 0 for unbounded.
    pub capacity: u64,
    /// Whether a `put_nowait` would fail now (capacity or byte budget reached).
    pub full: bool,
    /// Whether the queue has been closed.
    pub closed: bool,
}

/// One object in [`Reply::Stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStats {
    /// The object's name.
    pub name: String,
    /// Kind-specific figures.
    pub detail: ObjectDetail,
}

/// Kind-specific figures of [`ObjectStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectDetail {
    /// A queue.
    Queue(QueueStats),
    /// A pipe.
    Pipe(PipeStats),
    /// A lock.
    Lock(PermitStats),
    /// A semaphore.
    Semaphore(PermitStats),
    /// An event.
    Event(EventStats),
    /// A barrier.
    Barrier(BarrierStats),
}

/// A barrier's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarrierStats {
    /// Parties that release it.
    pub parties: u64,
    /// Parties waiting now.
    pub waiting: u64,
    /// Whether it is broken.
    pub broken: bool,
}

/// A lock's or semaphore's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermitStats {
    /// Permits in all (1 for a lock).
    pub permits: u64,
    /// Permits free now.
    pub free: u64,
    /// The connections holding permits (a connection may hold several of a semaphore).
    pub holders: Vec<u64>,
    /// Requests waiting for a permit.
    pub waiters: u64,
    /// The process of each connection in `holders`, in the same order, from the socket's
    /// peer credentials; 0 where the system does not say.
    pub holder_pids: Vec<u32>,
}

/// An event's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStats {
    /// Whether the event is set.
    pub set: bool,
    /// Requests waiting for it to be set.
    pub waiters: u64,
}

/// A pipe's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeStats {
    /// Both ends send and receive.
    pub duplex: bool,
    /// Items buffered per direction at most, 0 for unbounded.
    pub capacity: u64,
    /// Whether each end is held by a connection.
    pub held: [bool; 2],
    /// Whether each end has been closed (by its holder, or because its holder went away).
    pub closed: [bool; 2],
    /// Items sent to each end and not yet received by it (waiting or in flight).
    pub buffered: [u64; 2],
}

/// A queue's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Items waiting in the queue.
    pub ready: u64,
    /// Items delivered to a getter and not yet acknowledged.
    pub in_flight: u64,
    /// Slots reserved for producers' next puts (credits granted, not yet used).
    pub reserved: u64,
    /// Maximum items, 0 for unbounded.
    pub capacity: u64,
    /// Payload bytes held (ready and in flight).
    pub bytes: u64,
    /// Requests parked waiting for an item.
    pub getters: u64,
    /// Requests parked waiting for room.
    pub putters: u64,
    /// Items accepted since the queue was created.
    pub total_put: u64,
    /// Items acknowledged by getters since the queue was created.
    pub total_got: u64,
    /// Whether the queue has been closed.
    pub closed: bool,
    /// Whether the queue goes when the last connection that opened it closes.
    pub auto_delete: bool,
    /// Items delivered again since the queue was created: their getter died, gave them
    /// back, or let them go unread.
    pub redelivered: u64,
    /// Items moved to the dead-letter queue since the queue was created.
    pub dead_lettered: u64,
    /// The connections holding items in flight (delivered, not yet acknowledged).
    pub holders: Vec<Holder>,
    /// Whether the queue's ring in shared memory serves it now (its items are there, and
    /// its clients of the broker's user put and take them with no system call).
    pub shared_memory: bool,
    /// Items that producers killed while writing them into the ring left half written:
    /// passed over (never delivered), their slots freed.
    pub torn_writes: u64,
}

/// A connection holding delivered items of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its client's process id, from the socket's credentials; 0 where the platform does
    /// not say.
    pub pid: u32,
    /// The broker's number for the connection.
    pub connection: u64,
    /// Items it holds.
    pub in_flight: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorReply {
    /// An error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

/// Error kinds on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No room before the wait ran out.
    Full,
    /// No item before the wait ran out.
    Empty,
    /// The object is closed (or was removed).
    Closed,
    /// The name exists with another kind or other parameters.
    Conflict,
    /// The object is held by another connection.
    Busy,
    /// A frame or item exceeds a limit.
    TooLarge,
    /// No object is open under this handle on this connection.
    UnknownHandle,
    /// The handle names an object of another kind.
    WrongKind,
    /// The name is empty, too long or has control characters.
    InvalidName,
    /// No object has this name.
    NotFound,
    /// The bytes received are not valid ipcq protocol.
    Protocol,
    /// The broker is shutting down.
    ShuttingDown,
    /// A broker limit (connections, objects, waiters) was reached.
    LimitReached,
    /// An argument is out of range.
    InvalidArgument,
    /// A barrier is broken.
    Broken,
    /// The request was withdrawn by [`ClientMsg::Cancel`] before it was answered.
    Cancelled,
    /// The broker does not admit this client (its user or group is not allowed).
    Denied,
    /// A delivery's lease ran out before it was acknowledged: the item went back to its
    /// queue (and maybe to another getter).
    Expired,
}

/// The length of `value`'s encoding, without encoding it (no frame prefix).
///
/// # Examples
///
/// ```
/// assert_eq!(ipcq_proto::encoded_len(&ipcq_proto::Reply::Pong), 1);
/// ```
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    // Counting bytes cannot fail for these types (no unsupported serde features); a
    // failure would count as nothing, which callers treat as "fits".
    postcard::experimental::serialized_size(value).unwrap_or(0)
}

/// Appends a frame holding `msg` to `out`, leaving room for a tail of `tail_len` bytes that
/// the caller appends next. The frame prefix counts the tail.
///
/// # Errors
///
/// [`Error::FrameTooLarge`] when message and tail exceed `max_len`; `out` is left as it was.
///
/// # Examples
///
/// ```
/// use ipcq_proto::{encode, ClientMsg};
///
/// let mut out = Vec::new();
/// encode(&ClientMsg::Ack { tag: 5, count: 1 }, 0, 1024, &mut out).unwrap();
/// assert_eq!(out, [3, 0, 0, 0, 1, 5, 1]);
/// ```
pub fn encode<T: Serialize>(
    msg: &T,
    tail_len: usize,
    max_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    let result = match postcard::to_io(msg, &mut *out) {
        Ok(_) => crate::frame_prefix(out.len() - start - PREFIX_LEN + tail_len, max_len),
        Err(err) => Err(Error::encode(err)),
    };
    match result {
        Ok(prefix) => {
            out[start..start + PREFIX_LEN].copy_from_slice(&prefix);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err)
        }
    }
}

/// Decodes the message at the start of a frame and returns it with the frame's tail.
///
/// The tail is a slice of `frame`: no bytes are copied.
///
/// # Errors
///
/// [`Error::Decode`] when the frame does not start with a valid message. The frame is
/// complete (its length prefix said so), so a short message is corrupt, not partial.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use ipcq_proto::{decode, ClientMsg};
///
/// let frame = Bytes::from_static(&[1, 5, 1, b'x']);
/// let (msg, tail): (ClientMsg, Bytes) = decode(frame).unwrap();
/// assert_eq!(msg, ClientMsg::Ack { tag: 5, count: 1 });
/// assert_eq!(&tail[..], b"x");
/// ```
pub fn decode<T: DeserializeOwned>(frame: Bytes) -> Result<(T, Bytes), Error> {
    let (msg, rest) = postcard::take_from_bytes::<T>(&frame).map_err(Error::decode)?;
    let consumed = frame.len() - rest.len();
    Ok((msg, frame.slice(consumed..)))
}

/// Splits a tail into items of the given lengths, without copying.
///
/// # Errors
///
/// [`Error::Malformed`] when the lengths do not add up to the tail's length.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
///
/// let items = ipcq_proto::split_items(Bytes::from_static(b"abcde"), &[2, 0, 3]).unwrap();
/// assert_eq!(items, [&b"ab"[..], b"", b"cde"]);
/// assert!(ipcq_proto::split_items(Bytes::from_static(b"abc"), &[2]).is_err());
/// ```
pub fn split_items(mut tail: Bytes, lens: &[u32]) -> Result<Vec<Bytes>, Error> {
    let total: u64 = lens.iter().map(|&len| u64::from(len)).sum();
    if total != tail.len() as u64 {
        return Err(Error::Malformed(format!(
            "item lengths add up to {total} bytes but the frame carries {}",
            tail.len()
        )));
    }
    Ok(lens
        .iter()
        .map(|&len| tail.split_to(len as usize))
        .collect())
}

/// Checks an object name: non-empty UTF-8, at most [`MAX_NAME_LEN`] bytes, no control
/// characters.
///
/// # Errors
///
/// A message saying what is wrong with the name.
///
/// # Examples
///
/// ```
/// assert!(ipcq_proto::check_name("jobs").is_ok());
/// assert!(ipcq_proto::check_name("").is_err());
/// assert!(ipcq_proto::check_name("a\nb").is_err());
/// ```
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("object names must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "object name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("object name {name:?} contains control characters"));
    }
    Ok(())
}

/// Longest object name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
