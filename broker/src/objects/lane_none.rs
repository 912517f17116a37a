//! Where the system has no shared-memory rings (anything but Linux), a queue has no lane:
//! this type has no values, and every queue is served over the socket.

use bytes::Bytes;
use std::sync::Arc;

use super::{Claimed, Filled};
use crate::budget::Budget;
use crate::peer::Peer;

/// No ring: no value of this type exists.
#[derive(Debug)]
pub(crate) enum Lane {}

impl Lane {
    pub(crate) fn create(
        _name: &str,
        _capacity: u64,
        _slot_size: usize,
        _budget: &Arc<Budget>,
    ) -> Option<Lane> {
        None
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        match *self {}
    }

    pub(crate) fn owner(&self, _peer: u64) -> Option<u32> {
        match *self {}
    }

    pub(crate) fn serving(&self) -> bool {
        match *self {}
    }

    pub(crate) fn len(&self) -> u64 {
        match *self {}
    }

    pub(crate) fn taken_by_clients(&self) -> u64 {
        match *self {}
    }

    pub(crate) fn torn_writes(&self) -> u64 {
        match *self {}
    }

    pub(crate) fn stop(&self) {
        match *self {}
    }

    pub(crate) fn close(&self) {
        match *self {}
    }

    pub(crate) fn turn_over(&self, _name: &str, _why: &str) -> (Vec<Bytes>, Vec<Claimed>) {
        match *self {}
    }

    pub(crate) fn forget(&self, _name: &str, _peer: u64) -> Vec<Bytes> {
        match *self {}
    }

    pub(crate) fn push(&self, _item: &[u8]) -> bool {
        match *self {}
    }

    pub(crate) fn take_held(&self) -> Option<Bytes> {
        match *self {}
    }

    pub(crate) fn release(&self, _count: u64) {
        match *self {}
    }

    pub(crate) fn front(&self, _up: bool) {
        match *self {}
    }

    pub(crate) fn slot_size(&self) -> usize {
        match *self {}
    }

    pub(crate) fn claim(&self, _peer: &Arc<Peer>, _handle: u32, _bytes: usize) -> bool {
        match *self {}
    }

    pub(crate) fn fill(&self, _peer: u64, _item: &[u8]) -> Filled {
        match *self {}
    }

    pub(crate) fn unclaim(&self, _peer: u64, _credits: Option<u64>) -> u64 {
        match *self {}
    }
}
