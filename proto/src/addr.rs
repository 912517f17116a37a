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
/// `$XDG_RUNTIME_DIR/ipcq.sock`, else `/tmp/ipcq-<uid>/ipcq.sock` on Unix (a directory the
/// user owns with mode 0700, see [`private_dir`]); the named pipe `ipcq` on Windows.
pub fn platform_addr() -> String {
    #[cfg(unix)]
    {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir)
                .join("ipcq.sock")
                .to_string_lossy()
                .into_owned(),
            _ => fallback_dir()
                .join("ipcq.sock")
                .to_string_lossy()
                .into_owned(),
        }
    }
    #[cfg(not(unix))]
    {
        "ipcq".to_owned()
    }
}

/// The directory of the default address when `XDG_RUNTIME_DIR` is not set:
/// `/tmp/ipcq-<uid>`. `/tmp` is writable by everyone, so the socket never lies in it
/// directly: another user could create it first.
#[cfg(unix)]
fn fallback_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/ipcq-{}", rustix::process::geteuid().as_raw()))
}

/// Makes sure that the directory holding the socket `addr` is private, when `addr` is the
/// platform default's fallback (`/tmp/ipcq-<uid>/...`): creates it with mode 0700 if it is
/// missing, and checks that it is a directory (not a symbolic link), owned by this user,
/// that no one else may enter. Broker and clients both call it before they use the
/// address, so whichever comes first creates the directory and another user cannot have
/// prepared it for them. Other addresses are left as they are (their protection is the
/// peer-credential check on every connection).
///
/// # Errors
///
/// A message that names the directory and what is wrong with it.
pub fn private_dir(addr: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let dir = fallback_dir();
        if PathBuf::from(addr).parent() != Some(dir.as_path()) {
            return Ok(());
        }
        let shown = dir.display();
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(format!("cannot create {shown}: {err}")),
        }
        let meta = std::fs::symlink_metadata(&dir).map_err(|err| format!("{shown}: {err}"))?;
        if !meta.file_type().is_dir() {
            return Err(format!(
                "{shown} is not a directory (a symbolic link or a file): ipcq will not use it; \
                 remove it or set IPCQ_ADDR"
            ));
        }
        let ours = rustix::process::geteuid().as_raw();
        if meta.uid() != ours {
            return Err(format!(
                "{shown} belongs to user {}, not to you (user {ours}): ipcq will not use it; \
                 remove it or set IPCQ_ADDR",
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            // Ours: make it private again rather than refuse.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|err| format!("cannot make {shown} private (mode 0700): {err}"))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = addr;
        Ok(())
    }
}
