//! The blocking client: one connection, shared by every handle and thread.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use bytes::{Bytes, BytesMut};
use std::time::{Duration, Instant};

use interprocess::ConnectWaitMode;

use interprocess::local_socket::{
    prelude::*, ConnectOptions as ConnectOptions_, GenericFilePath, GenericNamespaced, Stream,
};
use ipcq_proto::{AddrKind, BrokerMsg, ClientMsg, ErrorReply, Kind, ObjectStats, Op, Reply};
use serde::{de::DeserializeOwned, Serialize};

use crate::common::{
    connect_error, hello_frame, release_msg, their_hello, Dead, Grant, REPLY_SLACK,
};
use crate::connect::{self, ConnectOptions};
pub(crate) use crate::ops::unexpected;
use crate::ops::{self, Request};
use crate::pipe::{End, PipeEnd, PipeOptions, RawPipeEnd};
use crate::queue::{Local, Queue, QueueOptions, RawQueue};
use crate::{Error, Result};

/// A connection to a broker.
///
/// One `Client` is one connection and one owner: what it holds (items in flight, later
/// locks and pipe ends) is released by the broker when the connection closes, which is
/// when the last clone of the client and of its handles is dropped.
///
/// `Client` is `Send + Sync`, and cloning it is shallow (an atomic reference count
/// increment). Many threads may use one client at once: each request carries an id and
/// answers may come back in any order, so a thread blocked in `get` never stalls another
/// thread's `put`. The thread waiting for an answer reads the socket itself when no other
/// thread is reading, so a lone caller pays no thread hop.
///
/// # Examples
///
/// ```no_run
/// let client = ipcq_client::Client::connect_default()?;
/// let jobs = client.queue::<String>("jobs", 100)?;
/// jobs.put(&"hello".to_string())?;
/// assert_eq!(jobs.get()?, "hello");
/// # Ok::<(), ipcq_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    stream: Stream,
    /// The broker's frame limit, from its handshake.
    max_frame_len: usize,
    next_id: AtomicU64,
    /// Serializes whole frames onto the socket.
    write_lock: Mutex<()>,
    /// Writes give up after [`WRITE_SLICE`] when the socket is full (not on Windows), so
    /// that the writer can read meanwhile.
    sliced_writes: AtomicBool,
    /// Held only by the thread currently reading.
    read_buf: Mutex<BytesMut>,
    state: Mutex<State>,
    /// Per-handle state (credits, prefetched items), shared by every handle on the same
    /// queue; weak, so that dropping the last handle gives its items and credits back.
    locals: Mutex<HashMap<u32, Weak<Local>>>,
}

#[derive(Default)]
struct State {
    /// Some thread is reading the socket and will hand out what it reads.
    reading: bool,
    pending: HashMap<u64, Slot>,
    /// Set once the connection is unusable; every call fails with it from then on.
    dead: Option<Dead>,
    /// Threads asleep on a condition variable. With none (one thread using the client),
    /// waking is skipped: a notification costs a system call even when nobody waits.
    sleepers: usize,
}

struct Slot {
    reply: Option<(Reply, Bytes)>,
    waker: Arc<Condvar>,
    /// For a get: the handle whose buffer receives the items, in the order they arrive,
    /// whoever reads them. For a detached request: the handle it serves.
    fill: Option<Weak<Local>>,
    /// A request nobody waits for, and the handle it is for: the reader settles it
    /// completely.
    detached: Option<(Detached, u32)>,
}

/// What a detached request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detached {
    /// Items fetched ahead of `get`.
    Prefetch,
    /// Credits asked for ahead of `put`.
    Reserve,
    /// A get whose thread went on with items another answer brought: its own items join
    /// the buffer when they come.
    Fetch,
}

/// What the reader must do once it no longer holds the state lock.
enum Followup {
    /// Give the credits of this handle back.
    Revoke(u32),
    /// Deliveries for a handle that no longer exists: back to the queue.
    Return { tag: u64, count: u32 },
    /// Credits granted to a handle that no longer exists: back to the broker.
    Release(ClientMsg),
    /// A handle to let go of only after unlocking.
    Keep(Arc<Local>),
}

impl Client {
    /// Connects to the broker at `addr`: a socket path on Unix (a bare word is a
    /// namespaced name), a pipe name on Windows, with the default [`ConnectOptions`]: at
    /// most 5 s to connect and greet, and only a broker of this user or root is trusted.
    ///
    /// # Errors
    ///
    /// [`Error::NoBroker`] when nothing listens there, [`Error::NoAnswer`] when something
    /// listens but does not complete the handshake in time, [`Error::Untrusted`] when
    /// another user serves the address, [`Error::Protocol`] when what answers is not an
    /// ipcq broker of this protocol version, [`Error::LimitReached`] when the broker has
    /// its maximum of connections.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let client = ipcq_client::Client::connect("/tmp/ipcq-example.sock")?;
    /// client.ping()?;
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn connect(addr: &str) -> Result<Client> {
        Self::connect_with(addr, &ConnectOptions::default())
    }

    /// Connects to the broker at `addr` with `options` (time limit, trusted users).
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client> {
        let start = Instant::now();
        let timeout = options.timeout.max(Duration::from_millis(1));
        let left = || {
            timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(1))
        };
        connect::prepare(addr)?;
        let connect_options = match ipcq_proto::classify_addr(addr) {
            AddrKind::Path(path) => {
                ConnectOptions_::new().name(path.to_fs_name::<GenericFilePath>()?.into_owned())
            }
            AddrKind::Namespaced(name) => {
                ConnectOptions_::new().name(name.to_ns_name::<GenericNamespaced>()?.into_owned())
            }
        };
        let stream = connect_options
            .wait_mode(ConnectWaitMode::Timeout(timeout))
            .connect_sync()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    connect::no_answer(addr, timeout, "connecting")
                }
                _ => connect_error(addr, err),
            })?;
        connect::verify_server(&stream, addr, options)?;
        // Until the first answer, reads and writes stop at the time limit.
        set_timeouts(&stream, Some(left()))?;
        // If the write fails, the broker has closed the connection: its reason is read below.
        let _ = (&stream).write_all(&hello_frame()?);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let frame =
            read_frame(&stream, &mut buf, ipcq_proto::MAX_HANDSHAKE_LEN).map_err(|err| {
                if start.elapsed() >= timeout {
                    connect::no_answer(addr, timeout, "waiting for the broker's handshake")
                } else {
                    err
                }
            })?;
        let max_frame_len = their_hello(frame)?;
        set_timeouts(&stream, Some(left()))?;

        let client = Client {
            inner: Arc::new(Inner {
                addr: addr.to_owned(),
                stream,
                max_frame_len,
                next_id: AtomicU64::new(1),
                write_lock: Mutex::new(()),
                sliced_writes: AtomicBool::new(false),
                read_buf: Mutex::new(buf),
                state: Mutex::new(State::default()),
                locals: Mutex::new(HashMap::new()),
            }),
        };
        // The broker answers a refused handshake (version, connection limit) with an error
        // frame: a first round trip turns it into this function's error.
        client.ping().map_err(|err| {
            if start.elapsed() >= timeout {
                connect::no_answer(addr, timeout, "waiting for the first answer")
            } else {
                err
            }
        })?;
        // From here on the broker keeps the time of every request; writes are cut into
        // slices, between which a writer reads what has come (see `Inner::write`).
        set_timeouts(&client.inner.stream, None)?;
        let sliced = client
            .inner
            .stream
            .set_send_timeout(Some(WRITE_SLICE))
            .is_ok();
        client.inner.sliced_writes.store(sliced, Ordering::Relaxed);
        Ok(client)
    }

    /// Connects to the broker at `IPCQ_ADDR`, else at the platform default
    /// (`$XDG_RUNTIME_DIR/ipcq.sock`, else `/tmp/ipcq-<uid>/ipcq.sock`; the pipe `ipcq` on
    /// Windows), the address where `ipcq-broker` listens by default.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn connect_default() -> Result<Client> {
        Self::connect(&ipcq_proto::default_addr())
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

    /// Opens the queue `name` for items of type `T`, creating it with `capacity` (0 for
    /// unbounded) if it does not exist. Items are encoded with postcard.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` exists with another capacity or as another kind;
    /// [`Error::Invalid`] for a bad name (empty, over 255 bytes, control characters).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = ipcq_client::Client::connect_default()?;
    /// let results = client.queue::<(u32, f64)>("results", 0)?;
    /// assert_eq!(results.capacity(), None); // unbounded
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Queue<T>> {
        self.raw_queue(name, capacity).map(Queue::from_raw)
    }

    /// Opens the queue `name` for items of type `T`, creating it with `options` if it does
    /// not exist: its capacity, and whether it is removed when the last client that opened
    /// it disconnects.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when `name` exists with other options or as another kind;
    /// otherwise as [`Client::queue`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use ipcq_client::{Client, QueueOptions};
    ///
    /// let client = Client::connect_default()?;
    /// // Gone, with anything left in it, once this client and the others using it exit.
    /// let jobs = client.queue_with::<Option<u32>>("jobs", QueueOptions::new().capacity(100).auto_delete(true))?;
    /// jobs.put(&Some(7))?;
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn queue_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Queue<T>> {
        self.raw_queue_with(name, options).map(Queue::from_raw)
    }

    /// Opens the queue `name` for raw bytes, carried untouched (this is how the `ipcq`
    /// command line sees queues).
    ///
    /// # Errors
    ///
    /// As [`Client::queue`].
    pub fn raw_queue(&self, name: &str, capacity: usize) -> Result<RawQueue> {
        self.raw_queue_with(name, QueueOptions::new().capacity(capacity))
    }

    /// Opens the queue `name` for raw bytes, creating it with `options` if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// As [`Client::queue_with`].
    pub fn raw_queue_with(&self, name: &str, options: QueueOptions) -> Result<RawQueue> {
        let handle = self.open(name, options.kind())?;
        Ok(RawQueue::new(
            self.local(handle),
            name,
            options.get_capacity(),
        ))
    }

    /// Opens end `end` of the duplex pipe `name`, creating the pipe (with
    /// [`PipeOptions::default`]) if it does not exist, and holds that end for this client.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] when another client holds that end; [`Error::Closed`] when the end
    /// was closed (pipes are not reopened); [`Error::Conflict`] when `name` exists as
    /// something else; [`Error::Invalid`] for a bad name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use ipcq_client::{Client, End};
    ///
    /// let client = Client::connect_default()?;
    /// let end = client.pipe::<u32>("numbers", End::One)?;
    /// end.send(&42)?;
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn pipe<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
    ) -> Result<PipeEnd<T>> {
        self.pipe_with(name, end, PipeOptions::default())
    }

    /// Opens end `end` of the pipe `name` created with `options` (duplex or simplex,
    /// buffer per direction). Typed as [`Client::pipe`].
    ///
    /// # Errors
    ///
    /// As [`Client::pipe`]; [`Error::Conflict`] when the pipe exists with other options.
    pub fn pipe_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        end: End,
        options: PipeOptions,
    ) -> Result<PipeEnd<T>> {
        self.raw_pipe(name, end, options).map(PipeEnd::from_raw)
    }

    /// Opens end `end` of the pipe `name` for raw bytes.
    ///
    /// # Errors
    ///
    /// As [`Client::pipe_with`].
    pub fn raw_pipe(&self, name: &str, end: End, options: PipeOptions) -> Result<RawPipeEnd> {
        let kind = Kind::PipeEnd {
            duplex: options.is_duplex(),
            capacity: options.get_capacity() as u64,
            end: end.index(),
        };
        let handle = self.open(name, kind)?;
        let queue = RawQueue::new(self.local(handle), name, options.get_capacity());
        Ok(RawPipeEnd::new(queue, end, options))
    }

    /// Opens `name` as `kind`; returns its handle.
    pub(crate) fn open(&self, name: &str, kind: Kind) -> Result<u32> {
        self.run(ops::open(name, kind))
    }

    /// Checks that the broker answers.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if it does not.
    pub fn ping(&self) -> Result<()> {
        self.run(ops::ping())
    }

    /// Every object in the broker with its figures, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if the broker does not answer.
    pub fn stats(&self) -> Result<Vec<ObjectStats>> {
        // Page by page, so that any number of objects can be listed.
        ops::stats(|page| self.run(page))
    }

    /// The figures of the object `name` alone, as [`Client::stats`] lists them. Creates
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such object.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = ipcq_client::Client::connect_default()?;
    /// match client.lookup("jobs") {
    ///     Ok(figures) => println!("{figures:?}"),
    ///     Err(ipcq_client::Error::NotFound(_)) => println!("no such object"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    pub fn lookup(&self, name: &str) -> Result<ObjectStats> {
        self.run(ops::lookup(name))
    }

    /// Removes the object `name` from the broker: its items are dropped, its waiters get
    /// [`Error::Closed`], and the name is free for a new object.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such object.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.run(ops::remove(name))
    }

    /// Sends `request` and reads its answer.
    pub(crate) fn run<T>(&self, request: Request<T>) -> Result<T> {
        let Request { op, reader, .. } = request;
        reader(self.call(op, &[]).map(|(reply, _)| reply))
    }

    /// Sends a request whose tail is `items` and waits for its answer.
    pub(crate) fn call(&self, op: Op, items: &[&[u8]]) -> Result<(Reply, Bytes)> {
        let id = self.next_id();
        let mut frame = Vec::with_capacity(32 + items.iter().map(|i| i.len()).sum::<usize>());
        self.encode(&ClientMsg::Request { id, op }, items, &mut frame)?;
        self.call_encoded(id, &frame)
    }

    /// Encodes a message and its tail into `frame`.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when they do not fit in one frame; nothing is sent.
    pub(crate) fn encode(
        &self,
        msg: &ClientMsg,
        items: &[&[u8]],
        frame: &mut Vec<u8>,
    ) -> Result<()> {
        let tail_len: usize = items.iter().map(|item| item.len()).sum();
        let max = self.inner.max_frame_len;
        let start = frame.len();
        ipcq_proto::encode(msg, tail_len, max, frame).map_err(|err| match err {
            ipcq_proto::Error::FrameTooLarge { len, max } => Error::TooLarge { len, max },
            other => protocol(other),
        })?;
        debug_assert!(frame.len() > start);
        for item in items {
            frame.extend_from_slice(item);
        }
        Ok(())
    }

    /// Sends an encoded request frame for `id` and waits for its answer. The slot is
    /// registered before the frame leaves, so the answer always finds it.
    pub(crate) fn call_encoded(&self, id: u64, frame: &[u8]) -> Result<(Reply, Bytes)> {
        let waker = Arc::new(Condvar::new());
        self.register(id, Arc::clone(&waker), None, None)?;
        // A failed write means the broker closed the connection; what it sent before, such
        // as the reason it refused this client, is still there to read, so the wait below
        // reports that reason (or the end of the connection) rather than a bare write error.
        let _ = self.send(frame);
        let (reply, tail) = self.inner.wait_until(
            &waker,
            |state| {
                let reply = state
                    .pending
                    .get_mut(&id)
                    .and_then(|slot| slot.reply.take())?;
                state.pending.remove(&id);
                Some(reply)
            },
            || {
                self.inner.lock_state().pending.remove(&id);
            },
        )?;
        match reply {
            Reply::Error(err) => Err(Error::from_reply(err)),
            reply => Ok((reply, tail)),
        }
    }

    /// Sends a get for `local` and waits until its answer comes or `local`'s buffer has
    /// items, whichever is first: another thread's answer may have brought items while this
    /// request was on its way, and waiting on for a new item would leave those idle. A
    /// request left behind that way stays outstanding; its items, when they come, join the
    /// buffer like a prefetch's. Returns `Ok(None)` when the buffer had items first.
    pub(crate) fn fetch_into(
        &self,
        id: u64,
        frame: &[u8],
        local: &Arc<Local>,
    ) -> Result<Option<Reply>> {
        let waker = local.waker();
        self.register(id, Arc::clone(&waker), Some(local), None)?;
        let _ = self.send(frame);
        let reply = self.inner.wait_until(
            &waker,
            |state| {
                if let Some((reply, _)) = state
                    .pending
                    .get_mut(&id)
                    .and_then(|slot| slot.reply.take())
                {
                    state.pending.remove(&id);
                    return Some(Some(reply));
                }
                if local.has_buffered() {
                    if let Some(slot) = state.pending.get_mut(&id) {
                        slot.detached = Some((Detached::Fetch, local.handle()));
                    }
                    return Some(None);
                }
                None
            },
            || {
                self.inner.lock_state().pending.remove(&id);
            },
        )?;
        match reply {
            Some(Reply::Error(err)) => Err(Error::from_reply(err)),
            other => Ok(other),
        }
    }

    /// Registers the slot for request `id` before it is sent.
    pub(crate) fn register(
        &self,
        id: u64,
        waker: Arc<Condvar>,
        fill: Option<&Arc<Local>>,
        detached: Option<(Detached, u32)>,
    ) -> Result<()> {
        let mut state = self.inner.lock_state();
        if let Some(dead) = &state.dead {
            return Err(dead.error());
        }
        state.pending.insert(
            id,
            Slot {
                reply: None,
                waker,
                fill: fill.map(Arc::downgrade),
                detached,
            },
        );
        Ok(())
    }

    /// Waits until the request `id` (a detached prefetch) has been answered.
    pub(crate) fn wait_answered(&self, id: u64, waker: &Condvar) -> Result<()> {
        self.inner.wait_until(
            waker,
            |state| (!state.pending.contains_key(&id)).then_some(()),
            || {},
        )
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes one or more whole frames. A failure is not final by itself: the reader finds
    /// out why the connection ended.
    pub(crate) fn send(&self, frames: &[u8]) -> Result<()> {
        self.inner.write(frames).map_err(gone)
    }

    /// The shared state of `handle`, created on first use.
    fn local(&self, handle: u32) -> Arc<Local> {
        let mut locals = self.inner.locals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(local) = locals.get(&handle).and_then(Weak::upgrade) {
            return local;
        }
        let local = Arc::new(Local::new(self.clone(), handle));
        locals.retain(|_, weak| weak.strong_count() > 0);
        locals.insert(handle, Arc::downgrade(&local));
        local
    }

    /// Writes a message that has no reply (a put on a credit).
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] (or the reason the broker gave) when the connection is
    /// closed: the message was not delivered.
    pub(crate) fn send_one_way(&self, frame: &[u8]) -> Result<()> {
        if let Some(dead) = &self.inner.lock_state().dead {
            return Err(dead.error());
        }
        self.send(frame)
    }
}

impl Inner {
    /// Waits until `done` finds what it waits for, reading the socket when no other thread
    /// is. If the connection dies first, `give_up` runs and the connection's error is
    /// returned.
    fn wait_until<T>(
        &self,
        waker: &Condvar,
        mut done: impl FnMut(&mut State) -> Option<T>,
        give_up: impl FnOnce(),
    ) -> Result<T> {
        let mut state = self.lock_state();
        loop {
            if let Some(value) = done(&mut state) {
                // Someone else must take over the socket for the others still waiting.
                if !state.reading {
                    wake_one(&state);
                }
                return Ok(value);
            }
            if let Some(err) = state.dead.as_ref().map(Dead::error) {
                drop(state);
                give_up();
                return Err(err);
            }
            if state.reading {
                state.sleepers += 1;
                state = waker.wait(state).unwrap_or_else(|p| p.into_inner());
                state.sleepers -= 1;
                continue;
            }
            state.reading = true;
            drop(state);
            let read = self.read_some();
            state = self.lock_state();
            state.reading = false;
            match read {
                Ok(messages) => {
                    let mut followups = Vec::new();
                    for (msg, tail) in messages {
                        dispatch(&mut state, msg, tail, &mut followups);
                    }
                    if !followups.is_empty() {
                        // These take writes: not while holding the state.
                        drop(state);
                        self.follow_up(followups);
                        state = self.lock_state();
                    }
                }
                Err(dead) => {
                    state.dead = Some(dead);
                    wake_all(&state);
                }
            }
        }
    }

    fn follow_up(&self, followups: Vec<Followup>) {
        let mut revoked = Vec::new();
        let mut frame = Vec::new();
        let mut kept: Vec<Arc<Local>> = Vec::new();
        for followup in followups {
            // Each message is a few bytes: it always fits in a frame.
            match followup {
                Followup::Revoke(handle) => revoked.push(handle),
                Followup::Return { tag, count } => {
                    let msg = ClientMsg::Return { tag, count };
                    let _ = ipcq_proto::encode(&msg, 0, self.max_frame_len, &mut frame);
                }
                Followup::Release(msg) => {
                    let _ = ipcq_proto::encode(&msg, 0, self.max_frame_len, &mut frame);
                }
                Followup::Keep(local) => kept.push(local),
            }
        }
        if !frame.is_empty() {
            let _ = self.write(&frame);
        }
        self.give_back_credits(&revoked);
        drop(kept);
    }

    /// Answers `Revoke`: unused credits go back to the broker.
    fn give_back_credits(&self, handles: &[u32]) {
        let locals: Vec<Arc<Local>> = {
            let locals = self.locals.lock().unwrap_or_else(|p| p.into_inner());
            handles
                .iter()
                .filter_map(|h| locals.get(h).and_then(Weak::upgrade))
                .collect()
        };
        for local in locals {
            local.release_credits();
        }
    }

    /// Writes whole frames, in one piece with respect to other threads' frames.
    ///
    /// The broker stops reading a client that leaves too many answers unread, until it
    /// reads them. A client whose write waits for room while none of its threads reads
    /// would then wait forever. So a write that finds the socket full for
    /// [`WRITE_SLICE`] reads what has arrived, when no other thread is reading, and tries
    /// again.
    fn write(&self, frames: &[u8]) -> std::io::Result<()> {
        let mut followups = Vec::new();
        let written = {
            let _write = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut written = 0;
            loop {
                if written == frames.len() {
                    break Ok(());
                }
                match (&self.stream).write(&frames[written..]) {
                    Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => written += n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) if is_timeout(&err) && self.sliced_writes.load(Ordering::Relaxed) => {
                        followups.extend(self.read_while_writing());
                    }
                    Err(err) => break Err(err),
                }
            }
        };
        // What those answers call for takes writes: not while holding the write lock.
        if !followups.is_empty() {
            self.follow_up(followups);
        }
        written
    }

    /// Reads and hands out what has arrived, if no other thread is reading (that one will);
    /// returns what the answers call for.
    fn read_while_writing(&self) -> Vec<Followup> {
        let mut followups = Vec::new();
        {
            let mut state = self.lock_state();
            if state.reading || state.dead.is_some() {
                return followups;
            }
            state.reading = true;
        }
        let (messages, end) = self.read_available();
        let mut state = self.lock_state();
        state.reading = false;
        // What came before the end first: it may say why the connection ends.
        for (msg, tail) in messages {
            dispatch(&mut state, msg, tail, &mut followups);
        }
        if let Some(dead) = end {
            if state.dead.is_none() {
                state.dead = Some(dead);
            }
            wake_all(&state);
        }
        // Threads still waiting for answers: one of them takes over the reading.
        wake_one(&state);
        followups
    }

    /// Reads whatever whole messages the socket holds now, without waiting for more; and
    /// how the connection ended, if it did.
    fn read_available(&self) -> (Vec<(BrokerMsg, Bytes)>, Option<Dead>) {
        let mut buf = self.read_buf.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.max_frame_len + REPLY_SLACK;
        // Nobody else reads while `reading` is set: the socket's time limit is ours.
        let _ = self.stream.set_recv_timeout(Some(Duration::from_millis(1)));
        let mut chunk = [0u8; 16 * 1024];
        let mut end = loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => break Some(Dead::Gone("the broker closed the connection".into())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => break None,
                Err(err) => break Some(Dead::Gone(format!("connection lost: {err}"))),
            }
        };
        let _ = self.stream.set_recv_timeout(None);
        let mut messages = Vec::new();
        loop {
            match ipcq_proto::decode_frame(&mut buf, max) {
                Ok(Some(frame)) => match ipcq_proto::decode::<BrokerMsg>(frame) {
                    Ok(message) => messages.push(message),
                    Err(err) => {
                        end = Some(Dead::Protocol(err.to_string()));
                        break;
                    }
                },
                Ok(None) => break,
                Err(err) => {
                    end = Some(Dead::Protocol(err.to_string()));
                    break;
                }
            }
        }
        (messages, end)
    }

    /// Reads until at least one whole message has arrived; returns all that have.
    fn read_some(&self) -> Result<Vec<(BrokerMsg, Bytes)>, Dead> {
        let mut buf = self.read_buf.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.max_frame_len + REPLY_SLACK;
        let mut messages = Vec::new();
        loop {
            loop {
                match ipcq_proto::decode_frame(&mut buf, max) {
                    Ok(Some(frame)) => match ipcq_proto::decode::<BrokerMsg>(frame) {
                        Ok(message) => messages.push(message),
                        Err(err) => return Err(Dead::Protocol(err.to_string())),
                    },
                    Ok(None) => break,
                    Err(err) => return Err(Dead::Protocol(err.to_string())),
                }
            }
            if !messages.is_empty() {
                return Ok(messages);
            }
            fill(&self.stream, &mut buf).map_err(|err| match err {
                Error::BrokerGone(msg) => Dead::Gone(msg),
                other => Dead::Gone(other.to_string()),
            })?;
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // State changes are single inserts and removals; a poisoned lock is still coherent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands a message to the thread waiting for it. Items of a get go to their handle's
/// buffer here, in the order they arrived.
///
/// Handles upgraded here are pushed to `followups` rather than dropped: dropping the last
/// one runs `Local::drop`, which must not run with the state locked.
fn dispatch(state: &mut State, msg: BrokerMsg, tail: Bytes, followups: &mut Vec<Followup>) {
    match msg {
        BrokerMsg::Reply { id, body } => {
            let Some(slot) = state.pending.get_mut(&id) else {
                // An answer nobody waits for cannot happen (requests are never abandoned);
                // if it did, an item it carried stays unacknowledged and returns to its
                // queue when this connection closes.
                return;
            };
            let local = slot.fill.as_ref().and_then(Weak::upgrade);
            let mut body = body;
            let mut tail = tail;
            if let (true, Reply::Items { tag, lens, ready }) = (slot.fill.is_some(), &body) {
                match ipcq_proto::split_items(std::mem::take(&mut tail), lens) {
                    Ok(items) => match &local {
                        Some(local) => local.receive(*tag, items, *ready),
                        // The handle is gone: the items go back to the queue.
                        None => followups.push(Followup::Return {
                            tag: *tag,
                            count: u32::try_from(items.len()).unwrap_or(u32::MAX),
                        }),
                    },
                    Err(err) => {
                        body = Reply::Error(ErrorReply::new(
                            ipcq_proto::ErrorCode::Protocol,
                            err.to_string(),
                        ));
                    }
                }
            }
            let waker = if let Some((detached, handle)) = slot.detached {
                let slot = state.pending.remove(&id).expect("the slot was just found");
                let grant = Grant::of(&body);
                match (&local, detached) {
                    (Some(local), Detached::Reserve) => local.reserve_answered(grant),
                    (Some(local), Detached::Prefetch) => local.prefetch_answered(),
                    (_, Detached::Fetch) => {}
                    // The handle is gone: so are the credits.
                    (None, Detached::Reserve) => {
                        followups.extend(release_msg(handle, grant).map(Followup::Release));
                    }
                    (None, _) => {}
                }
                slot.waker
            } else {
                slot.reply = Some((body, tail));
                Arc::clone(&slot.waker)
            };
            if let Some(local) = local {
                followups.push(Followup::Keep(local));
            }
            if state.sleepers > 0 {
                waker.notify_all();
            }
        }
        BrokerMsg::Fatal(err) => {
            state.dead = Some(Dead::Refused(err));
            wake_all(state);
        }
        BrokerMsg::Revoke { handle } => followups.push(Followup::Revoke(handle)),
    }
}

/// Wakes the threads still waiting, so that one of them becomes the reader.
fn wake_one(state: &State) {
    if state.sleepers == 0 {
        return;
    }
    for slot in state.pending.values().filter(|slot| slot.reply.is_none()) {
        slot.waker.notify_all();
    }
}

/// Wakes every waiting thread (the connection died).
fn wake_all(state: &State) {
    if state.sleepers == 0 {
        return;
    }
    for slot in state.pending.values() {
        slot.waker.notify_all();
    }
}

/// How long a write waits for room in the socket before it reads what has come (see
/// `Inner::write`).
const WRITE_SLICE: Duration = Duration::from_millis(10);

/// Whether an I/O error is a socket time limit running out.
fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Time limits for the socket's reads and writes. Windows named pipes have none: there the
/// handshake is not timed (docs/broker.md).
fn set_timeouts(stream: &Stream, timeout: Option<Duration>) -> Result<()> {
    let set = stream
        .set_recv_timeout(timeout)
        .and_then(|()| stream.set_send_timeout(timeout));
    match set {
        Err(err) if err.kind() != std::io::ErrorKind::Unsupported => Err(Error::Io(err)),
        _ => Ok(()),
    }
}

/// Reads one frame during the handshake.
fn read_frame(stream: &Stream, buf: &mut BytesMut, max: usize) -> Result<Bytes> {
    loop {
        if let Some(frame) = ipcq_proto::decode_frame(buf, max).map_err(protocol)? {
            return Ok(frame);
        }
        fill(stream, buf)?;
    }
}

/// Reads what the socket has into `buf`.
fn fill(stream: &Stream, buf: &mut BytesMut) -> Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match (&*stream).read(&mut chunk) {
            Ok(0) => return Err(Error::BrokerGone("the broker closed the connection".into())),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(gone(err)),
        }
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
