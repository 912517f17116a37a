//! A queue's ring in shared memory (Linux): where the broker shares one, plain puts and
//! gets of the blocking client go through it, with no system call while both sides are
//! busy.
//!
//! The ring comes from the broker: a ticket on the client's connection (`ops::share`),
//! then the ring's memfd on a connection of its own, as `SCM_RIGHTS` ancillary data. When the
//! broker turns the queue over to its socket (a client that needs its bookkeeping, see
//! the broker's `lane.rs`), the ring refuses pushes and ends waits with `SOCKET`, and
//! this client goes on over the socket. A client that cannot have the ring (another user,
//! no memfd, an old broker) never notices: the socket serves it.

use std::fs::File;
use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use interprocess::local_socket::Stream;
use ipcq_proto::{BrokerMsg, ClientMsg, Op, Reply, Wait};
use ipcq_shm::{Owner, PushError, SharedRing, Take, CLOSED};
use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::{Error, Result};

/// A queue's ring, mapped, and this connection's owner number in it.
pub(crate) struct Lane {
    ring: SharedRing,
    owner: Owner,
}

impl Lane {
    /// The ring the broker gave `token` for, fetched on a connection that `connect`
    /// opens (greeted, unused), and mapped; this connection's slots are `owner`'s. `None`
    /// if anything goes wrong on the way: the socket then serves the queue.
    pub(crate) fn attach(
        token: u64,
        owner: u32,
        connect: impl FnOnce() -> Result<Arc<Stream>>,
    ) -> Option<Lane> {
        let owner = Owner::new(owner)?;
        let file = connect().and_then(|stream| fetch(&stream, token)).ok()?;
        let ring = SharedRing::open(file).ok()?;
        Some(Lane { ring, owner })
    }

    /// Puts the first of `items` at least, waiting as `wait` says, and as many of the
    /// rest as there is room for now; returns how many. `None`: the socket serves the
    /// queue (turned over, or an item larger than a slot), nothing was put.
    pub(crate) fn put(
        &self,
        socket: &Stream,
        items: &[&[u8]],
        wait: Wait,
    ) -> Result<Option<usize>> {
        let deadline = deadline(wait);
        let mut put = 0;
        for item in items {
            let wait = if put == 0 {
                deadline
            } else {
                Some(Instant::now())
            };
            let pushed = self
                .ring
                .push_wait(self.owner, item, wait, &mut || broker_there(socket));
            match pushed {
                Ok(()) => put += 1,
                _ if put > 0 => break,
                Err(PushError::Full) if broker_there(socket) => return Err(Error::Full),
                Err(PushError::Full) => return Err(gone()),
                Err(PushError::Refused(flags)) if flags == CLOSED => return Err(Error::Closed),
                Err(PushError::TooLarge | PushError::Refused(_)) => return Ok(None),
            }
        }
        Ok(Some(put))
    }

    /// Takes up to `max` items (at least one), waiting for the first as `wait` says.
    /// `None`: the socket serves the queue now.
    pub(crate) fn take(
        &self,
        socket: &Stream,
        max: usize,
        wait: Wait,
    ) -> Result<Option<Vec<Bytes>>> {
        let first = match self
            .ring
            .take(self.owner, deadline(wait), &mut || broker_there(socket))
        {
            Take::Item(item) => item,
            Take::Closed => return Err(Error::Closed),
            Take::Socket => return Ok(None),
            Take::Empty if broker_there(socket) => return Err(Error::Empty),
            Take::Empty => return Err(gone()),
        };
        let mut items = vec![Bytes::from(first)];
        while items.len() < max {
            match self.ring.take_now(self.owner) {
                Take::Item(item) => items.push(Bytes::from(item)),
                _ => break,
            }
        }
        Ok(Some(items))
    }
}

/// When a wait as `wait` says ends (`None`: it does not).
fn deadline(wait: Wait) -> Option<Instant> {
    match wait {
        Wait::Block => None,
        Wait::NoWait => Some(Instant::now()),
        Wait::Micros(micros) => Some(Instant::now() + Duration::from_micros(micros)),
    }
}

fn gone() -> Error {
    Error::BrokerGone("the broker closed the connection".into())
}

/// Whether the broker still holds this client's connection (a futex does not tell when
/// the process at the other end of the ring dies; its socket does).
fn broker_there(socket: &Stream) -> bool {
    let Stream::UdSocket(socket) = socket;
    let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(_) => !fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
        Err(_) => true,
    }
}

/// Fetches the ring's memfd with `token`, on `stream` (a connection of its own, greeted).
fn fetch(stream: &Stream, token: u64) -> Result<File> {
    let mut request = Vec::new();
    let fetch = ClientMsg::Request {
        id: 1,
        op: Op::FetchShared { token },
    };
    ipcq_proto::encode(&fetch, 0, ipcq_proto::MAX_HANDSHAKE_LEN, &mut request)
        .map_err(|err| Error::Protocol(err.to_string()))?;
    (&*stream).write_all(&request)?;

    let Stream::UdSocket(socket) = stream;
    let mut buf = BytesMut::new();
    let mut file = None;
    let frame = loop {
        if let Some(frame) = ipcq_proto::decode_frame(&mut buf, ipcq_proto::MAX_HANDSHAKE_LEN)
            .map_err(|err| Error::Protocol(err.to_string()))?
        {
            break frame;
        }
        let mut chunk = [0u8; 256];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            socket.as_fd(),
            &mut [IoSliceMut::new(&mut chunk)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        for message in ancillary.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    file.get_or_insert(File::from(fd));
                }
            }
        }
        if received.bytes == 0 {
            return Err(gone());
        }
        buf.extend_from_slice(&chunk[..received.bytes]);
    };
    match ipcq_proto::decode::<BrokerMsg>(frame).map_err(|err| Error::Protocol(err.to_string()))? {
        (
            BrokerMsg::Reply {
                body: Reply::Done, ..
            },
            _,
        ) => file.ok_or_else(|| Error::Protocol("the broker sent no ring".into())),
        (
            BrokerMsg::Reply {
                body: Reply::Error(err),
                ..
            }
            | BrokerMsg::Fatal(err),
            _,
        ) => Err(Error::from_reply(err)),
        (other, _) => Err(Error::Protocol(format!("unexpected answer: {other:?}"))),
    }
}
