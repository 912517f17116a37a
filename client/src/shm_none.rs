//! Where queues have no rings (anything but Linux): every queue is served over the socket.

use std::sync::Arc;

use bytes::Bytes;
use interprocess::local_socket::Stream;
use ipcq_proto::Wait;

use crate::Result;

/// No value of this type exists here.
pub(crate) enum Lane {}

impl Lane {
    pub(crate) fn attach(
        _token: u64,
        _owner: u32,
        _connect: impl FnOnce() -> Result<Arc<Stream>>,
    ) -> Option<Lane> {
        None
    }

    pub(crate) fn put(
        &self,
        _socket: &Stream,
        _items: &[&[u8]],
        _wait: Wait,
    ) -> Result<Option<usize>> {
        match *self {}
    }

    pub(crate) fn take(
        &self,
        _socket: &Stream,
        _max: usize,
        _wait: Wait,
    ) -> Result<Option<Vec<Bytes>>> {
        match *self {}
    }
}
