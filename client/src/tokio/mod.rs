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

/// Awaits a future of the NATS backend (the blocking client runs it to its end instead).
#[cfg(feature = "nats")]
macro_rules! remote {
    ($operation:expr) => {
        $operation.await
    };
}

mod pipe;
mod queue;
mod sync;

pub use crate::delivery::Delivery;
pub use pipe::{PipeEnd, RawPipeEnd};
pub use queue::{Queue, RawQueue};
pub use sync::{Barrier, Event, Lock, LockGuard, Semaphore, SemaphoreGuard};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ::tokio::sync::Notify;
use ::tokio::task::AbortHandle;
use bytes::{Bytes, BytesMut};
use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::{GenericFilePath, GenericNamespaced};
use ipcq_proto::{AddrKind, Kind, ObjectStats, Op, Reply};

pub(crate) use crate::common::remaining;
use crate::common::{connect_error, hello_frame, their_hello, Dead};
use crate::connect::{self, ConnectOptions};
use crate::core::{Core, Wakeup};
pub(crate) use crate::ops::unexpected;
use crate::ops::{self, Purpose, Request};
use crate::{Error, Result};

/// Flush the write buffer in chunks of at most this much.
const WRITE_CHUNK: usize = 256 * 1024;

crate::surface::client_surface! {
    [async] [.await],
    driver: Tokio,
    client: {
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
    },
    connect: {
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
    },
}

impl Client {
    /// Waits until everything handed to the connection so far has been written to the
    /// broker's socket (see [Durability](self#durability)); on NATS, until the
    /// settlements of deliveries made so far (`ack`, `reject`, ...) are confirmed.
    ///
    /// # Errors
    ///
    /// The connection's error if it died first: what was not written is lost with it.
    pub async fn flush(&self) -> Result<()> {
        match &self.backend {
            Backend::Local(link) => link.flush().await,
            #[cfg(feature = "nats")]
            Backend::Nats(remote) => remote.flush().await,
        }
    }
}

/// A connection to a local broker, for tokio (the `Client` of a local address).
#[derive(Clone)]
pub(crate) struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    conn: Arc<Conn>,
    /// The broker's frame limit, from its handshake.
    max_frame_len: usize,
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
    core: Mutex<Core<Waker>>,
}

/// Bytes not yet written. While `busy`, the writer task owns the socket's write side and
/// new frames queue behind what it writes; otherwise a caller writes its frame itself.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    busy: bool,
    closing: bool,
}

impl Wakeup for Waker {
    fn same(&self, other: &Self) -> bool {
        self.will_wake(other)
    }
}

/// One handle's share of its object's state in the connection's core: the last one
/// dropped gives the object's fetched items and credits back.
pub(crate) struct Hold {
    pub(crate) client: Link,
    pub(crate) handle: u32,
}

impl crate::delivery::Settle for Hold {
    fn settle(&self, tag: u64, how: crate::core::Settlement) -> Result<()> {
        let handle = self.handle;
        match self
            .client
            .with_core(|core| core.settle_delivery(handle, tag, how))?
        {
            Some(_) => self.client.send(),
            None => Ok(()),
        }
    }

    fn lease(&self, tag: u64, lease: Duration) -> Result<()> {
        self.client
            .with_core(|core| core.lease_delivery(tag, lease))?;
        self.client.send()
    }

    fn finish_checked(&self, tag: u64) -> Result<()> {
        // A round trip cannot be waited for here: settled as any acknowledgement.
        self.settle(tag, crate::core::Settlement::Finish)
    }

    fn finish_checked_async(&self, tag: u64) -> crate::delivery::BoxFuture {
        let client = self.client.clone();
        Box::pin(async move { client.run(crate::ops::finish(tag, 1)).await })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // The reader task settles what is still on its way.
        self.client.with_core(|core| core.close_handle(self.handle));
        // If the connection is gone, the broker gives everything back itself.
        let _ = self.client.send();
    }
}

impl Link {
    /// Connects to the local broker at `addr` (see `Client::connect`).
    pub(crate) async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Link> {
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
    ) -> Result<Link> {
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
            core: Mutex::new(Core::new(max_frame_len)),
        });
        ::tokio::spawn(write_loop(Arc::clone(&conn)));
        let reader = ::tokio::spawn(read_loop(Arc::clone(&conn), buf));
        let inner = Arc::new(Inner {
            addr: addr.to_owned(),
            conn,
            max_frame_len,
            reader: reader.abort_handle(),
        });
        let client = Link { inner };
        // The broker answers a refused handshake (version, connection limit) with an error
        // frame: a first round trip turns it into this function's error.
        client.ping().await?;
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

    /// Opens `name` as `kind`; returns its handle.
    pub(crate) async fn open(&self, name: &str, kind: Kind) -> Result<u32> {
        self.run(ops::open(name, kind)).await
    }

    /// Checks that the broker answers.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if it does not.
    pub(crate) async fn ping(&self) -> Result<()> {
        self.run(ops::ping()).await
    }

    /// Every object in the broker with its figures, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::BrokerGone`] if the broker does not answer.
    pub(crate) async fn stats(&self) -> Result<Vec<ObjectStats>> {
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
    pub(crate) async fn lookup(&self, name: &str) -> Result<ObjectStats> {
        self.run(ops::lookup(name)).await
    }

    /// Removes the object `name` from the broker (as [`crate::Client::remove`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such object.
    pub(crate) async fn remove(&self, name: &str) -> Result<()> {
        self.run(ops::remove(name)).await
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        let conn = &self.inner.conn;
        loop {
            let idle = conn.idle.notified();
            ::tokio::pin!(idle);
            idle.as_mut().enable();
            if let Some(err) = conn.lock_core().failure() {
                return Err(err);
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
    /// waits for its answer, and if dropped first, leaves the answer to the core to settle
    /// as `purpose` says.
    pub(crate) fn request(
        &self,
        op: Op,
        items: &[&[u8]],
        purpose: Purpose,
        handle: u32,
    ) -> Result<Call> {
        let id = self.with_core(|core| core.request(op, items, purpose, handle, None))?;
        // A failed write means the connection is going: the reader fails the request.
        let _ = self.send();
        Ok(self.call(id))
    }

    /// The answer to request `id` (queued already), as a future.
    pub(crate) fn call(&self, id: u64) -> Call {
        Call {
            client: self.clone(),
            id,
            done: false,
        }
    }

    /// Runs `f` on the connection's protocol state.
    pub(crate) fn with_core<T>(&self, f: impl FnOnce(&mut Core<Waker>) -> T) -> T {
        f(&mut self.inner.conn.lock_core())
    }

    /// Waits until `poll` finds what it waits for (`poll` registers the task's waker with
    /// the core).
    pub(crate) async fn wait<T>(
        &self,
        mut poll: impl FnMut(&mut Core<Waker>, &Waker) -> Option<Result<T>>,
    ) -> Result<T> {
        std::future::poll_fn(
            |cx| match poll(&mut self.inner.conn.lock_core(), cx.waker()) {
                Some(result) => Poll::Ready(result),
                None => Poll::Pending,
            },
        )
        .await
    }

    /// Hands what the core has queued to the connection, in order: written now if the
    /// socket takes it, else queued for the writer task. Never waits.
    ///
    /// # Errors
    ///
    /// The connection's error when it is dead or a write failed: what was queued is lost.
    pub(crate) fn send(&self) -> Result<()> {
        self.inner.conn.send()
    }

    /// A handle's share of object `handle`'s state.
    pub(crate) fn hold(&self, handle: u32) -> Arc<Hold> {
        self.with_core(|core| core.open_handle(handle));
        Arc::new(Hold {
            client: self.clone(),
            handle,
        })
    }

    /// As [`Link::hold`] for a queue. (The tokio client does not map queues' rings: the
    /// broker serves its gets from them, and its puts turn a queue over to the socket.)
    pub(crate) fn queue_hold(&self, handle: u32, _capacity: usize) -> Arc<Hold> {
        self.hold(handle)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // What still waits to be written (acknowledgements deferred to the next write)
        // goes to the writer task, which writes it before it shuts the connection down.
        let _ = self.conn.send();
        self.reader.abort();
        self.conn.lock_out().closing = true;
        self.conn.wake_writer.notify_one();
    }
}

impl Conn {
    fn lock_core(&self) -> MutexGuard<'_, Core<Waker>> {
        // The core's changes complete under the lock or not at all (it does no I/O and
        // does not panic midway): a poisoned lock is still coherent.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`Client::send`].
    fn send(&self) -> Result<()> {
        let mut out = self.lock_out();
        let bytes = {
            let mut core = self.lock_core();
            if core.is_dead() {
                return Err(core.failure().expect("dead"));
            }
            core.take_transmit()
        };
        if bytes.is_empty() {
            return Ok(());
        }
        if out.busy || !out.buf.is_empty() {
            out.buf.extend_from_slice(&bytes);
            return Ok(());
        }
        // Nobody else writes while this lock is held and the writer task is idle.
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        while written < bytes.len() {
            match Pin::new(&mut &self.stream).poll_write(&mut cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) | Poll::Pending => break,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) if err.kind() == std::io::ErrorKind::Interrupted => {}
                // The reader finds out why; what was queued is lost with the connection.
                Poll::Ready(Err(err)) => {
                    self.lock_core().writes_failed();
                    return Err(gone(err));
                }
            }
        }
        if written < bytes.len() {
            out.buf.extend_from_slice(&bytes[written..]);
            out.busy = true;
            drop(out);
            self.wake_writer.notify_one();
        }
        Ok(())
    }

    /// Hands bytes read to the core; wakes whom it wakes and sends what it queues.
    fn handle_bytes(&self, buf: &mut BytesMut) {
        let (woken, transmit) = {
            let mut core = self.lock_core();
            core.handle_bytes(buf);
            (core.take_woken(), core.has_transmit())
        };
        woken.into_iter().for_each(Waker::wake);
        if transmit {
            let _ = self.send();
        }
    }

    /// The connection is unusable: every waiting caller gets `dead`'s error.
    fn die(&self, dead: Dead) {
        let woken = {
            let mut core = self.lock_core();
            core.die(dead);
            core.take_woken()
        };
        woken.into_iter().for_each(Waker::wake);
        self.idle.notify_waiters();
    }
}

/// The answer to one request, as a future. Dropping it before it is ready withdraws the
/// request (see [Cancel safety](self#cancel-safety)).
pub(crate) struct Call {
    client: Link,
    id: u64,
    done: bool,
}

impl Future for Call {
    type Output = Result<(Reply, Bytes)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match this
            .client
            .with_core(|core| core.poll(this.id, Some(cx.waker())))
        {
            None => Poll::Pending,
            Some(answer) => {
                this.done = true;
                Poll::Ready(answer)
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.client.with_core(|core| core.abandon(self.id));
            let _ = self.client.send();
        }
    }
}

/// Reads the broker's bytes and hands them to the core, until the connection ends.
async fn read_loop(conn: Arc<Conn>, mut buf: BytesMut) {
    // What the handshake left.
    conn.handle_bytes(&mut buf);
    let dead = loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match (&conn.stream).read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => break Dead::Gone("the broker closed the connection".into()),
            Ok(0) => break Dead::Gone("the broker closed the connection mid-frame".into()),
            Ok(_) => conn.handle_bytes(&mut buf),
            Err(err) => break Dead::Gone(format!("connection lost: {err}")),
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

fn gone(err: std::io::Error) -> Error {
    Error::BrokerGone(format!("connection lost: {err}"))
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}
