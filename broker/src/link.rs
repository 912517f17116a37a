//! The write side of one connection: the messages waiting for its socket ([`Link`]),
//! written straight from the task that produced them at the end of a batch of requests
//! ([`flush_scope`]) or by the connection's writer task ([`write_loop`]), which coalesces
//! them; and the bound on what a client leaves unread ([`OutputLimits`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};

/// Items at least this long are written straight from their `Bytes` rather than copied into
/// the write buffer.
pub(crate) const DIRECT_WRITE: usize = 16 * 1024;

/// Flush the write buffer once it holds this much.
const WRITE_BATCH: usize = 256 * 1024;

/// A message for the connection's writer task: an encoded frame head and the item bytes
/// that follow it. Items are passed as `Bytes`, so the writer sends the bytes the producer's
/// frame carried without copying them into a new message.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) head: Vec<u8>,
    pub(crate) tail: Vec<Bytes>,
}

impl Outgoing {
    /// Bytes this message holds until it is written.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.tail.iter().map(Bytes::len).sum::<usize>()
    }
}

/// How much a connection may leave unread (bytes the broker has for it and the socket has
/// not taken), as Redis's client-output-buffer-limit. Replies are produced by the client's
/// own requests and by its parked requests (deliveries, expiries), so a client that stops
/// reading its socket would otherwise make the broker keep every answer for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputLimits {
    /// Over this, the broker stops reading the connection's requests until it is back
    /// under; other connections are not affected.
    pub(crate) soft: usize,
    /// Over this, the connection is dropped at once.
    pub(crate) hard: usize,
    /// Over `soft` for this long, the connection is dropped.
    pub(crate) soft_for: std::time::Duration,
}

/// Where a connection's unread output stands, for its session to watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Output {
    /// When the output last went over the soft limit, while it is over.
    pub(crate) over_soft_since: Option<tokio::time::Instant>,
    /// It went over the hard limit: the connection is to be dropped.
    pub(crate) overflowed: bool,
}

/// Writes to the connection's socket what it takes now, without waiting.
pub(crate) trait TryWrite: Send + Sync + std::fmt::Debug {
    /// Bytes written; 0 when the socket is full.
    ///
    /// # Errors
    ///
    /// The socket's error.
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
}

/// What is waiting to be written to one connection, and who writes it.
///
/// Messages queue here in order. Whoever writes owns the socket's write side until the
/// queue is empty: the session task that produced them, at the end of a batch of requests
/// ([`flush_scope`]), when the socket takes everything at once; the connection's writer
/// task otherwise. Answers produced while a batch is handled go out in one write, and the
/// common case costs no hop to another task.
#[derive(Debug)]
pub(crate) struct Link {
    state: Mutex<LinkState>,
    /// The writer task has work.
    pub(crate) wake: Notify,
    socket: Box<dyn TryWrite>,
    limits: OutputLimits,
    /// Changes when the output crosses the soft limit or overflows.
    output: watch::Sender<Output>,
}

#[derive(Debug, Default)]
pub(crate) struct LinkState {
    pub(crate) queue: VecDeque<Outgoing>,
    /// Who writes now, if anyone.
    pub(crate) owner: Option<Owner>,
    /// In a flush scope's list already.
    flagged: bool,
    /// Nothing more will be queued: the writer sends what is there and shuts down.
    pub(crate) closed: bool,
    /// Bytes queued or being written by the writer task, not yet taken by the socket.
    pub(crate) unwritten: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A task flushing directly.
    Flush,
    /// The connection's writer task.
    Task,
}

thread_local! {
    /// Links with messages queued while a session task handles a batch of requests on
    /// this thread; `None` outside a batch.
    static DIRTY: RefCell<Option<Vec<Arc<Link>>>> = const { RefCell::new(None) };
}

/// Runs `f` (a batch of requests, handled without awaiting) and then writes what it
/// queued for every connection straight to their sockets where they take it, handing
/// the rest to their writer tasks. Even if `f` panics, the thread leaves the batch and
/// what was queued is written.
pub(crate) fn flush_scope<T>(f: impl FnOnce() -> T) -> T {
    /// Ends the batch on every way out of it.
    struct Batch(Option<Vec<Arc<Link>>>);

    impl Drop for Batch {
        fn drop(&mut self) {
            let outer = self.0.take();
            let links = DIRTY.with(|dirty| std::mem::replace(&mut *dirty.borrow_mut(), outer));
            for link in links.unwrap_or_default() {
                link.flush();
            }
        }
    }

    let _batch = Batch(DIRTY.with(|dirty| dirty.borrow_mut().replace(Vec::new())));
    f()
}

impl Link {
    pub(crate) fn new(socket: Box<dyn TryWrite>, limits: OutputLimits) -> Arc<Self> {
        Arc::new(Link {
            state: Mutex::new(LinkState::default()),
            wake: Notify::new(),
            socket,
            limits,
            output: watch::channel(Output::default()).0,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LinkState> {
        // Pushes, drains and flags: a poisoned lock is still coherent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the connection's unread output.
    pub(crate) fn output(&self) -> watch::Receiver<Output> {
        self.output.subscribe()
    }

    /// Whether the unread output is over the soft limit now.
    pub(crate) fn over_soft(&self) -> bool {
        self.lock().unwritten > self.limits.soft
    }

    pub(crate) fn limits(&self) -> OutputLimits {
        self.limits
    }

    /// `bytes` more (or, with `written`, fewer) bytes unread: tells the session when that
    /// crosses a limit. Called with the state locked, so crossings are seen in order.
    fn account(&self, state: &mut LinkState, more: usize, written: usize) {
        let before = state.unwritten;
        state.unwritten = (before + more).saturating_sub(written);
        let after = state.unwritten;
        let soft = self.limits.soft;
        if after > self.limits.hard {
            // Dropped at once: what is queued is freed now, and nothing more is queued.
            // Deliveries among it stay on the client's ledger and go back to their queues
            // when the session ends.
            state.queue.clear();
            state.closed = true;
            state.unwritten = 0;
            self.output.send_modify(|output| output.overflowed = true);
            self.wake.notify_one();
        } else if before <= soft && after > soft {
            let now = tokio::time::Instant::now();
            self.output
                .send_modify(|output| output.over_soft_since = Some(now));
        } else if before > soft && after <= soft {
            self.output
                .send_modify(|output| output.over_soft_since = None);
        }
    }

    /// Queues a message; makes sure someone will write it.
    pub(crate) fn push(self: &Arc<Self>, msg: Outgoing) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        self.account(&mut state, msg.len(), 0);
        if state.closed {
            return;
        }
        state.queue.push_back(msg);
        if state.owner.is_some() || state.flagged {
            return;
        }
        let scheduled = DIRTY.with(|dirty| match dirty.borrow_mut().as_mut() {
            Some(links) => {
                links.push(Arc::clone(self));
                true
            }
            None => false,
        });
        if scheduled {
            state.flagged = true;
        } else {
            state.owner = Some(Owner::Task);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// The writer task wrote `bytes` that it had taken from the queue.
    pub(crate) fn written(&self, bytes: usize) {
        let mut state = self.lock();
        self.account(&mut state, 0, bytes);
    }

    /// Writes what is queued straight to the socket, if nobody else is writing; what the
    /// socket does not take, and large items (sent without copying), go to the writer task.
    fn flush(&self) {
        let mut buf = Vec::new();
        {
            let mut state = self.lock();
            state.flagged = false;
            if state.owner.is_some() || state.queue.is_empty() {
                return;
            }
            let large = state
                .queue
                .iter()
                .any(|msg| msg.tail.iter().any(|item| item.len() >= DIRECT_WRITE));
            if large {
                state.owner = Some(Owner::Task);
                drop(state);
                self.wake.notify_one();
                return;
            }
            state.owner = Some(Owner::Flush);
            for msg in state.queue.drain(..) {
                buf.extend_from_slice(&msg.head);
                for item in msg.tail {
                    buf.extend_from_slice(&item);
                }
            }
        }
        let mut written = 0;
        while written < buf.len() {
            match self.socket.try_write(&buf[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                // The connection is broken: its session ends and cleans up.
                Err(_) => break,
            }
        }
        let mut state = self.lock();
        self.account(&mut state, 0, written);
        if written < buf.len() && !state.closed {
            state.queue.push_front(Outgoing {
                head: buf.split_off(written),
                tail: Vec::new(),
            });
        }
        if state.queue.is_empty() {
            state.owner = None;
            if state.closed {
                // The writer task waits for the socket to be handed back to shut it down.
                drop(state);
                self.wake.notify_one();
            }
        } else {
            state.owner = Some(Owner::Task);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// No more messages: the writer task sends what is queued and ends.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// [`TryWrite`] for the connection's write half: a poll that registers no waker, so that
/// it never takes the socket's readiness from the writer task (which only writes when
/// nobody else does).
#[derive(Debug)]
pub(crate) struct Direct<W>(pub(crate) Mutex<W>);

impl<W> TryWrite for Direct<W>
where
    W: tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug,
{
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        let mut writer = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut *writer).poll_write(&mut cx, buf) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => Ok(0),
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
#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OutputLimits = OutputLimits {
        soft: 10,
        hard: 1000,
        soft_for: std::time::Duration::from_secs(60),
    };

    /// A socket with room for `room` more bytes, recording what it took.
    #[derive(Debug)]
    struct Socket {
        room: Mutex<usize>,
        written: Mutex<Vec<u8>>,
    }

    impl TryWrite for Arc<Socket> {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            let n = buf.len().min(*room);
            *room -= n;
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    fn socket(room: usize) -> Arc<Socket> {
        Arc::new(Socket {
            room: Mutex::new(room),
            written: Mutex::new(Vec::new()),
        })
    }

    fn msg(bytes: &[u8]) -> Outgoing {
        Outgoing {
            head: bytes.to_vec(),
            tail: Vec::new(),
        }
    }

    fn queued(link: &Link) -> Vec<u8> {
        link.lock()
            .queue
            .iter()
            .flat_map(|m| m.head.clone())
            .collect()
    }

    #[test]
    fn a_batch_goes_out_in_one_write_at_its_end() {
        let socket = socket(100);
        let link = Link::new(Box::new(Arc::clone(&socket)), LIMITS);
        flush_scope(|| {
            link.push(msg(b"abc"));
            link.push(msg(b"defg"));
            assert!(
                socket.written.lock().unwrap().is_empty(),
                "not before the end"
            );
        });
        assert_eq!(&socket.written.lock().unwrap()[..], b"abcdefg");
        assert!(link.lock().queue.is_empty());
        assert_eq!(link.lock().owner, None);
    }

    #[test]
    fn what_the_socket_does_not_take_goes_to_the_writer_in_order() {
        let socket = socket(4);
        let link = Link::new(Box::new(Arc::clone(&socket)), LIMITS);
        flush_scope(|| {
            link.push(msg(b"abc"));
            link.push(msg(b"defg"));
        });
        assert_eq!(&socket.written.lock().unwrap()[..], b"abcd");
        assert_eq!(link.lock().owner, Some(Owner::Task));
        // Later answers queue behind the rest, for the writer task.
        flush_scope(|| link.push(msg(b"h")));
        assert_eq!(queued(&link), b"efgh");
        assert_eq!(&socket.written.lock().unwrap()[..], b"abcd");
    }

    #[test]
    fn unread_output_crosses_the_soft_limit_and_back() {
        let socket = socket(0);
        let link = Link::new(Box::new(Arc::clone(&socket)), LIMITS);
        let output = link.output();
        flush_scope(|| link.push(msg(b"0123456789")));
        assert!(
            output.borrow().over_soft_since.is_none(),
            "10 bytes is the limit"
        );
        flush_scope(|| link.push(msg(b"a")));
        assert!(output.borrow().over_soft_since.is_some());
        assert!(link.over_soft());
        link.written(11);
        assert!(output.borrow().over_soft_since.is_none());
        assert!(!output.borrow().overflowed);
    }

    #[test]
    fn past_the_hard_limit_the_output_is_dropped_and_nothing_more_queued() {
        let socket = socket(0);
        let link = Link::new(Box::new(Arc::clone(&socket)), LIMITS);
        flush_scope(|| link.push(msg(&[7; 600])));
        assert!(!link.output().borrow().overflowed);
        flush_scope(|| link.push(msg(&[7; 600])));
        assert!(link.output().borrow().overflowed);
        assert!(link.lock().queue.is_empty(), "what was queued is freed");
        flush_scope(|| link.push(msg(b"late")));
        assert!(link.lock().queue.is_empty(), "nothing more is queued");
        assert_eq!(link.lock().unwritten, 0);
    }

    #[test]
    fn outside_a_batch_the_writer_task_writes() {
        let socket = socket(100);
        let link = Link::new(Box::new(Arc::clone(&socket)), LIMITS);
        link.push(msg(b"late"));
        assert_eq!(link.lock().owner, Some(Owner::Task));
        assert!(socket.written.lock().unwrap().is_empty());
    }
}
