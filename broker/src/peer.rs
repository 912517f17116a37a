//! One connected client as the objects see it: where its replies go, and which items it
//! holds in flight.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ipcq_proto::{BrokerMsg, ErrorCode, ErrorReply, Reply};
use tokio::sync::{watch, Notify};

use crate::connection::DIRECT_WRITE;
use crate::objects::Queue;

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
    fn push(self: &Arc<Self>, msg: Outgoing) {
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
    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// The broker's side of one client connection, shared by the session task and by every
/// object where this client waits.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u64,
    /// The client's process, from the socket's peer credentials; 0 if unknown.
    pub(crate) pid: u32,
    /// Unbounded on purpose: replies are bounded by the requests the client made, and an
    /// object must be able to answer while holding its own lock, which rules out waiting
    /// for room.
    link: Arc<Link>,
    /// The longest frame the client accepts (the lower of its limit and the broker's).
    max_frame_len: AtomicUsize,
    in_flight: Mutex<InFlight>,
}

/// Items delivered to this client and not yet acknowledged. They are the client's until it
/// acknowledges them; if the connection goes away first they go back to their queues.
#[derive(Debug, Default)]
struct InFlight {
    /// Set once the connection is being torn down: no delivery may be registered after the
    /// ledger has been handed back, or its item would be lost.
    closed: bool,
    next_tag: u64,
    /// Deliveries in tag order, as runs of consecutive tags from one queue: one entry per
    /// delivery rather than per item.
    runs: VecDeque<Run>,
}

/// Items of one queue delivered under consecutive tags `first ..`.
#[derive(Debug)]
struct Run {
    first: u64,
    queue: Arc<Queue>,
    items: VecDeque<Bytes>,
}

/// Items taken from the ledger, grouped by queue, in tag order.
pub(crate) type Taken = Vec<(Arc<Queue>, Vec<Bytes>)>;

impl Peer {
    pub(crate) fn new(id: u64, pid: u32, link: Arc<Link>, max_frame_len: usize) -> Self {
        Peer {
            id,
            pid,
            link,
            max_frame_len: AtomicUsize::new(max_frame_len),
            in_flight: Mutex::new(InFlight::default()),
        }
    }

    pub(crate) fn max_frame_len(&self) -> usize {
        self.max_frame_len.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_frame_len(&self, len: usize) {
        self.max_frame_len.store(len, Ordering::Relaxed);
    }

    /// Sends an already encoded frame.
    pub(crate) fn send_raw(&self, head: Vec<u8>) {
        self.link.push(Outgoing {
            head,
            tail: Vec::new(),
        });
    }

    /// Sends a frame. A failure means the writer is gone, so the connection is closing and
    /// the session's cleanup takes care of whatever this message carried.
    pub(crate) fn send(&self, msg: &BrokerMsg, tail: Vec<Bytes>) {
        let tail_len = tail.iter().map(Bytes::len).sum();
        let mut head = Vec::with_capacity(32);
        // Replies are built by the broker from items that each fit in a frame and from
        // bounded counts; the frame check guards against a bug rather than input.
        match ipcq_proto::encode(msg, tail_len, self.max_frame_len() + 1024, &mut head) {
            Ok(()) => self.link.push(Outgoing { head, tail }),
            Err(err) => tracing::error!(cause = %err, peer = self.id, "reply could not be encoded"),
        }
    }

    /// Answers request `id`. An answer that cannot be sent (longer than the client's frame
    /// limit) is replaced by an error saying so: no request goes unanswered.
    pub(crate) fn reply(&self, id: u64, body: Reply) {
        let msg = BrokerMsg::Reply { id, body };
        let mut head = Vec::with_capacity(32);
        match ipcq_proto::encode(&msg, 0, self.max_frame_len() + 1024, &mut head) {
            Ok(()) => self.link.push(Outgoing {
                head,
                tail: Vec::new(),
            }),
            Err(err) => {
                tracing::warn!(cause = %err, peer = self.id, "answer too large for the client");
                let error = ErrorReply::new(
                    ErrorCode::TooLarge,
                    format!("the answer does not fit in a frame: {err}"),
                );
                self.send(
                    &BrokerMsg::Reply {
                        id,
                        body: Reply::Error(error),
                    },
                    Vec::new(),
                );
            }
        }
    }

    pub(crate) fn reply_error(&self, id: u64, code: ErrorCode, message: impl Into<String>) {
        self.reply(id, Reply::Error(ErrorReply::new(code, message)));
    }

    pub(crate) fn fatal(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(
            &BrokerMsg::Fatal(ErrorReply::new(code, message)),
            Vec::new(),
        );
    }

    /// Hands items to this client in answer to request `id`, recording them in flight.
    ///
    /// Called with the queue's lock held. Returns the items if the connection is already
    /// being torn down, so the queue can give them to someone else.
    pub(crate) fn deliver(
        &self,
        id: u64,
        queue: &Arc<Queue>,
        items: Vec<Bytes>,
        many: bool,
        ready: u64,
    ) -> Result<(), Vec<Bytes>> {
        let mut in_flight = self.lock();
        if in_flight.closed {
            return Err(items);
        }
        let tag = in_flight.next_tag;
        in_flight.next_tag += items.len() as u64;
        let body = if many {
            Reply::Items {
                tag,
                lens: items.iter().map(len_u32).collect(),
                ready,
            }
        } else {
            Reply::Item { tag }
        };
        // The frame is assembled here: small items are copied once, into it, and only
        // large ones travel to the writer as `Bytes`.
        let tail_len: usize = items.iter().map(Bytes::len).sum();
        let mut head = Vec::with_capacity(32 + items.len() * 5 + tail_len.min(DIRECT_WRITE * 4));
        let mut tail = Vec::new();
        let encoded = ipcq_proto::encode(
            &BrokerMsg::Reply { id, body },
            tail_len,
            self.max_frame_len() + 1024,
            &mut head,
        );
        if let Err(err) = encoded {
            tracing::error!(cause = %err, peer = self.id, "delivery could not be encoded");
            return Err(items);
        }
        for item in &items {
            if item.len() >= DIRECT_WRITE || !tail.is_empty() {
                tail.push(item.clone());
            } else {
                head.extend_from_slice(item);
            }
        }
        in_flight.runs.push_back(Run {
            first: tag,
            queue: Arc::clone(queue),
            items: items.into(),
        });
        drop(in_flight);
        self.link.push(Outgoing { head, tail });
        Ok(())
    }

    /// Removes the deliveries `tag .. tag + count` from the ledger (to settle them, or to
    /// return them to their queues). Unknown tags are ignored, so acknowledging twice cannot
    /// settle an item twice.
    pub(crate) fn take(&self, tag: u64, count: u32) -> Taken {
        let end = tag.saturating_add(u64::from(count));
        let mut in_flight = self.lock();
        let mut taken: Taken = Vec::new();
        let mut at = 0;
        // Acknowledgements usually settle whole runs from the front, in order.
        while let Some(run) = in_flight.runs.get_mut(at) {
            let run_end = run.first + run.items.len() as u64;
            if run_end <= tag {
                at += 1;
                continue;
            }
            if run.first >= end {
                break;
            }
            let low = usize::try_from(tag.saturating_sub(run.first)).unwrap_or(usize::MAX);
            let high = usize::try_from(end.min(run_end) - run.first).unwrap_or(usize::MAX);
            let queue = Arc::clone(&run.queue);
            let items: Vec<Bytes> = if low == 0 && high == run.items.len() {
                let run = in_flight.runs.remove(at).expect("the run was just seen");
                run.items.into()
            } else if low == 0 {
                let items = run.items.drain(..high).collect();
                run.first += high as u64;
                at += 1;
                items
            } else {
                // Take the middle (or the end) and keep what follows as a run of its own.
                let rest: VecDeque<Bytes> = run.items.split_off(high);
                let items = run.items.split_off(low).into();
                let rest_first = run.first + high as u64;
                at += 1;
                if !rest.is_empty() {
                    let queue = Arc::clone(&run.queue);
                    in_flight.runs.insert(
                        at,
                        Run {
                            first: rest_first,
                            queue,
                            items: rest,
                        },
                    );
                    at += 1;
                }
                items
            };
            match taken.last_mut() {
                Some((last, more)) if Arc::ptr_eq(last, &queue) => more.extend(items),
                _ => taken.push((queue, items)),
            }
        }
        taken
    }

    /// Closes the ledger and returns what was in flight, grouped by queue, oldest first.
    pub(crate) fn close(&self) -> Taken {
        let runs = {
            let mut in_flight = self.lock();
            in_flight.closed = true;
            std::mem::take(&mut in_flight.runs)
        };
        let mut taken: Taken = Vec::new();
        for run in runs {
            match taken.last_mut() {
                Some((last, more)) if Arc::ptr_eq(last, &run.queue) => more.extend(run.items),
                _ => taken.push((run.queue, run.items.into())),
            }
        }
        taken
    }

    fn lock(&self) -> MutexGuard<'_, InFlight> {
        // A panic while holding this lock would leave a consistent ledger (every mutation
        // is a single push or drain), so a poisoned lock is still safe to use.
        self.in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for Peer {
    /// The last handle on the peer is gone: nothing more will be sent to this client.
    fn drop(&mut self) {
        self.link.close();
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

/// An item's length on the wire. Items come out of frames whose length is a `u32`.
fn len_u32(item: &Bytes) -> u32 {
    u32::try_from(item.len()).unwrap_or(u32::MAX)
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
