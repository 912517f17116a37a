//! Where broker and clients meet.

use std::path::PathBuf;

/// The environment variable that names the broker's address, for clients and broker alike.
pub const ADDR_ENV: &str = "IPCQ_ADDR";

/// How an address string is to be used by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrKind {
    /// A socket file (Unix), or a full pipe path such as `\\.\pipe\name` (Windows).
    Path(PathBuf),
    /// A name in the local socket namespace: a named pipe on Windows, an abstract socket on
    /// Linux.
    Namespaced(String),
}

/// Classifies an address: anything with a path separator is a path, a bare word is a
/// namespaced name.
///
/// # Examples
///
/// ```
/// use ipcq_proto::{classify_addr, AddrKind};
///
/// assert!(matches!(classify_addr("/run/user/1000/ipcq.sock"), AddrKind::Path(_)));
/// assert_eq!(classify_addr("ipcq"), AddrKind::Namespaced("ipcq".into()));
/// ```
pub fn classify_addr(addr: &str) -> AddrKind {
    if addr.contains('/') || addr.contains('\\') {
        AddrKind::Path(PathBuf::from(addr))
    } else {
        AddrKind::Namespaced(addr.to_owned())
    }
}

/// The address to use: `IPCQ_ADDR` if it is set and not empty, else [`platform_addr`].
pub fn default_addr() -> String {
    match std::env::var(ADDR_ENV) {
        Ok(addr) if !addr.is_empty() => addr,
        _ => platform_addr(),
    }
}

/// The platform's default address, identical for broker and clients:
/// `$XDG_RUNTIME_DIR/ipcq.sock`, else `/tmp/ipcq-<uid>.sock` on Unix; the named pipe
/// `ipcq` on Windows.
pub fn platform_addr() -> String {
    #[cfg(unix)]
    {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir)
                .join("ipcq.sock")
                .to_string_lossy()
                .into_owned(),
            _ => format!("/tmp/ipcq-{}.sock", rustix::process::getuid().as_raw()),
        }
    }
    #[cfg(not(unix))]
    {
        "ipcq".to_owned()
    }
}
