//! The objects a broker serves. Object state never touches a socket: answers go to the
//! client's [`Peer`](crate::peer::Peer), whose writer task owns the socket.

mod pipe;
mod queue;

pub(crate) use pipe::Pipe;
pub(crate) use queue::Queue;

use std::sync::Arc;

/// An object as the registry and the sessions hold it.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    Queue(Arc<Queue>),
    Pipe(Arc<Pipe>),
}

impl Object {
    /// Whether both are the same object (not merely the same name).
    pub(crate) fn same(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Queue(a), Object::Queue(b)) => Arc::ptr_eq(a, b),
            (Object::Pipe(a), Object::Pipe(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Object::Queue(_) => "queue",
            Object::Pipe(_) => "pipe",
        }
    }
}
