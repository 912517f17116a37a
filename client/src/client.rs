//! The blocking client: one connection, shared by every handle and thread.

use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError, Weak};

use bytes::{Bytes, BytesMut};
use std::time::{Duration, Instant};

use interprocess::ConnectWaitMode;

use interprocess::local_socket::{
    prelude::*, ConnectOptions as ConnectOptions_, GenericFilePath, GenericNamespaced, Stream,
};
use ipcq_proto::{AddrKind, Kind, ObjectStats, Op, Reply};

use crate::common::{connect_error, hello_frame, their_hello, Dead};
use crate::connect::{self, ConnectOptions};
use crate::core::{Core, Mark, Wakeup};
use crate::ops::{self, Purpose, Request};
use crate::{Error, Result};

crate::surface::client_surface! {
    [] [],
    driver: Blocking,
    client: {
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
        /// thread is reading, so a lone caller pays no thread hop. (On Windows, whose named pipes
        /// have no time limits, a thread of the connection reads the pipe all along instead: see
        /// `Inner::read_always`.)
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
        ///
        /// A `nats://` address (feature `nats`) opens the same API on NATS JetStream:
        /// see [`ConnectOptions::nats`](crate::ConnectOptions) and the scale-out guide.
    },
    connect: {
        /// Connects to the broker at `addr`: a socket path on Unix (a bare word is a
        /// namespaced name), a pipe name on Windows, with the default [`ConnectOptions`]: at
        /// most 5 s to connect and greet, and only a broker of this user or root is trusted.
        /// With the `nats` feature, a `nats://host:port` address (`tls://` for TLS; several,
        /// comma-separated, for a cluster; credentials as `nats://user:password@host`)
        /// connects to NATS JetStream instead (see `docs/scale-out.md`).
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
    },
}

impl Client {
    /// The connection's socket (Unix; `None` for a NATS client). A process that forked
    /// while it had a client shares that socket with its parent: the child must neither use
    /// nor drop its copy of the client (dropping writes what waits to be written, and may
    /// read), but may close its copy of this descriptor, after which the parent's
    /// connection ends when the parent's does. Language bindings that reconnect after
    /// `fork` use it.
    #[cfg(unix)]
    pub fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.backend {
            Backend::Local(link) => Some(link.socket_fd()),
            #[cfg(feature = "nats")]
            Backend::Nats(_) => None,
        }
    }
}

/// A connection to a local broker, shared by every handle and thread (the `Client` of a
/// local address).
#[derive(Clone)]
pub(crate) struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    /// As connected: a ring's memory is fetched on a connection made the same way.
    options: ConnectOptions,
    /// Shared with the reading thread, where there is one (`read_always`).
    stream: Arc<Stream>,
    /// The broker's frame limit, from its handshake.
    max_frame_len: usize,
    /// The protocol state, and who reads.
    shared: Mutex<Shared>,
    /// Bytes read and not yet decoded; held by the thread reading (`Shared::reading`).
    read_buf: Mutex<BytesMut>,
    /// Held by the thread writing; counts the bytes written.
    writer: Mutex<Mark>,
    /// Writes give up after [`WRITE_SLICE`] when the socket is full (not on Windows), so
    /// that the writer can read meanwhile.
    sliced_writes: AtomicBool,
    /// A thread reads the socket all along (where writes cannot be sliced).
    reader: AtomicBool,
}

struct Shared {
    core: Core<Arc<Condvar>>,
    /// Some thread is reading the socket and will hand out what it reads.
    reading: bool,
    /// Threads asleep on a condition variable. With none (one thread using the client),
    /// waking is skipped: a notification costs a system call even when nobody waits.
    sleepers: usize,
}

impl Wakeup for Arc<Condvar> {
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

/// One handle's share of its object's state in the connection's core: the last one
/// dropped gives the object's fetched items and credits back. Threads waiting on the
/// object sleep on its condition variable.
pub(crate) struct Hold {
    pub(crate) client: Link,
    pub(crate) handle: u32,
    pub(crate) waker: Arc<Condvar>,
    /// The queue's ring in shared memory, if the broker shares one with this client.
    pub(crate) lane: Option<crate::shm::Lane>,
}

impl crate::delivery::Settle for Hold {
    fn settle(&self, tag: u64, how: crate::core::Settlement) -> Result<()> {
        let handle = self.handle;
        match self
            .client
            .with_core(|core| core.settle_delivery(handle, tag, how))?
        {
            Some(mark) => self.client.flush(mark),
            None => Ok(()),
        }
    }

    fn lease(&self, tag: u64, lease: Duration) -> Result<()> {
        self.flush_lease(tag, lease)
    }

    fn finish_checked(&self, tag: u64) -> Result<()> {
        self.client.run(crate::ops::finish(tag, 1))
    }

    fn finish_checked_async(&self, tag: u64) -> crate::delivery::BoxFuture {
        // The blocking client answers before the future is made.
        Box::pin(std::future::ready(self.finish_checked(tag)))
    }
}

impl Hold {
    fn flush_lease(&self, tag: u64, lease: Duration) -> Result<()> {
        let mark = self
            .client
            .with_core(|core| core.lease_delivery(tag, lease))?;
        self.client.flush(mark)
    }
}

impl Drop for Hold {
    /// Answers still on their way to the object's last handle would bring items to nobody:
    /// waits for them (none waits in the broker), so that everything goes back to the
    /// queue now, in order, rather than whenever this client next reads.
    fn drop(&mut self) {
        let closing = self.client.with_core(|core| core.close_handle(self.handle));
        // If the connection is gone, the broker gives everything back itself.
        let _ = self.client.flush_all();
        if closing {
            let waker = &self.waker;
            let _ = self
                .client
                .wait(waker, |core| core.poll_closed(self.handle, Some(waker)));
            let _ = self.client.flush_all();
        }
    }
}

impl Link {
    /// Connects to the local broker at `addr` (see `Client::connect`).
    pub(crate) fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Link> {
        let start = Instant::now();
        let timeout = options.timeout.max(Duration::from_millis(1));
        let left = || {
            timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(1))
        };
        let stream = dial(addr, options, timeout)?;
        // Until the first answer, reads and writes stop at the time limit.
        let timed = set_timeouts(&stream, Some(left()))?;
        let stream = Arc::new(stream);
        let (frame, buf) = greeting(&stream, timed, left()).map_err(|err| {
            if start.elapsed() >= timeout {
                connect::no_answer(addr, timeout, "waiting for the broker's handshake")
            } else {
                err
            }
        })?;
        let max_frame_len = their_hello(frame)?;
        set_timeouts(&stream, Some(left()))?;

        let client = Link {
            inner: Arc::new(Inner {
                addr: addr.to_owned(),
                options: options.clone(),
                stream,
                max_frame_len,
                shared: Mutex::new(Shared {
                    core: Core::new(max_frame_len),
                    reading: false,
                    sleepers: 0,
                }),
                read_buf: Mutex::new(buf),
                writer: Mutex::new(0),
                sliced_writes: AtomicBool::new(false),
                reader: AtomicBool::new(false),
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
        // slices, between which a writer reads what has come (see `Inner::flush`).
        set_timeouts(&client.inner.stream, None)?;
        let sliced = client
            .inner
            .stream
            .set_send_timeout(Some(WRITE_SLICE))
            .is_ok();
        client.inner.sliced_writes.store(sliced, Ordering::Relaxed);
        if !sliced {
            Inner::read_always(&client.inner)?;
        }
        Ok(client)
    }

    /// The address this client is connected to.
    pub(crate) fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The largest frame the broker accepts; an item must fit in one with a few bytes to
    /// spare.
    pub(crate) fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len
    }

    #[cfg(unix)]
    pub(crate) fn socket_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::{AsFd, AsRawFd};
        match &*self.inner.stream {
            Stream::UdSocket(stream) => stream.as_fd().as_raw_fd(),
        }
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
    pub(crate) fn ping(&self) -> Result<()> {
        self.run(ops::ping())
    }

    /// Every object in the broker with its figures, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if the broker does not answer.
    pub(crate) fn stats(&self) -> Result<Vec<ObjectStats>> {
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
    pub(crate) fn lookup(&self, name: &str) -> Result<ObjectStats> {
        self.run(ops::lookup(name))
    }

    /// Removes the object `name` from the broker: its items are dropped, its waiters get
    /// [`Error::Closed`], and the name is free for a new object.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such object.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.run(ops::remove(name))
    }

    /// Sends `request` and reads its answer.
    pub(crate) fn run<T>(&self, request: Request<T>) -> Result<T> {
        let Request {
            op,
            handle,
            purpose,
            reader,
        } = request;
        reader(self.call(op, &[], purpose, handle).map(|(reply, _)| reply))
    }

    /// Sends request `op` (with `items` as its tail) and waits for its answer.
    pub(crate) fn call(
        &self,
        op: Op,
        items: &[&[u8]],
        purpose: Purpose,
        handle: u32,
    ) -> Result<(Reply, Bytes)> {
        let waker = Arc::new(Condvar::new());
        let id = self.with_core(|core| core.request(op, items, purpose, handle, None))?;
        // A failed write means the broker closed the connection; what it sent before, such
        // as the reason it refused this client, is still there to read, so the wait below
        // reports that reason (or the end of the connection) rather than a bare write error.
        let _ = self.flush_all();
        self.wait(&waker, |core| core.poll(id, Some(&waker)))
    }

    /// Whether `self` and `other` are the same connection.
    pub(crate) fn same(&self, other: &Link) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Runs `f` on the connection's protocol state.
    pub(crate) fn with_core<T>(&self, f: impl FnOnce(&mut Core<Arc<Condvar>>) -> T) -> T {
        f(&mut self.inner.lock_shared().core)
    }

    /// A handle's share of object `handle`'s state.
    pub(crate) fn hold(&self, handle: u32) -> Arc<Hold> {
        self.hold_with(handle, None)
    }

    /// As [`Link::hold`] for a queue of `capacity` items: with the queue's ring, if the
    /// broker shares one (an unbounded queue has none: not asked).
    pub(crate) fn queue_hold(&self, handle: u32, capacity: usize) -> Arc<Hold> {
        let lane = if capacity > 0 {
            self.share(handle)
        } else {
            None
        };
        self.hold_with(handle, lane)
    }

    /// The ring of queue `handle`, if the broker shares one with this client (rings are
    /// Linux's). Anything that goes wrong on the way leaves the queue to the socket.
    fn share(&self, handle: u32) -> Option<crate::shm::Lane> {
        if !cfg!(target_os = "linux") || !self.inner.options.shared_memory {
            return None;
        }
        let (token, owner) = self.run(ops::share(handle)).ok()??;
        crate::shm::Lane::attach(token, owner, || self.side_connection())
    }

    /// A second connection to the broker, greeted and not yet used: a ring's memory is
    /// fetched on one.
    fn side_connection(&self) -> Result<Arc<Stream>> {
        let (addr, options) = (&self.inner.addr, &self.inner.options);
        let stream = Arc::new(dial(addr, options, options.timeout)?);
        let timed = set_timeouts(&stream, Some(options.timeout))?;
        let (hello, rest) = greeting(&stream, timed, options.timeout)?;
        their_hello(hello)?;
        if !rest.is_empty() {
            return Err(Error::Protocol("the broker spoke out of turn".into()));
        }
        Ok(stream)
    }

    fn hold_with(&self, handle: u32, lane: Option<crate::shm::Lane>) -> Arc<Hold> {
        self.with_core(|core| core.open_handle(handle));
        Arc::new(Hold {
            client: self.clone(),
            handle,
            waker: Arc::new(Condvar::new()),
            lane,
        })
    }

    /// The connection's socket.
    pub(crate) fn stream(&self) -> &Stream {
        &self.inner.stream
    }

    /// Writes what the core has queued, until at least `mark`.
    ///
    /// # Errors
    ///
    /// The connection's error when the bytes up to `mark` could not be written.
    pub(crate) fn flush(&self, mark: Mark) -> Result<()> {
        self.inner.flush(mark)
    }

    /// Writes everything the core has queued.
    pub(crate) fn flush_all(&self) -> Result<()> {
        let mark = self.with_core(|core| core.queued());
        self.flush(mark)
    }

    /// Waits until `poll` finds what it waits for, reading the socket when no other thread
    /// is, and sleeping on `waker` otherwise (`poll` registers it with the core).
    pub(crate) fn wait<T>(
        &self,
        waker: &Condvar,
        poll: impl FnMut(&mut Core<Arc<Condvar>>) -> Option<Result<T>>,
    ) -> Result<T> {
        self.inner.wait(waker, poll)
    }
}

impl Inner {
    /// Starts the thread that reads the socket for as long as the connection lives, for a
    /// socket whose writes cannot be cut into slices (a Windows named pipe has no time
    /// limits). Without it, a thread whose write finds the pipe full while no thread reads
    /// would wait for the broker, which waits for this client to read its answers.
    ///
    /// The thread holds the stream, not the connection: when the last handle goes,
    /// `Drop` asks for one last answer, whose arrival lets the thread end and the pipe
    /// close.
    fn read_always(inner: &Arc<Inner>) -> Result<()> {
        inner.lock_shared().reading = true;
        inner.reader.store(true, Ordering::Relaxed);
        let stream = Arc::clone(&inner.stream);
        let connection = Arc::downgrade(inner);
        let mut buf = std::mem::take(&mut *inner.lock_read_buf());
        std::thread::Builder::new()
            .name("ipcq-reader".into())
            .spawn(move || read_loop(&stream, &connection, &mut buf))
            .map(drop)
            .map_err(Error::Io)
    }

    fn wait<T>(
        &self,
        waker: &Condvar,
        mut poll: impl FnMut(&mut Core<Arc<Condvar>>) -> Option<Result<T>>,
    ) -> Result<T> {
        let mut shared = self.lock_shared();
        loop {
            if let Some(result) = poll(&mut shared.core) {
                // Someone else must take over the socket for the others still waiting.
                if !shared.reading && shared.sleepers > 0 {
                    shared.core.wake_waiting();
                    wake(&mut shared);
                }
                return result;
            }
            if shared.core.is_dead() {
                return Err(shared.core.failure().expect("dead"));
            }
            if shared.reading {
                shared.sleepers += 1;
                shared = waker.wait(shared).unwrap_or_else(|p| p.into_inner());
                shared.sleepers -= 1;
                continue;
            }
            shared.reading = true;
            drop(shared);
            let mut buf = self.lock_read_buf();
            let end = read_some(&self.stream, &mut buf);
            shared = self.lock_shared();
            shared.reading = false;
            handle_read(&mut shared, &mut buf, end);
            drop(buf);
            if shared.core.has_transmit() {
                // What the messages call for (returns, releases) takes writes: not while
                // holding the state.
                drop(shared);
                let _ = self.flush(0);
                shared = self.lock_shared();
            }
        }
    }

    /// Writes what the core has queued, in one piece with respect to other threads'
    /// writes, until none is left; succeeds when the bytes up to `mark` were written.
    ///
    /// The broker stops reading a client that leaves too many answers unread, until it
    /// reads them. A client whose write waits for room while none of its threads reads
    /// would then wait forever. So a write that finds the socket full for
    /// [`WRITE_SLICE`] reads what has arrived, when no other thread is reading, and tries
    /// again.
    fn flush(&self, mark: Mark) -> Result<()> {
        loop {
            let mut written = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let result = self.write_queued(&mut written, mark);
            drop(written);
            // The reading thread (Windows) does not wait for the writer: what it queued
            // while this thread held the write side is this thread's to write.
            if result.is_err()
                || !self.reader.load(Ordering::Relaxed)
                || !self.lock_shared().core.has_transmit()
            {
                return result;
            }
        }
    }

    /// Writes what the core has queued unless another thread is writing: for the reading
    /// thread, which must never wait for a writer (the writer may be waiting for room that
    /// only the reading makes). The writer writes what was queued meanwhile (`flush`).
    fn flush_if_free(&self) {
        let mut written = match self.writer.try_lock() {
            Ok(written) => written,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let _ = self.write_queued(&mut written, 0);
    }

    /// Writes what the core has queued, holding the write side (`written`); succeeds when
    /// the bytes up to `mark` were written.
    fn write_queued(&self, written: &mut Mark, mark: Mark) -> Result<()> {
        loop {
            let bytes = self.lock_shared().core.take_transmit();
            if bytes.is_empty() {
                break;
            }
            if let Err(err) = self.write_all(&bytes) {
                self.lock_shared().core.writes_failed();
                return Err(gone(err));
            }
            *written += bytes.len() as u64;
        }
        if *written >= mark {
            return Ok(());
        }
        // Dropped unwritten with the connection.
        Err(self
            .lock_shared()
            .core
            .failure()
            .unwrap_or_else(|| Error::BrokerGone("the connection closed".into())))
    }

    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut written = 0;
        while written < bytes.len() {
            match (&*self.stream).write(&bytes[written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) && self.sliced_writes.load(Ordering::Relaxed) => {
                    self.read_while_writing();
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Reads and hands out what has arrived, if no other thread is reading (that one will).
    /// What the answers call for is written by the writer, which holds the write side.
    fn read_while_writing(&self) {
        {
            let mut shared = self.lock_shared();
            if shared.reading || shared.core.is_dead() {
                return;
            }
            shared.reading = true;
        }
        let mut buf = self.lock_read_buf();
        let end = self.read_available(&mut buf);
        let mut shared = self.lock_shared();
        shared.reading = false;
        handle_read(&mut shared, &mut buf, end);
        // Threads still waiting for answers: one of them takes over the reading.
        if shared.sleepers > 0 {
            shared.core.wake_waiting();
            wake(&mut shared);
        }
    }

    /// Reads whatever the socket holds now into `buf`, without waiting for more; and how
    /// the connection ended, if it did.
    fn read_available(&self, buf: &mut BytesMut) -> Option<Dead> {
        // Nobody else reads while `reading` is set: the socket's time limit is ours.
        let _ = self.stream.set_recv_timeout(Some(Duration::from_millis(1)));
        let mut chunk = [0u8; 16 * 1024];
        let end = loop {
            match (&*self.stream).read(&mut chunk) {
                Ok(0) => break Some(Dead::Gone("the broker closed the connection".into())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => break None,
                Err(err) => break Some(Dead::Gone(format!("connection lost: {err}"))),
            }
        };
        let _ = self.stream.set_recv_timeout(None);
        end
    }

    fn lock_read_buf(&self) -> MutexGuard<'_, BytesMut> {
        self.read_buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_shared(&self) -> MutexGuard<'_, Shared> {
        // The core's changes complete under the lock or not at all (it does no I/O and
        // does not panic midway): a poisoned lock is still coherent.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reading thread's loop (see [`Inner::read_always`]): hands out what it reads until
/// the connection ends or its last handle is gone.
fn read_loop(stream: &Stream, connection: &Weak<Inner>, buf: &mut BytesMut) {
    let mut end = None;
    loop {
        // The connection is held only between reads, never while waiting for bytes.
        let Some(inner) = connection.upgrade() else {
            return;
        };
        let over = end.is_some();
        let mut shared = inner.lock_shared();
        handle_read(&mut shared, buf, end);
        let transmit = shared.core.has_transmit();
        drop(shared);
        if transmit {
            inner.flush_if_free();
        }
        drop(inner);
        if over {
            return;
        }
        end = read_some(stream, buf);
    }
}

/// Reads what the socket has into `buf`, waiting for at least one byte; how the connection
/// ended, if it did.
fn read_some(stream: &Stream, buf: &mut BytesMut) -> Option<Dead> {
    match fill(stream, buf) {
        Ok(()) => None,
        Err(Error::BrokerGone(msg)) => Some(Dead::Gone(msg)),
        Err(other) => Some(Dead::Gone(other.to_string())),
    }
}

/// Hands what was read to the core, and wakes whom it wakes.
fn handle_read(shared: &mut Shared, buf: &mut BytesMut, end: Option<Dead>) {
    // What came before the end first: it may say why the connection ends.
    shared.core.handle_bytes(buf);
    if let Some(dead) = end {
        shared.core.die(dead);
    }
    if shared.core.has_woken() {
        wake(shared);
    }
}

impl Drop for Inner {
    /// The last handle on the connection is gone: what still waits to be written
    /// (acknowledgements deferred to the next write) goes before the connection closes.
    /// A reading thread holds the socket until its read returns: a ping's answer ends it.
    fn drop(&mut self) {
        let reader = self.reader.load(Ordering::Relaxed);
        let mut shared = self.lock_shared();
        if reader {
            let ping = ops::ping();
            let _ = shared
                .core
                .request(ping.op, &[], ping.purpose, ping.handle, None);
        }
        let bytes = shared.core.take_transmit();
        drop(shared);
        if !bytes.is_empty() {
            let _ = self.write_all(&bytes);
        }
    }
}

/// Wakes the threads the core woke, if any sleeps.
fn wake(shared: &mut Shared) {
    let woken = shared.core.take_woken();
    if shared.sleepers == 0 {
        return;
    }
    for waker in woken {
        waker.notify_all();
    }
}

/// How long a write waits for room in the socket before it reads what has come (see
/// `Inner::flush`).
const WRITE_SLICE: Duration = Duration::from_millis(10);

/// Whether an I/O error is a socket time limit running out.
fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Time limits for the socket's reads and writes; false where there are none (Windows
/// named pipes).
fn set_timeouts(stream: &Stream, timeout: Option<Duration>) -> Result<bool> {
    let set = stream
        .set_recv_timeout(timeout)
        .and_then(|()| stream.set_send_timeout(timeout));
    match set {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::Unsupported => Ok(false),
        Err(err) => Err(Error::Io(err)),
    }
}

/// Sends this client's greeting and reads the broker's, within `timeout`: on this thread
/// when the socket's reads are `timed`; else (a named pipe) on a thread waited for that
/// long, which, if nothing ever answers, is left blocked until the other side closes.
/// Returns the broker's greeting and whatever followed it.
fn greeting(stream: &Arc<Stream>, timed: bool, timeout: Duration) -> Result<(Bytes, BytesMut)> {
    let exchange = |stream: &Stream| {
        // If the write fails, the broker has closed the connection: its reason is read next.
        let mut writer = stream;
        let _ = writer.write_all(&hello_frame()?);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let frame = read_frame(stream, &mut buf, ipcq_proto::MAX_HANDSHAKE_LEN)?;
        Ok((frame, buf))
    };
    if timed {
        return exchange(stream);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let stream = Arc::clone(stream);
    std::thread::Builder::new()
        .name("ipcq-handshake".into())
        .spawn(move || {
            let _ = tx.send(exchange(&stream));
        })
        .map_err(Error::Io)?;
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| Err(Error::BrokerGone("no handshake in time".into())))
}

/// Connects to the broker at `addr` and checks who serves it, within `timeout`.
fn dial(addr: &str, options: &ConnectOptions, timeout: Duration) -> Result<Stream> {
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
    Ok(stream)
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

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}
