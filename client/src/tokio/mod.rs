//! The tokio client: the operations of the blocking client as `async fn`s, on one
//! connection that any number of tasks share.
//!
//! # Cancel safety
//!
//! Every future here may be dropped at any await point — by losing a
//! [`tokio::select!`](::tokio::select) race, by [`tokio::time::timeout`],
//! by aborting its task — without losing or duplicating anything:
//!
//! - A dropped `get`/`recv` takes nothing. A request it left waiting in the broker is
//!   withdrawn; items that were already on their way to it are kept, in order, for the
//!   next `get` on the same queue from this client, like prefetched items (they count in
//!   `len`, and go back to the head of the queue if the last handle on it is dropped or
//!   the connection closes). A lone consumer keeps seeing its queue's order.
//! - A dropped `put`/`send` has put nothing: a put first waits for room (a slot the broker
//!   reserves for this client), and only then hands the item to the connection, with no
//!   await point in between. So a `put` put the item exactly when it returned `Ok`; the
//!   item is still the caller's to retry otherwise. A slot granted to a dropped put stays
//!   with this client for its next put. (`put_many` puts in order: dropped, it has put a
//!   prefix of its items.)
//! - A dropped `acquire` holds nothing: a permit granted to it is released at once.
//! - A dropped event or barrier `wait` or `join` leaves without a trace; a barrier party
//!   that stops waiting is not counted and does not break the barrier.
//!
//! # Durability
//!
//! When a `put` returns, its item is written to the broker's socket, unless the socket is
//! full (the broker reads slower than this client writes), in which case it waits in this
//! client's write buffer and is written in order. [`Client::flush`] waits until everything
//! has been written: a process that must not lose an item if it dies right after its last
//! `put` calls it before exiting.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> ipcq_client::Result<()> {
//! use ipcq_client::tokio::Client;
//!
//! let client = Client::connect_default().await?;
//! let jobs = client.queue::<u64>("jobs", 100).await?;
//! let results = client.queue::<u64>("results", 100).await?;
//! jobs.put(&7).await?;
//! tokio::select! {
//!     job = jobs.get() => println!("job {}", job?),
//!     result = results.get() => println!("result {}", result?),
//! }
//! # Ok(())
//! # }
//! ```

mod pipe;
mod queue;
mod sync;

pub use pipe::{PipeEnd, RawPipeEnd};
pub use queue::{Queue, RawQueue};
pub use sync::{Barrier, Event, Lock, LockGuard, Semaphore, SemaphoreGuard};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ::tokio::sync::{oneshot, Notify};
use ::tokio::task::AbortHandle;
use bytes::{Bytes, BytesMut};
use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::{GenericFilePath, GenericNamespaced};
use ipcq_proto::{AddrKind, BrokerMsg, ClientMsg, Kind, ObjectStats, Op, Reply, Wait};
use serde::{de::DeserializeOwned, Serialize};

use crate::common::{
    connect_error, hello_frame, release_msg, their_hello, Dead, Grant, REPLY_SLACK,
};
use crate::connect::{self, ConnectOptions};
use crate::ops::{self, Request};
pub(crate) use crate::ops::{unexpected, Purpose};
use crate::pipe::{End, PipeOptions};
use crate::queue::QueueOptions;
use crate::{Error, Result};
use queue::Local;

/// Flush the write buffer in chunks of at most this much.
const WRITE_CHUNK: usize = 256 * 1024;

/// A connection to a broker, for tokio.
///
/// The same as the blocking [`crate::Client`] — one connection and one owner, released by
/// the broker when the last clone of the client and of its handles is dropped — with
/// `async` operations. It needs a tokio runtime with I/O and time enabled, and runs two
/// tasks on it (one reads the socket, one writes what does not fit at once). Clones are
/// shallow; any number of tasks may use one client at once, each request carrying its own
/// id. See the [module documentation](self) for cancel safety.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> ipcq_client::Result<()> {
/// let client = ipcq_client::tokio::Client::connect_default().await?;
/// let jobs = client.queue::<String>("jobs", 100).await?;
/// jobs.put(&"hello".to_string()).await?;
/// assert_eq!(jobs.get().await?, "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    conn: Arc<Conn>,
    /// The broker's frame limit, from its handshake.
    max_frame_len: usize,
    next_id: AtomicU64,
    /// Per-handle state (credits, fetched items), shared by every handle on the same
    /// object; weak, so that dropping the last handle gives its items and credits back.
    locals: Mutex<HashMap<u32, Weak<Local>>>,
    reader: AbortHandle,
}

/// The socket and what the reader task, the writer task and the callers share.
struct Conn {
    stream: Stream,
    out: Mutex<Out>,
    /// The writer task has bytes to write, or the client is gone.
    wake_writer: Notify,
    /// The write buffer was emptied.
    idle: Notify,
    state: Mutex<State>,
}

/// Bytes not yet written. While `busy`, the writer task owns the socket's write side and
/// new frames queue behind what it writes; otherwise a caller writes its frame itself.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    busy: bool,
    closing: bool,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Slot>,
    /// Set once the connection is unusable; every call fails with it from then on.
    dead: Option<Dead>,
}

struct Slot {
    tx: Option<oneshot::Sender<(Reply, Bytes)>>,
    purpose: Purpose,
    handle: u32,
    /// The caller stopped waiting: the reader settles the answer.
    abandoned: bool,
}

impl Client {
    /// Connects to the broker at `addr` (as [`crate::Client::connect`]), with the default
    /// [`ConnectOptions`].
    ///
    /// # Errors
    ///
    /// [`Error::NoBroker`] when nothing listens there, [`Error::NoAnswer`] when something
    /// listens but does not complete the handshake in time, [`Error::Untrusted`] when
    /// another user serves the address, [`Error::Protocol`] when what answers is not an
    /// ipcq broker of this protocol version, [`Error::LimitReached`] when the broker has
    /// its maximum of connections.
    pub async fn connect(addr: &str) -> Result<Client> {
        Self::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects to the broker at `addr` with `options` (time limit, trusted users).
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client> {
        let timeout = options.timeout.max(Duration::from_millis(1));
        let step = std::sync::Mutex::new("connecting");
        let attempt = Self::connect_steps(addr, options, &step);
        match ::tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                let what = *step.lock().unwrap_or_else(|p| p.into_inner());
                Err(connect::no_answer(addr, timeout, what))
            }
        }
    }

    async fn connect_steps(
        addr: &str,
        options: &ConnectOptions,
        step: &std::sync::Mutex<&'static str>,
    ) -> Result<Client> {
        let at = |what: &'static str| *step.lock().unwrap_or_else(|p| p.into_inner()) = what;
        connect::prepare(addr)?;
        let stream = loop {
            let attempt = match ipcq_proto::classify_addr(addr) {
                AddrKind::Path(path) => {
                    Stream::connect(path.to_fs_name::<GenericFilePath>()?).await
                }
                AddrKind::Namespaced(name) => {
                    Stream::connect(name.to_ns_name::<GenericNamespaced>()?).await
                }
            };
            match attempt {
                Ok(stream) => break stream,
                // The listener's backlog is full: try again until the time limit.
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    ::tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(err) => return Err(connect_error(addr, err)),
            }
        };
        connect::verify_server(&stream, addr, options)?;
        at("waiting for the broker's handshake");
        // If the write fails, the broker has closed the connection: its reason is read below.
        let _ = (&stream).write_all(&hello_frame()?).await;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let frame = match read_frame(&mut &stream, &mut buf, ipcq_proto::MAX_HANDSHAKE_LEN).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(Error::BrokerGone("the broker closed the connection".into())),
            Err(err) => return Err(err.error()),
        };
        let max_frame_len = their_hello(frame)?;
        at("waiting for the first answer");

        let conn = Arc::new(Conn {
            stream,
            out: Mutex::new(Out::default()),
            wake_writer: Notify::new(),
            idle: Notify::new(),
            state: Mutex::new(State::default()),
        });
        ::tokio::spawn(write_loop(Arc::clone(&conn)));
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let reader = ::tokio::spawn(read_loop(
                Arc::clone(&conn),
                weak.clone(),
                buf,
                max_frame_len + REPLY_SLACK,
            ));
            Inner {
                addr: addr.to_owned(),
                conn,
                max_frame_len,
                next_id: AtomicU64::new(1),
                locals: Mutex::new(HashMap::new()),
                reader: reader.abort_handle(),
            }
        });
        let client = Client { inner };
        // The broker answers a refused handshake (version, connection limit) with an error
        // frame: a first round trip turns it into this function's error.
        client.ping().await?;
        Ok(client)
    }

    /// Connects to the broker at `IPCQ_ADDR`, else at the platform default (as
    /// [`crate::Client::connect_default`]).
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_default() -> Result<Client> {
        Self::connect(&ipcq_proto::default_addr()).await
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The largest frame the broker accepts; an item must fit in one with a few bytes to
    /// spare.
    pub fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len
    }

    /// Opens the queue `name` for items of type `T` (postcard), creating it with
    /// `capacity` (0 for unbounded) if it does not exist.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue`].
    pub async fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Queue<T>> {
        self.raw_queue(name, capacity).await.map(Queue::from_raw)
    }

    /// Opens the queue `name` for items of type `T`, creating it with `options` if it does
    /// not exist (as [`crate::Client::queue_with`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue_with`].
    pub async fn queue_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Queue<T>> {
        self.raw_queue_with(name, options)
            .await
            .map(Queue::from_raw)
    }

    /// Opens the queue `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue`].
    pub async fn raw_queue(&self, name: &str, capacity: usize) -> Result<RawQueue> {
        self.raw_queue_with(name, QueueOptions::new().capacity(capacity))
            .await
    }

    /// Opens the queue `name` for raw bytes, creating it with `options` if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::queue_with`].
    pub async fn raw_queue_with(&self, name: &str, options: QueueOptions) -> Result<RawQueue> {
        let handle = self.open(name, options.kind()).await?;
        Ok(RawQueue::new(
            self.local(handle),
            name,
            options.get_capacity(),
        ))
    }

    /// Opens end `end` of the duplex pipe `name` (as [`crate::Client::pipe`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe`].
    pub async fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
    ) -> Result<PipeEnd<T>> {
        self.pipe_with(name, end, PipeOptions::default()).await
    }

    /// Opens end `end` of the pipe `name` created with `options`.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe_with`].
    pub async fn pipe_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
        options: PipeOptions,
    ) -> Result<PipeEnd<T>> {
        self.raw_pipe(name, end, options)
            .await
            .map(PipeEnd::from_raw)
    }

    /// Opens end `end` of the pipe `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Client::pipe_with`].
    pub async fn raw_pipe(&self, name: &str, end: End, options: PipeOptions) -> Result<RawPipeEnd> {
        let kind = Kind::PipeEnd {
            duplex: options.is_duplex(),
            capacity: options.get_capacity() as u64,
            end: end.index(),
        };
        let handle = self.open(name, kind).await?;
        let queue = RawQueue::new(self.local(handle), name, options.get_capacity());
        Ok(RawPipeEnd::new(queue, end, options))
    }

    /// Opens `name` as `kind`; returns its handle.
    pub(crate) async fn open(&self, name: &str, kind: Kind) -> Result<u32> {
        self.run(ops::open(name, kind)).await
    }

    /// Checks that the broker answers.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if it does not.
    pub async fn ping(&self) -> Result<()> {
        self.run(ops::ping()).await
    }

    /// Every object in the broker with its figures, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if the broker does not answer.
    pub async fn stats(&self) -> Result<Vec<ObjectStats>> {
        let mut all: Vec<ObjectStats> = Vec::new();
        loop {
            let after = all.last().map(|last| last.name.clone()).unwrap_or_default();
            let (objects, more) = self.run(ops::stats_page(after)).await?;
            all.extend(objects);
            if !more {
                return Ok(all);
            }
        }
    }

    /// The figures of the object `name` (as [`crate::Client::lookup`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such object.
    pub async fn lookup(&self, name: &str) -> Result<ObjectStats> {
        self.run(ops::lookup(name)).await
    }

    /// Removes the object `name` from the broker (as [`crate::Client::remove`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such object.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.run(ops::remove(name)).await
    }

    /// Waits until everything handed to the connection so far has been written to the
    /// broker's socket (see [Durability](self#durability)).
    ///
    /// # Errors
    ///
    /// The connection's error if it died first: what was not written is lost with it.
    pub async fn flush(&self) -> Result<()> {
        let conn = &self.inner.conn;
        loop {
            let idle = conn.idle.notified();
            ::tokio::pin!(idle);
            idle.as_mut().enable();
            if let Some(dead) = &conn.lock_state().dead {
                return Err(dead.error());
            }
            {
                let out = conn.lock_out();
                if !out.busy && out.buf.is_empty() {
                    return Ok(());
                }
            }
            idle.await;
        }
    }

    /// Sends `request` and reads its answer. Dropped before the answer, the request is
    /// settled as its purpose says.
    pub(crate) async fn run<T>(&self, request: Request<T>) -> Result<T> {
        let Request {
            op,
            handle,
            purpose,
            reader,
        } = request;
        let answer = match self.request(op, &[], purpose, handle) {
            Ok(call) => call.await.map(|(reply, _)| reply),
            Err(err) => Err(err),
        };
        reader(answer)
    }

    /// Registers and sends request `op` (with `items` as its tail); the returned future
    /// waits for its answer, and if dropped first, hands the answer to the reader to settle
    /// as `purpose` says.
    pub(crate) fn request(
        &self,
        op: Op,
        items: &[&[u8]],
        purpose: Purpose,
        handle: u32,
    ) -> Result<Call> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(32);
        self.encode(&ClientMsg::Request { id, op }, items, &mut frame)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.inner.conn.lock_state();
            if let Some(dead) = &state.dead {
                return Err(dead.error());
            }
            state.pending.insert(
                id,
                Slot {
                    tx: Some(tx),
                    purpose,
                    handle,
                    abandoned: false,
                },
            );
        }
        // A failed write means the connection is going: the reader fails the request.
        let _ = self.send(&frame);
        Ok(Call {
            client: self.clone(),
            id,
            purpose,
            handle,
            rx,
            done: false,
        })
    }

    /// Appends `msg` with `items` as its tail to `frame`.
    pub(crate) fn encode(
        &self,
        msg: &ClientMsg,
        items: &[&[u8]],
        frame: &mut Vec<u8>,
    ) -> Result<()> {
        let tail_len: usize = items.iter().map(|item| item.len()).sum();
        ipcq_proto::encode(msg, tail_len, self.inner.max_frame_len, frame).map_err(
            |err| match err {
                ipcq_proto::Error::FrameTooLarge { len, max } => Error::TooLarge { len, max },
                other => protocol(other),
            },
        )?;
        for item in items {
            frame.extend_from_slice(item);
        }
        Ok(())
    }

    /// Hands whole frames to the connection, in order: written now if the socket takes
    /// them, else queued for the writer task. Never waits.
    ///
    /// # Errors
    ///
    /// The connection's error when it is dead: nothing was sent.
    pub(crate) fn send(&self, frames: &[u8]) -> Result<()> {
        let conn = &self.inner.conn;
        if let Some(dead) = &conn.lock_state().dead {
            return Err(dead.error());
        }
        let mut out = conn.lock_out();
        if out.busy || !out.buf.is_empty() {
            out.buf.extend_from_slice(frames);
            return Ok(());
        }
        // Nobody else writes while this lock is held and the writer task is idle.
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        while written < frames.len() {
            match Pin::new(&mut &conn.stream).poll_write(&mut cx, &frames[written..]) {
                Poll::Ready(Ok(0)) | Poll::Pending => break,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) if err.kind() == std::io::ErrorKind::Interrupted => {}
                // The reader finds out why; the frames are lost with the connection.
                Poll::Ready(Err(err)) => return Err(gone(err)),
            }
        }
        if written < frames.len() {
            out.buf.extend_from_slice(&frames[written..]);
            out.busy = true;
            drop(out);
            conn.wake_writer.notify_one();
        }
        Ok(())
    }

    /// Sends a one-way message.
    pub(crate) fn send_msg(&self, msg: &ClientMsg) -> Result<()> {
        let mut frame = Vec::with_capacity(16);
        self.encode(msg, &[], &mut frame)?;
        self.send(&frame)
    }

    /// The shared state of `handle`, created on first use.
    fn local(&self, handle: u32) -> Arc<Local> {
        let mut locals = self.inner.lock_locals();
        if let Some(local) = locals.get(&handle).and_then(Weak::upgrade) {
            return local;
        }
        let local = Arc::new(Local::new(self.clone(), handle));
        locals.retain(|_, weak| weak.strong_count() > 0);
        locals.insert(handle, Arc::downgrade(&local));
        local
    }

    fn dead_error(&self) -> Error {
        match &self.inner.conn.lock_state().dead {
            Some(dead) => dead.error(),
            None => Error::BrokerGone("the connection closed".into()),
        }
    }

    /// The caller of request `id` no longer waits: the reader settles its answer, or, if
    /// it came already, this does.
    fn abandon(&self, call: &mut Call) {
        let waiting = {
            let mut state = self.inner.conn.lock_state();
            match state.pending.get_mut(&call.id) {
                Some(slot) => {
                    slot.abandoned = true;
                    true
                }
                None => false,
            }
        };
        if !waiting {
            // The reader hands answers over with the state locked: if the slot is gone, the
            // answer is here (or the connection died, taking it along).
            if let Ok((body, tail)) = call.rx.try_recv() {
                self.inner
                    .settle_abandoned(call.purpose, call.handle, body, tail);
            }
        } else if call.purpose != Purpose::Other {
            let (handle, id) = (call.handle, call.id);
            // If the request is still parked, the broker withdraws it and answers
            // `Cancelled`; if not, its answer is on the way: either way exactly one answer
            // comes, and the reader settles it.
            let _ = self.send_msg(&ClientMsg::Cancel { handle, id });
        }
    }
}

impl Inner {
    fn lock_locals(&self) -> MutexGuard<'_, HashMap<u32, Weak<Local>>> {
        self.locals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local(&self, handle: u32) -> Option<Arc<Local>> {
        self.lock_locals().get(&handle).and_then(Weak::upgrade)
    }

    fn client(self: &Arc<Self>) -> Client {
        Client {
            inner: Arc::clone(self),
        }
    }

    /// Hands the answer to request `id` to its caller, or settles it if nobody waits.
    fn dispatch(self: &Arc<Self>, id: u64, body: Reply, tail: Bytes) {
        if let Reply::Accepted { .. } = body {
            let room = self
                .conn
                .lock_state()
                .pending
                .get(&id)
                .and_then(|slot| (slot.purpose == Purpose::Room).then_some(slot.handle));
            if let Some(handle) = room {
                // Before the caller hears of them: the credits are the handle's whoever
                // waits.
                self.add_credits(handle, Grant::of(&body));
            }
        }
        let slot = {
            let mut state = self.conn.lock_state();
            let Some(mut slot) = state.pending.remove(&id) else {
                // Requests are never forgotten before their answer: this cannot happen. If
                // it did, items it carried return to their queue when the connection closes.
                return;
            };
            if !slot.abandoned {
                if let Some(tx) = slot.tx.take() {
                    // With the state locked, so that `abandon` finds either the slot or the
                    // answer.
                    let _ = tx.send((body, tail));
                    return;
                }
            }
            slot
        };
        self.settle_abandoned(slot.purpose, slot.handle, body, tail);
    }

    /// Credits granted for `handle` go to its handles, or back if there are none.
    fn add_credits(self: &Arc<Self>, handle: u32, grant: Grant) {
        if grant.credits == 0 {
            return;
        }
        match self.local(handle) {
            Some(local) => local.add_credits(grant),
            None => {
                if let Some(msg) = release_msg(handle, grant) {
                    let _ = self.client().send_msg(&msg);
                }
            }
        }
    }

    /// Settles an answer nobody waits for: items join their handle's buffer for its next
    /// `get` (behind any delivered before them, so a consumer still sees its queue's order),
    /// or go back to the queue if the handle is gone; a permit is released. (Credits were
    /// settled when the answer came.)
    fn settle_abandoned(self: &Arc<Self>, purpose: Purpose, handle: u32, body: Reply, tail: Bytes) {
        match body {
            Reply::Items { tag, lens, .. } => {
                let local = self.local(handle);
                let items = ipcq_proto::split_items(tail, &lens);
                match (local, items) {
                    (Some(local), Ok(items)) => local.receive(tag, items),
                    _ => {
                        let count = u32::try_from(lens.len()).unwrap_or(u32::MAX);
                        let _ = self.client().send_msg(&ClientMsg::Return { tag, count });
                    }
                }
            }
            Reply::Acquired { .. } if purpose == Purpose::Acquire => {
                let op = Op::ReleasePermit { handle };
                // Its answer is of no interest: dropping the call abandons it.
                drop(self.client().request(op, &[], Purpose::Other, handle));
            }
            _ => {}
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
        self.conn.lock_out().closing = true;
        self.conn.wake_writer.notify_one();
    }
}

impl Conn {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Single inserts and removals: a poisoned lock is still coherent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection is unusable: every waiting caller gets `dead`'s error.
    fn die(&self, dead: Dead) {
        let pending = {
            let mut state = self.lock_state();
            if state.dead.is_none() {
                state.dead = Some(dead);
            }
            std::mem::take(&mut state.pending)
        };
        // Dropping the senders wakes every caller, which then reads `dead`.
        drop(pending);
        self.idle.notify_waiters();
    }
}

/// The answer to one request, as a future. Dropping it before it is ready withdraws the
/// request (see [Cancel safety](self#cancel-safety)).
pub(crate) struct Call {
    client: Client,
    id: u64,
    purpose: Purpose,
    handle: u32,
    rx: oneshot::Receiver<(Reply, Bytes)>,
    done: bool,
}

impl Future for Call {
    type Output = Result<(Reply, Bytes)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(answer) => {
                this.done = true;
                Poll::Ready(match answer {
                    Ok((Reply::Error(err), _)) => Err(Error::from_reply(err)),
                    Ok(answer) => Ok(answer),
                    Err(_) => Err(this.client.dead_error()),
                })
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            let client = self.client.clone();
            client.abandon(self);
        }
    }
}

/// Reads the broker's messages and hands them out, until the connection ends.
async fn read_loop(conn: Arc<Conn>, inner: Weak<Inner>, mut buf: BytesMut, max: usize) {
    let dead = loop {
        let frame = match read_frame(&mut &conn.stream, &mut buf, max).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Dead::Gone("the broker closed the connection".into()),
            Err(err) => break err,
        };
        let (msg, tail) = match ipcq_proto::decode::<BrokerMsg>(frame) {
            Ok(decoded) => decoded,
            Err(err) => break Dead::Protocol(err.to_string()),
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match msg {
            BrokerMsg::Reply { id, body } => inner.dispatch(id, body, tail),
            BrokerMsg::Fatal(err) => break Dead::Refused(err),
            BrokerMsg::Revoke { handle } => {
                if let Some(local) = inner.local(handle) {
                    local.release_credits();
                }
            }
        }
    };
    conn.die(dead);
}

/// Writes what callers could not write at once, in order, until the client is gone; then
/// shuts the write side down, which tells the broker this client is done.
async fn write_loop(conn: Arc<Conn>) {
    loop {
        let chunk = {
            let mut out = conn.lock_out();
            if out.buf.is_empty() {
                out.busy = false;
                conn.idle.notify_waiters();
                if out.closing {
                    break;
                }
                None
            } else {
                let rest = if out.buf.len() > WRITE_CHUNK {
                    out.buf.split_off(WRITE_CHUNK)
                } else {
                    Vec::new()
                };
                Some(std::mem::replace(&mut out.buf, rest))
            }
        };
        match chunk {
            Some(chunk) => {
                if let Err(err) = (&conn.stream).write_all(&chunk).await {
                    conn.die(Dead::Gone(format!("connection lost: {err}")));
                    return;
                }
            }
            None => conn.wake_writer.notified().await,
        }
    }
    let _ = (&conn.stream).shutdown().await;
}

/// Reads the next frame. `Ok(None)` is a clean close between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, Dead> {
    loop {
        match ipcq_proto::decode_frame(buf, max) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(err) => return Err(Dead::Protocol(err.to_string())),
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match reader.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(Dead::Gone(
                    "the broker closed the connection mid-frame".into(),
                ))
            }
            Ok(_) => {}
            Err(err) => return Err(Dead::Gone(format!("connection lost: {err}"))),
        }
    }
}

/// What a wait of `wait` has left at `now`, for a wait that started at `start`.
pub(crate) fn remaining(wait: Wait, start: Instant) -> Wait {
    match wait {
        Wait::Micros(micros) => {
            let left = Duration::from_micros(micros).saturating_sub(start.elapsed());
            Wait::timeout(left)
        }
        other => other,
    }
}

fn gone(err: std::io::Error) -> Error {
    Error::BrokerGone(format!("connection lost: {err}"))
}

fn protocol(err: ipcq_proto::Error) -> Error {
    Error::Protocol(err.to_string())
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}
