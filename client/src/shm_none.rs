//! Where queues have no rings (anything but Linux): every queue is served over the socket.

use crate::client::Link;
use crate::Result;
use bytes::Bytes;
use ipcq_proto::Wait;

/// No value of this type exists here.
pub(crate) enum Lane {}

impl Lane {
    pub(crate) fn attach(_link: &Link, _handle: u32) -> Option<Lane> {
        None
    }

    pub(crate) fn put(&self, _link: &Link, _items: &[&[u8]], _wait: Wait) -> Result<Option<usize>> {
        match *self {}
    }

    pub(crate) fn take(
        &self,
        _link: &Link,
        _max: usize,
        _wait: Wait,
    ) -> Result<Option<Vec<Bytes>>> {
        match *self {}
    }
}
