//! One client connection: handshake, then requests in, answers out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipcq_proto::{ClientMsg, ErrorCode, ErrorReply, Hello, Kind, Op, Reply, Wait};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::budget::cost;
use crate::connection::{read_frame, Partial, ReadError, OWN_ALLOCATION};
use crate::link::{flush_scope, write_loop, Direct, Link, OutputLimits};
use crate::objects::{Barrier, Event, Object, Permits, Queue};
use crate::peer::{Peer, Taken};
use crate::registry::Registry;
use crate::share::{Port, Tickets};

/// A client that has not finished its handshake by then is not an ipcq client.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of figures in one [`Op::StatsPage`] answer.
const STATS_PAGE_MAX: usize = 64 * 1024;

/// Per-connection state shared with the server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) max_frame_len: usize,
    pub(crate) output: OutputLimits,
    /// Rings promised to clients, to be fetched on connections of their own.
    pub(crate) tickets: Tickets,
}

/// Runs one connection to its end: the client's process is `pid` (0 if unknown); `port`
/// is there if it may be sent a ring. Never panics on input; every way out is logged here.
pub(crate) async fn run<R, W>(
    id: u64,
    pid: u32,
    port: Option<Port>,
    reader: R,
    writer: W,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + Clone + std::fmt::Debug + 'static,
{
    let link = Link::new(
        Box::new(Direct(std::sync::Mutex::new(writer.clone()))),
        shared.output,
    );
    let writer = tokio::spawn(write_loop(writer, Arc::clone(&link)));
    let shared_budget = Arc::clone(shared.registry.budget());
    let mut session = Session {
        peer: Arc::new(Peer::new(id, pid, Arc::clone(&link), shared.max_frame_len)),
        shared,
        handles: Vec::new(),
        by_name: HashMap::new(),
        reader,
        buf: BytesMut::with_capacity(64 * 1024),
        partial: Partial::new(shared_budget),
        link: Arc::clone(&link),
        port,
    };
    session.send_hello();
    let outcome = tokio::select! {
        outcome = session.serve() => outcome,
        why = unread_output(&link) => Err(SessionError::Unread(why)),
        _ = shutdown.wait_for(|&stop| stop) => {
            session.peer.fatal(ErrorCode::ShuttingDown, "the broker is shutting down");
            Ok(())
        }
    };
    let unread = matches!(outcome, Err(SessionError::Unread(_)));
    match outcome {
        Ok(()) => tracing::debug!(peer = id, "connection closed"),
        Err(SessionError::Unread(why)) => {
            tracing::warn!(peer = id, reason = %why, "connection dropped: it does not read its answers");
        }
        Err(err) => tracing::info!(peer = id, cause = %err, "connection dropped"),
    }
    session.clean_up();
    drop(session);
    drop(link);
    if unread {
        // Its writer may be stuck on a socket that is never read: stop it, which closes
        // the socket once the last handle on the peer is gone.
        writer.abort();
        return;
    }
    // The writer ends once every handle on the peer is gone, after sending what is queued.
    if let Ok(Err(err)) = writer.await {
        tracing::debug!(peer = id, cause = %err, "write side failed");
    }
}

/// Completes when the connection must be dropped because it leaves its answers unread:
/// past the hard limit at once, or over the soft limit for longer than allowed.
async fn unread_output(link: &Link) -> String {
    let limits = link.limits();
    let mut output = link.output();
    loop {
        let now = *output.borrow_and_update();
        if now.overflowed {
            return format!("over {} bytes of answers unread", limits.hard);
        }
        match now.over_soft_since {
            Some(since) => {
                tokio::select! {
                    changed = output.changed() => if changed.is_err() { return "closed".into() },
                    () = tokio::time::sleep_until(since + limits.soft_for) => {
                        return format!(
                            "over {} bytes of answers unread for {:?}",
                            limits.soft, limits.soft_for
                        );
                    }
                }
            }
            None => {
                if output.changed().await.is_err() {
                    // The link is gone: the session is ending anyway.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

struct Session<R> {
    peer: Arc<Peer>,
    shared: Arc<Shared>,
    /// Objects opened on this connection, indexed by handle: a hot-path request costs one
    /// bounds check, not a map lookup.
    handles: Vec<Opened>,
    /// Handles by name (and pipe end), so that reopening returns the same handle.
    by_name: HashMap<(String, u8), u32>,
    reader: R,
    buf: BytesMut,
    /// A large frame being received, counted against the broker-wide budget.
    partial: Partial,
    /// Where this connection's answers wait to be written.
    link: Arc<Link>,
    /// How a ring's file reaches this client, if it may have one.
    port: Option<Port>,
}

/// The item bytes that came after a message in its frame.
struct Tail {
    bytes: Bytes,
    /// The frame was read into an allocation of its own, exactly its size.
    own_allocation: bool,
}

impl Tail {
    /// The tail as one item. It keeps its frame's allocation only when that allocation is
    /// the frame's alone, so no more than the item (and the few bytes of its request) is
    /// held while it waits in a queue; otherwise it is copied out of the read buffer.
    fn single(self) -> Bytes {
        if self.own_allocation {
            self.bytes
        } else {
            Bytes::copy_from_slice(&self.bytes)
        }
    }

    /// The tail as items of lengths `lens`, each copied into an allocation of its own: a
    /// batch's items leave the queue one by one, and none may keep the others' bytes.
    fn many(self, lens: &[u32]) -> Result<Vec<Bytes>, ipcq_proto::Error> {
        let items = ipcq_proto::split_items(self.bytes, lens)?;
        Ok(items
            .into_iter()
            .map(|item| Bytes::copy_from_slice(&item))
            .collect())
    }
}

/// An object opened on this connection: for a pipe, the end this connection holds.
#[derive(Debug)]
struct Opened {
    object: Object,
    end: u8,
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unread(String),
}

impl<R: AsyncRead + Unpin> Session<R> {
    fn send_hello(&self) {
        let max = u32::try_from(self.shared.max_frame_len).unwrap_or(u32::MAX);
        let mut head = Vec::new();
        // A `Hello` is a dozen bytes: it always fits.
        let _ = ipcq_proto::encode(
            &Hello::new(max),
            0,
            ipcq_proto::MAX_HANDSHAKE_LEN,
            &mut head,
        );
        self.peer.send_raw(head);
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        let hello = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            read_frame(
                &mut self.reader,
                &mut self.buf,
                ipcq_proto::MAX_HANDSHAKE_LEN,
                &self.partial,
            ),
        )
        .await;
        let frame = match hello {
            Err(_) => {
                return Err(self.refuse(ErrorCode::Protocol, "no handshake within 10 s".into()))
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(err)) => {
                return Err(self.refuse(ErrorCode::Protocol, format!("bad handshake: {err}")))
            }
        };
        let hello = match ipcq_proto::decode::<Hello>(frame) {
            Ok((hello, _)) => hello,
            Err(err) => {
                return Err(self.refuse(ErrorCode::Protocol, format!("bad handshake: {err}")))
            }
        };
        if let Err(err) = hello.check() {
            return Err(self.refuse(ErrorCode::Protocol, err.to_string()));
        }
        self.peer
            .set_max_frame_len(self.shared.max_frame_len.min(hello.max_frame_len as usize));

        let mut output = self.link.output();
        // A request held back while the client leaves its answers unread.
        let mut held: Option<Bytes> = None;
        loop {
            let frame = match held.take() {
                Some(frame) => {
                    // A client that leaves its answers unread gets no new ones until it
                    // catches up: its requests wait, and the broker keeps no more for it.
                    let _ = output.wait_for(|now| now.over_soft_since.is_none()).await;
                    frame
                }
                None => match read_frame(
                    &mut self.reader,
                    &mut self.buf,
                    self.shared.max_frame_len,
                    &self.partial,
                )
                .await
                {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Ok(()),
                    Err(ReadError::Frame(err)) => {
                        return Err(self.refuse(ErrorCode::TooLarge, err.to_string()))
                    }
                    Err(err) => return Err(err.into()),
                },
            };
            // This frame and every other whole one already read form a batch, handled
            // without awaiting; the answers it produced are written at its end. Over the
            // soft limit, messages that ask for nothing back (acknowledgements, returns,
            // puts on credits) are still taken, in order, up to the first request: a
            // client that writes them without reading must not block on a full socket
            // while the broker waits for it to read.
            flush_scope(|| {
                let mut next = Some(frame);
                while let Some(frame) = next.take() {
                    if ClientMsg::asks_for_answer(&frame) && self.link.over_soft() {
                        held = Some(frame);
                        return Ok(());
                    }
                    self.handle_frame(frame)?;
                    next = match ipcq_proto::decode_frame(&mut self.buf, self.shared.max_frame_len)
                    {
                        Ok(frame) => frame,
                        Err(err) => return Err(self.refuse(ErrorCode::TooLarge, err.to_string())),
                    };
                }
                Ok(())
            })?;
        }
    }

    fn handle_frame(&mut self, frame: Bytes) -> Result<(), SessionError> {
        let own_allocation = frame.len() >= OWN_ALLOCATION;
        match ipcq_proto::decode::<ClientMsg>(frame) {
            Ok((msg, tail)) => self
                .handle(
                    msg,
                    Tail {
                        bytes: tail,
                        own_allocation,
                    },
                )
                .map_err(|message| self.refuse(ErrorCode::Protocol, message)),
            Err(err) => Err(self.refuse(ErrorCode::Protocol, err.to_string())),
        }
    }

    /// The deliveries `tag .. tag + count` leave their queues for good; returns how many
    /// of them this client still held.
    fn settle(&self, tag: u64, count: u32, finished: bool) -> u64 {
        let mut held = 0;
        for (queue, items) in self.peer.take(tag, count) {
            let bytes = items.iter().map(|item| cost(item.len())).sum();
            held += items.len() as u64;
            queue.settle(self.peer.id, items.len() as u64, bytes, finished);
        }
        held
    }

    /// Tells the client why its connection ends.
    fn refuse(&self, code: ErrorCode, message: String) -> SessionError {
        self.peer.fatal(code, message.clone());
        SessionError::Refused(message)
    }

    /// Handles one message. Requests are answered here or by the object; a message
    /// without a reply (acknowledgements, puts on credits) that breaks the protocol ends
    /// the connection with the returned reason, as there is no request to answer.
    fn handle(&mut self, msg: ClientMsg, tail: Tail) -> Result<(), String> {
        let (id, op) = match msg {
            ClientMsg::Request { id, op } => (id, op),
            ClientMsg::Ack { tag, count } => {
                // The application has these items: they leave their queues for good.
                self.settle(tag, count, false);
                return Ok(());
            }
            ClientMsg::Lease { tag, count, millis } => {
                self.peer.lease(tag, count, millis);
                return Ok(());
            }
            ClientMsg::DeadLetter { tag, count } => {
                for (queue, items) in self.peer.take(tag, count) {
                    queue.dead_letter(self.peer.id, items);
                }
                return Ok(());
            }
            ClientMsg::Finish { tag, count } => {
                // Their work is done: they leave, and count as done for `join`.
                self.settle(tag, count, true);
                return Ok(());
            }
            ClientMsg::Send { handle } => {
                return self
                    .one_way_queue(handle)?
                    .send_reserved(self.peer.id, vec![tail.single()]);
            }
            ClientMsg::SendMany { handle, lens } => {
                let items = tail.many(&lens).map_err(|err| err.to_string())?;
                return self
                    .one_way_queue(handle)?
                    .send_reserved(self.peer.id, items);
            }
            ClientMsg::Release {
                handle,
                credits,
                bytes,
            } => {
                let queue = self.one_way_queue(handle)?;
                queue.release(
                    self.peer.id,
                    credits,
                    usize::try_from(bytes).unwrap_or(usize::MAX),
                );
                return Ok(());
            }
            ClientMsg::Return { tag, count } => {
                restore(self.peer.id, self.peer.take(tag, count));
                return Ok(());
            }
            ClientMsg::Cancel { handle, id } => {
                let opened = self.opened(handle).map_err(|err| err.message)?;
                opened.object.waits().cancel(self.peer.id, id);
                return Ok(());
            }
        };
        if !tail.bytes.is_empty() && !matches!(op, Op::Put { .. } | Op::PutMany { .. }) {
            let err = ErrorReply::new(ErrorCode::InvalidArgument, "this request carries no items");
            self.peer.reply(id, Reply::Error(err));
            return Ok(());
        }
        match self.apply(id, op, tail) {
            Ok(Some(reply)) => self.peer.reply(id, reply),
            Ok(None) => {}
            Err(err) => self.peer.reply(id, Reply::Error(err)),
        }
        Ok(())
    }

    fn one_way_queue(&self, handle: u32) -> Result<&Arc<Queue>, String> {
        self.send_queue(handle).map_err(|err| err.message)
    }

    /// Carries out one request. `Ok(None)` means the object answers, now or later.
    fn apply(&mut self, id: u64, op: Op, tail: Tail) -> Result<Option<Reply>, ErrorReply> {
        let peer = &self.peer;
        match op {
            Op::Ping => Ok(Some(Reply::Pong)),
            Op::Open { name, kind } => {
                let end = match kind {
                    Kind::Queue { .. }
                    | Kind::Lock
                    | Kind::Semaphore { .. }
                    | Kind::Event
                    | Kind::Barrier { .. } => 0,
                    Kind::PipeEnd { end, .. } if end < 2 => end,
                    Kind::PipeEnd { end, .. } => {
                        return Err(ErrorReply::new(
                            ErrorCode::InvalidArgument,
                            format!("a pipe has ends 0 and 1, not {end}"),
                        ))
                    }
                };
                let object = self.shared.registry.open(name.clone(), kind)?;
                // Reopening on the same connection returns the same handle, unless the name
                // now stands for a new object (the old one was removed).
                let key = (name, end);
                if let Some(&handle) = self.by_name.get(&key) {
                    if self.handles[handle as usize].object.same(&object) {
                        // This connection counts once as an opener.
                        self.let_go(&object);
                        return Ok(Some(Reply::Opened { handle }));
                    }
                }
                if let Object::Pipe(pipe) = &object {
                    pipe.claim(end, self.peer.id)?;
                }
                let Ok(handle) = u32::try_from(self.handles.len()) else {
                    self.let_go(&object);
                    return Err(ErrorReply::new(
                        ErrorCode::LimitReached,
                        "too many objects open on this connection",
                    ));
                };
                self.handles.push(Opened { object, end });
                self.by_name.insert(key, handle);
                Ok(Some(Reply::Opened { handle }))
            }
            Op::Put {
                handle,
                wait,
                credits,
            } => {
                let items = VecDeque::from([tail.single()]);
                self.send_queue(handle)?
                    .put(peer, handle, id, items, wait, credits);
                Ok(None)
            }
            Op::PutMany {
                handle,
                lens,
                credits,
            } => {
                let items = tail
                    .many(&lens)
                    .map_err(|err| ErrorReply::new(ErrorCode::InvalidArgument, err.to_string()))?;
                self.send_queue(handle)?
                    .put(peer, handle, id, items.into(), Wait::Block, credits);
                Ok(None)
            }
            Op::Get { handle, wait } => {
                self.recv_queue(handle)?.get(peer, id, wait, 1, false);
                Ok(None)
            }
            Op::GetMany { handle, max, wait } => {
                if max == 0 {
                    return Err(ErrorReply::new(
                        ErrorCode::InvalidArgument,
                        "get_many needs max >= 1",
                    ));
                }
                self.recv_queue(handle)?
                    .get(peer, id, wait, max as usize, true);
                Ok(None)
            }
            Op::Info { handle } => {
                // A pipe end reports what waits for it, or, if it only sends, what it sent.
                let queue = self
                    .recv_queue(handle)
                    .or_else(|_| self.send_queue(handle))?;
                Ok(Some(Reply::QueueInfo(queue.info())))
            }
            Op::Close { handle } => {
                let opened = self.opened(handle)?;
                match &opened.object {
                    Object::Queue(queue) => queue.close(),
                    Object::Pipe(pipe) => pipe.close_end(opened.end),
                    other => return Err(wrong_kind(handle, other, "a queue or pipe")),
                }
                Ok(Some(Reply::Done))
            }
            Op::Reserve {
                handle,
                credits,
                len,
            } => {
                let queue = self.send_queue(handle)?;
                let (credits, bytes) = queue.reserve(peer, handle, credits, len as usize);
                Ok(Some(Reply::Accepted { credits, bytes }))
            }
            Op::WaitRoom {
                handle,
                len,
                wait,
                credits,
            } => {
                let queue = self.send_queue(handle)?;
                if len as usize + ipcq_proto::ITEM_OVERHEAD > self.peer.max_frame_len() {
                    return Err(ErrorReply::new(
                        ErrorCode::TooLarge,
                        format!(
                            "an item of {len} bytes does not fit in a frame of {} bytes",
                            self.peer.max_frame_len()
                        ),
                    ));
                }
                queue.wait_room(peer, handle, id, len as usize, wait, credits);
                Ok(None)
            }
            Op::Acquire { handle, wait } => {
                self.permits(handle)?.acquire(peer, id, wait);
                Ok(None)
            }
            Op::ReleasePermit { handle } => {
                self.permits(handle)?
                    .release(peer.id)
                    .map_err(|msg| ErrorReply::new(ErrorCode::InvalidArgument, msg))?;
                Ok(Some(Reply::Done))
            }
            Op::SetEvent { handle } => {
                self.event(handle)?.set();
                Ok(Some(Reply::Done))
            }
            Op::ClearEvent { handle } => {
                self.event(handle)?.clear();
                Ok(Some(Reply::Done))
            }
            Op::WaitEvent { handle, wait } => {
                self.event(handle)?.wait(peer, id, wait);
                Ok(None)
            }
            Op::WaitBarrier { handle, wait } => {
                self.barrier(handle)?.wait(peer, id, wait);
                Ok(None)
            }
            Op::ResetBarrier { handle } => {
                self.barrier(handle)?.reset();
                Ok(Some(Reply::Done))
            }
            Op::TaskDone { handle } => {
                self.recv_queue(handle)?
                    .task_done()
                    .map_err(|msg| ErrorReply::new(ErrorCode::InvalidArgument, msg))?;
                Ok(Some(Reply::Done))
            }
            Op::Join { handle, wait } => {
                self.recv_queue(handle)?.join(peer, id, wait);
                Ok(None)
            }
            Op::Stats => {
                let stats = self.shared.registry.stats();
                let len: usize = stats.iter().map(ipcq_proto::encoded_len).sum();
                if len + ipcq_proto::ITEM_OVERHEAD > self.peer.max_frame_len() {
                    return Err(ErrorReply::new(
                        ErrorCode::TooLarge,
                        format!(
                            "the figures of {} objects do not fit in one answer (about {len} \
                             bytes, the limit is {}): ask for them page by page",
                            stats.len(),
                            self.peer.max_frame_len()
                        ),
                    ));
                }
                Ok(Some(Reply::Stats(stats)))
            }
            Op::StatsPage { after, max_len } => {
                // A page stays well within the frame limit and the output bound.
                let max_len = (max_len as usize)
                    .min(self.peer.max_frame_len() / 2)
                    .min(STATS_PAGE_MAX);
                let (objects, more) = self.shared.registry.stats_page(&after, max_len);
                Ok(Some(Reply::StatsPage { objects, more }))
            }
            Op::ShareQueue { handle } => Ok(Some(self.share(self.send_queue(handle)?))),
            Op::FetchShared { token } => self.fetch_shared(id, token),
            Op::Finish { tag, count } => {
                let held = self.settle(tag, count, true);
                if held < u64::from(count) {
                    return Err(ErrorReply::new(
                        ErrorCode::Expired,
                        format!(
                            "delivery {tag} is no longer held by this client: its lease ran \
                             out and it went back to its queue"
                        ),
                    ));
                }
                Ok(Some(Reply::Done))
            }
            Op::Lookup { name } => match self.shared.registry.lookup(&name) {
                Some(entry) => Ok(Some(Reply::Stats(vec![entry]))),
                None => Err(ErrorReply::new(
                    ErrorCode::NotFound,
                    format!("no object is named '{name}'"),
                )),
            },
            Op::Remove { name } => {
                self.shared.registry.remove(&name)?;
                Ok(Some(Reply::Done))
            }
        }
    }

    fn opened(&self, handle: u32) -> Result<&Opened, ErrorReply> {
        self.handles.get(handle as usize).ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::UnknownHandle,
                format!("no object is open under handle {handle} on this connection"),
            )
        })
    }

    fn permits(&self, handle: u32) -> Result<&Arc<Permits>, ErrorReply> {
        match &self.opened(handle)?.object {
            Object::Permits(permits) => Ok(permits),
            other => Err(wrong_kind(handle, other, "a lock or semaphore")),
        }
    }

    fn barrier(&self, handle: u32) -> Result<&Arc<Barrier>, ErrorReply> {
        match &self.opened(handle)?.object {
            Object::Barrier(barrier) => Ok(barrier),
            other => Err(wrong_kind(handle, other, "a barrier")),
        }
    }

    fn event(&self, handle: u32) -> Result<&Arc<Event>, ErrorReply> {
        match &self.opened(handle)?.object {
            Object::Event(event) => Ok(event),
            other => Err(wrong_kind(handle, other, "an event")),
        }
    }

    /// `ShareQueue`: a ticket for `queue`'s ring, if it has one that serves it and this
    /// client may have it; `Flag(false)` otherwise (the socket serves it).
    fn share(&self, queue: &Queue) -> Reply {
        let shared = self.port.as_ref().and_then(|_| {
            let lane = queue.lane.as_ref().filter(|lane| lane.serving())?;
            let owner = lane.owner(self.peer.id)?;
            let token = self.shared.tickets.issue(lane.file())?;
            Some(Reply::Shared { token, owner })
        });
        shared.unwrap_or(Reply::Flag(false))
    }

    /// `FetchShared`: the answer goes straight to the socket, with the ring's file. The
    /// client asks on a connection that has carried nothing but the handshake; asked
    /// anywhere else, the answer could land between the bytes of another, which only that
    /// client reads.
    fn fetch_shared(&self, id: u64, token: u64) -> Result<Option<Reply>, ErrorReply> {
        let found = self
            .port
            .as_ref()
            .and_then(|port| Some((port, self.shared.tickets.redeem(token)?)));
        let Some((port, file)) = found else {
            return Err(ErrorReply::new(
                ErrorCode::NotFound,
                "no ring for this ticket: unknown, used, expired, or not this user's",
            ));
        };
        let mut frame = Vec::new();
        let answer = ipcq_proto::BrokerMsg::Reply {
            id,
            body: Reply::Done,
        };
        let failed = |err: &dyn std::fmt::Display| {
            ErrorReply::new(ErrorCode::Broken, format!("the ring was not sent: {err}"))
        };
        ipcq_proto::encode(&answer, 0, ipcq_proto::MAX_HANDSHAKE_LEN, &mut frame)
            .map_err(|err| failed(&err))?;
        port.send(&frame, &file).map_err(|err| failed(&err))?;
        Ok(None)
    }

    /// The queue that puts on `handle` go to: the queue itself, or the inbox of the other
    /// end of a pipe.
    fn send_queue(&self, handle: u32) -> Result<&Arc<Queue>, ErrorReply> {
        let opened = self.opened(handle)?;
        match &opened.object {
            Object::Queue(queue) => Ok(queue),
            Object::Pipe(pipe) => pipe.send_queue(opened.end),
            other => Err(wrong_kind(handle, other, "a queue or pipe")),
        }
    }

    /// The queue that gets on `handle` take from: the queue itself, or this end's inbox.
    fn recv_queue(&self, handle: u32) -> Result<&Arc<Queue>, ErrorReply> {
        let opened = self.opened(handle)?;
        match &opened.object {
            Object::Queue(queue) => Ok(queue),
            Object::Pipe(pipe) => pipe.recv_queue(opened.end),
            other => Err(wrong_kind(handle, other, "a queue or pipe")),
        }
    }
}

impl<R> Session<R> {
    /// The client is gone: its parked requests are dropped, and what it held in flight goes
    /// back to the head of each queue, in order.
    fn clean_up(&mut self) {
        let in_flight = self.peer.close();
        for opened in &self.handles {
            opened.object.waits().forget(self.peer.id);
        }
        restore(self.peer.id, in_flight);
        // Last: an auto-delete queue goes with what came back to it.
        for opened in &self.handles {
            self.let_go(&opened.object);
        }
    }

    /// This connection is done with `object` (see [`Registry::let_go`]).
    fn let_go(&self, object: &Object) {
        if let Object::Queue(queue) = object {
            self.shared.registry.let_go(queue);
        }
    }
}

fn wrong_kind(handle: u32, object: &Object, wanted: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::WrongKind,
        format!("handle {handle} is a {}, not {wanted}", object.kind_name()),
    )
}

/// Gives the deliveries of `holder` back to the heads of their queues, in their order.
fn restore(holder: u64, taken: Taken) {
    for (queue, items) in taken {
        tracing::debug!(queue = %queue.name(), count = items.len(), "returning in-flight items");
        queue.restore(holder, items);
    }
}
