//! Passing a queue's ring to a client (Linux): a ticket for the ring's memfd, issued on the
//! client's connection ([`ipcq_proto::Op::ShareQueue`]) and redeemed on a connection of
//! its own ([`ipcq_proto::Op::FetchShared`]), whose answer carries the file as
//! `SCM_RIGHTS` ancillary data. A connection of its own, so that neither client reads
//! its ordinary connection with `recvmsg`: its first answer is the only thing on it.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interprocess::local_socket::tokio::Stream;

/// A ticket is redeemed within this time or not at all.
const TICKET_LIFE: Duration = Duration::from_secs(10);

/// Most tickets outstanding at once: a client asking for rings it never fetches holds at
/// most this many files open in the broker (for at most [`TICKET_LIFE`]).
const MOST_TICKETS: usize = 1024;

/// Rings' files promised to clients, by ticket.
#[derive(Debug, Default)]
pub(crate) struct Tickets {
    issued: Mutex<HashMap<u64, (File, Instant)>>,
    keys: RandomState,
}

impl Tickets {
    /// A ticket for `file`; `None` when too many are outstanding or the file cannot be
    /// duplicated (the client then uses the socket).
    pub(crate) fn issue(&self, file: &File) -> Option<u64> {
        let now = Instant::now();
        let mut issued = self.lock();
        issued.retain(|_, (_, expires)| *expires > now);
        if issued.len() >= MOST_TICKETS {
            return None;
        }
        let file = file.try_clone().ok()?;
        // Unguessable by another connection: hashed with this broker's random keys.
        let mut token = self.keys.hash_one((now, issued.len()));
        while token == 0 || issued.contains_key(&token) {
            token = self.keys.hash_one(token);
        }
        issued.insert(token, (file, now + TICKET_LIFE));
        Some(token)
    }

    /// The file of `token`, once, if it has not expired.
    pub(crate) fn redeem(&self, token: u64) -> Option<File> {
        let (file, expires) = self.lock().remove(&token)?;
        (expires > Instant::now()).then_some(file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (File, Instant)>> {
        self.issued
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A connection from a client of the broker's own user, through which a file can be sent.
#[derive(Debug, Clone)]
pub(crate) struct Port(Arc<Stream>);

impl Port {
    /// The port of `stream` if its client runs as the broker's user; `None` otherwise
    /// (another user's client, even an admitted one, gets no ring).
    pub(crate) fn of(stream: &Arc<Stream>) -> Option<Port> {
        use interprocess::local_socket::traits::StreamCommon as _;
        let creds = stream.peer_creds().ok()?;
        (creds.euid()? == rustix::process::geteuid().as_raw()).then(|| Port(Arc::clone(stream)))
    }

    /// Writes `frame` with `file` attached, at once: the connection is new and its only
    /// other bytes (the handshake) were read by the client before it asked, so the socket
    /// has room. `WouldBlock` otherwise.
    pub(crate) fn send(&self, frame: &[u8], file: &File) -> io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let Stream::UdSocket(socket) = &*self.0;
        let fds = [file.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = SendAncillaryBuffer::new(&mut space);
        if !ancillary.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for the file in the message"));
        }
        let sent = rustix::net::sendmsg(
            socket.inner().as_fd(),
            &[io::IoSlice::new(frame)],
            &mut ancillary,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )?;
        if sent != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the answer did not fit the socket",
            ));
        }
        Ok(())
    }
}
