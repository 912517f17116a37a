use std::fmt;

/// Errors of framing and decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame's length exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced or attempted length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A complete frame does not hold a valid message.
    #[error("malformed message: {0}")]
    Decode(CodecError),
    /// A message could not be encoded.
    #[error("message could not be encoded: {0}")]
    Encode(CodecError),
    /// A message is well-formed but inconsistent.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The handshake does not start with the ipcq magic bytes.
    #[error("the peer is not an ipcq peer (bad handshake)")]
    NotIpcq,
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: this side speaks version {ours}, the peer version {theirs}"
    )]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
}

impl Error {
    pub(crate) fn decode(err: postcard::Error) -> Self {
        Error::Decode(CodecError(err))
    }

    pub(crate) fn encode(err: postcard::Error) -> Self {
        Error::Encode(CodecError(err))
    }
}

/// A postcard encoding or decoding failure.
#[derive(Debug)]
pub struct CodecError(pub(crate) postcard::Error);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for CodecError {}

impl From<postcard::Error> for CodecError {
    fn from(err: postcard::Error) -> Self {
        CodecError(err)
    }
}
