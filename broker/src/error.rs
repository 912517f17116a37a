use std::io;

/// Errors of starting and running a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A live broker already answers on the address.
    #[error("a broker is already running at {addr}")]
    AddrInUse {
        /// The address.
        addr: String,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The socket could not be set up.
    #[error("cannot listen at {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What the system said.
        source: io::Error,
    },
    /// Another I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
