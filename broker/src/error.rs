use std::io;

/// Errors of starting and running a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A live ipcq broker already answers on the address.
    #[error("a broker is already running at {addr}")]
    AddrInUse {
        /// The address.
        addr: String,
    },
    /// Something that is not an ipcq broker listens on the address (it accepted a
    /// connection, then did not greet as a broker does).
    #[error("the address {addr} is in use by a process that is not an ipcq broker")]
    AddrTaken {
        /// The address.
        addr: String,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The socket could not be set up.
    #[error("cannot listen at {addr}: {cause}")]
    Listen {
        /// The address.
        addr: String,
        /// What the system said (part of this error's message, not a separate source).
        cause: io::Error,
    },
    /// Another I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
