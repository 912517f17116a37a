//! Broker configuration.

use std::time::Duration;

use crate::link::OutputLimits;
use crate::Error;

/// The default size of a shared-memory slot: 512 bytes with its header.
pub const DEFAULT_SLOT_SIZE: usize = 496;

/// The largest shared-memory slot: a 16 MiB item (the default frame limit) and its frame.
pub(crate) const MOST_SLOT_SIZE: usize = 16 << 20;

/// How a broker listens and what it allows.
///
/// Every limit has a default that suits one machine; each setter says what it is.
///
/// # Examples
///
/// ```
/// use ipcq_broker::Config;
///
/// let config = Config::new()
///     .addr("/tmp/ipcq-example.sock")
///     .max_frame_len(1 << 20);
/// assert_eq!(config.get_addr(), "/tmp/ipcq-example.sock");
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) addr: String,
    pub(crate) max_frame_len: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_objects: usize,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_total_bytes: usize,
    pub(crate) worker_threads: usize,
    pub(crate) allow_uids: Vec<u32>,
    pub(crate) allow_gids: Vec<u32>,
    pub(crate) max_waiters: usize,
    pub(crate) output_soft: usize,
    pub(crate) output_hard: usize,
    pub(crate) output_soft_for: Duration,
    pub(crate) shared_slots: Option<usize>,
    pub(crate) max_shared_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: ipcq_proto::default_addr(),
            max_frame_len: ipcq_proto::DEFAULT_MAX_FRAME_LEN,
            max_connections: 4096,
            max_objects: 65_536,
            max_queue_bytes: 256 << 20,
            max_total_bytes: 1 << 30,
            worker_threads: 2,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            max_waiters: 65_536,
            output_soft: 256 << 10,
            output_hard: 128 << 20,
            output_soft_for: Duration::from_secs(60),
            shared_slots: Some(DEFAULT_SLOT_SIZE),
            max_shared_bytes: 256 << 20,
        }
    }
}

impl Config {
    /// The defaults: the address from `IPCQ_ADDR` or the platform default, and the limits
    /// below.
    pub fn new() -> Self {
        Self::default()
    }

    /// The address to listen on: a socket path on Unix, a pipe name on Windows.
    ///
    /// Default: `IPCQ_ADDR` if set, else `$XDG_RUNTIME_DIR/ipcq.sock`, else
    /// `/tmp/ipcq-<uid>/ipcq.sock` (Unix) or `ipcq` (Windows).
    #[must_use]
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// The longest frame accepted, which bounds the size of one item. A client that sends a
    /// longer frame gets an error and its connection is closed.
    ///
    /// Default: 16 MiB.
    #[must_use]
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.max_frame_len = len;
        self
    }

    /// Most client connections at once; a client over the limit gets a clear error.
    ///
    /// Default: 4096.
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Most named objects at once; opening one more fails.
    ///
    /// Default: 65,536.
    #[must_use]
    pub fn max_objects(mut self, n: usize) -> Self {
        self.max_objects = n;
        self
    }

    /// Payload bytes one queue may hold; over it, the queue counts as full. Must be at least
    /// the frame limit, so that any one item fits an empty queue.
    ///
    /// Default: 256 MiB.
    #[must_use]
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// Payload bytes all queues together may hold; over it, every queue counts as full.
    /// Must be at least the frame limit.
    ///
    /// Default: 1 GiB.
    #[must_use]
    pub fn max_total_bytes(mut self, bytes: usize) -> Self {
        self.max_total_bytes = bytes;
        self
    }

    /// Threads of the runtime that [`Broker::start`](crate::Broker::start) creates (1 for a
    /// single-threaded runtime). Not used by [`serve`](crate::serve), which runs on the
    /// caller's runtime.
    ///
    /// Default: 2.
    #[must_use]
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Most requests parked at once on one object (getters, putters or joiners of a queue;
    /// acquirers of a lock or semaphore; waiters of an event or barrier). One more gets
    /// `LimitReached` at once.
    ///
    /// Default: 65,536.
    #[must_use]
    pub fn max_waiters(mut self, n: usize) -> Self {
        self.max_waiters = n;
        self
    }

    /// Also admits clients running as user `uid` (Unix). By default the broker admits only
    /// its own user and root: every connection's peer credentials are checked, and a client
    /// of another user gets `Denied` (the socket file is owner-only as well; another user
    /// also needs a way to reach it, such as a directory both can enter and a socket mode
    /// they can use). Ignored on Windows, where the pipe admits only the current user.
    #[must_use]
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allow_uids.push(uid);
        self
    }

    /// Also admits clients whose primary or supplementary group is `gid` (Unix; see
    /// [`allow_uid`](Config::allow_uid)).
    #[must_use]
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.allow_gids.push(gid);
        self
    }

    /// How many bytes of answers one connection may leave unread (written by the broker,
    /// not yet taken by the client's socket), as Redis's client-output-buffer-limit:
    ///
    /// - over `soft`, the broker stops reading that connection's requests (they wait in
    ///   its socket) until the client has read enough to be back under; other connections
    ///   carry on;
    /// - over `soft` for longer than `soft_for`, or over `hard` at any moment, the
    ///   connection is dropped with a log line, and what it held goes back as for any
    ///   disconnect (its in-flight items to the head of their queues, its locks freed).
    ///
    /// Answers to a client's own requests stay within `soft` plus one answer; what can
    /// reach `hard` is items delivered to requests it parked earlier.
    ///
    /// Default: 256 KiB soft, 128 MiB hard, 60 s. `hard` must be at least twice the frame
    /// limit plus `soft`, so that no single answer can reach it.
    #[must_use]
    pub fn output_limits(mut self, soft: usize, hard: usize, soft_for: Duration) -> Self {
        self.output_soft = soft;
        self.output_hard = hard;
        self.output_soft_for = soft_for;
        self
    }

    /// Whether bounded queues get a ring in shared memory (Linux), whose slots hold items
    /// of up to `slot_size` bytes: clients of the broker's own user then put and take
    /// items there, with no system call while both sides are busy, and the socket path
    /// serves everyone else with the same guarantees. Each such queue pins its capacity
    /// times the slot size (plus 16 bytes a slot, rounded up to 64) of memory, counted in
    /// [`max_shared_bytes`](Config::max_shared_bytes); queues of more than 65,536 items,
    /// unbounded queues, and queues whose ring would not fit use the socket path. `None`
    /// turns rings off.
    ///
    /// An item larger than a slot, a put or get over the socket that must wait,
    /// `task_done` or `join` turns a queue over to the socket path for good (see the
    /// performance docs); clients of the socket are otherwise served from the ring.
    ///
    /// Default: on, with slots of 496 bytes (512 with their header).
    #[must_use]
    pub fn shared_memory(mut self, slot_size: Option<usize>) -> Self {
        self.shared_slots = slot_size;
        self
    }

    /// Bytes all queues' rings in shared memory may take together (each is allocated
    /// when its queue is made, and pinned until the queue goes); a queue whose ring would
    /// not fit has none. Separate from the budgets for items.
    ///
    /// Default: 256 MiB.
    #[must_use]
    pub fn max_shared_bytes(mut self, bytes: usize) -> Self {
        self.max_shared_bytes = bytes;
        self
    }

    pub(crate) fn output(&self) -> OutputLimits {
        OutputLimits {
            soft: self.output_soft,
            hard: self.output_hard,
            soft_for: self.output_soft_for,
        }
    }

    /// The address this configuration listens on.
    pub fn get_addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |msg: String| Err(Error::InvalidConfig(msg));
        if self.addr.is_empty() {
            return invalid("the address is empty".into());
        }
        if self.max_frame_len < 1024 || self.max_frame_len > u32::MAX as usize {
            return invalid(format!(
                "max_frame_len must be between 1 KiB and 4 GiB, not {}",
                self.max_frame_len
            ));
        }
        if self.max_queue_bytes < self.max_frame_len || self.max_total_bytes < self.max_frame_len {
            return invalid(format!(
                "byte budgets (queue {}, total {}) must be at least max_frame_len ({})",
                self.max_queue_bytes, self.max_total_bytes, self.max_frame_len
            ));
        }
        if self.output_soft == 0
            || self.output_hard < self.output_soft + 2 * self.max_frame_len
            || self.output_soft_for.is_zero()
        {
            return invalid(format!(
                "output limits: soft ({}) must be positive, hard ({}) at least soft plus twice \
                 max_frame_len ({}), and the time positive",
                self.output_soft, self.output_hard, self.max_frame_len
            ));
        }
        if self
            .shared_slots
            .is_some_and(|size| size == 0 || size > MOST_SLOT_SIZE)
        {
            return invalid(format!(
                "a shared-memory slot holds 1 byte to {MOST_SLOT_SIZE} bytes, not {:?}",
                self.shared_slots
            ));
        }
        if self.max_connections == 0
            || self.max_objects == 0
            || self.worker_threads == 0
            || self.max_waiters == 0
        {
            return invalid(
                "max_connections, max_objects, max_waiters and worker_threads must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}
