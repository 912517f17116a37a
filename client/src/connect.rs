//! How a client reaches a broker: time limits for connecting and the handshake, the
//! private directory of the default address, and the check of who serves the socket.

use std::time::Duration;

use crate::{Error, Result};

/// How long connecting and the handshake may take, unless set otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a client connects: how long it waits for the broker to accept and greet it, and
/// which users it trusts to serve the address.
///
/// By default a client waits [`DEFAULT_CONNECT_TIMEOUT`] and trusts only a broker run by
/// its own user or by root: before it sends anything, it reads the peer credentials of
/// the socket and refuses any other server with [`Error::Untrusted`]. A deliberate
/// cross-user setup (a broker run by a service user) names that user with
/// [`trust_uid`](ConnectOptions::trust_uid), as the broker names its clients with
/// `--allow-uid`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use ipcq_client::{Client, ConnectOptions};
///
/// let options = ConnectOptions::new().timeout(Duration::from_secs(1)).trust_uid(999);
/// let client = Client::connect_with("/run/ipcq/ipcq.sock", &options)?;
/// # Ok::<(), ipcq_client::Error>(())
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) timeout: Duration,
    pub(crate) trusted_uids: Vec<u32>,
    pub(crate) shared_memory: bool,
    #[cfg(feature = "nats")]
    pub(crate) nats: Option<NatsOptions>,
}

/// What sets up a NATS connection's options.
#[cfg(feature = "nats")]
pub(crate) type NatsOptions = std::sync::Arc<
    dyn Fn(ipcq_nats::async_nats::ConnectOptions) -> ipcq_nats::async_nats::ConnectOptions
        + Send
        + Sync,
>;

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: DEFAULT_CONNECT_TIMEOUT,
            trusted_uids: Vec::new(),
            shared_memory: true,
            #[cfg(feature = "nats")]
            nats: None,
        }
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut options = f.debug_struct("ConnectOptions");
        options
            .field("timeout", &self.timeout)
            .field("trusted_uids", &self.trusted_uids)
            .field("shared_memory", &self.shared_memory);
        #[cfg(feature = "nats")]
        options.field("nats", &self.nats.as_ref().map(|_| ".."));
        options.finish()
    }
}

impl ConnectOptions {
    /// The defaults: a 5 s time limit, and trust in this user and root only.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long connecting, the handshake and the first round trip may take together;
    /// past it, connecting fails with [`Error::NoAnswer`] (a broker that is stopped, or a
    /// listener that is not an ipcq broker). It does not limit later requests, whose time
    /// the broker keeps.
    ///
    /// Default: 5 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trusts a broker run by user `uid` (Unix). By default only a broker of this
    /// process's own user or of root is used. Ignored on Windows (see docs/broker.md).
    #[must_use]
    pub fn trust_uid(mut self, uid: u32) -> Self {
        self.trusted_uids.push(uid);
        self
    }

    /// Whether the blocking client moves a queue's items through the queue's ring in
    /// shared memory, where the broker shares one (Linux, a broker of this process's own
    /// user): puts and gets then make no system call while both sides are busy. Off, or
    /// where there is no ring, the socket serves the queue, with the same guarantees.
    ///
    /// Default: on.
    #[must_use]
    pub fn shared_memory(mut self, on: bool) -> Self {
        self.shared_memory = on;
        self
    }

    /// For `nats://` addresses (feature `nats`): sets the NATS connection's options —
    /// tokens, NKeys, credentials, TLS certificates, a name — as the `async-nats` crate
    /// takes them (re-exported as `ipcq_client::async_nats`). `set` is given the defaults
    /// and returns the options to use; the time limit is this `ConnectOptions`'s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use ipcq_client::{Client, ConnectOptions};
    ///
    /// let options = ConnectOptions::new()
    ///     .nats(|nats| nats.name("worker-7").user_and_password("ipcq".into(), "secret".into()));
    /// let client = Client::connect_with("tls://nats.example.com:4222", &options)?;
    /// # Ok::<(), ipcq_client::Error>(())
    /// ```
    #[cfg(feature = "nats")]
    #[must_use]
    pub fn nats(
        mut self,
        set: impl Fn(ipcq_nats::async_nats::ConnectOptions) -> ipcq_nats::async_nats::ConnectOptions
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.nats = Some(std::sync::Arc::new(set));
        self
    }
}

/// Whether `addr` names NATS servers rather than a local broker: `nats://` or `tls://`.
pub(crate) fn is_nats(addr: &str) -> bool {
    ["nats://", "tls://"]
        .iter()
        .any(|scheme| addr.starts_with(scheme))
}

/// The error for a NATS address in a build without the NATS backend.
#[cfg(not(feature = "nats"))]
pub(crate) fn nats_not_built(addr: &str) -> Error {
    Error::Unsupported(format!(
        "{addr} is a NATS address, and this program was built without ipcq's `nats` feature"
    ))
}

/// Checks, before anything is sent, that the process serving `stream` runs as this user,
/// root, or a user `options` trusts. On Unix the kernel reports the server's credentials
/// as of when it created the socket (`SO_PEERCRED`); on Windows the named pipe is created
/// by the broker with `FILE_FLAG_FIRST_PIPE_INSTANCE` and an owner-only security
/// descriptor, and the server's user is not checked by the client (docs/broker.md).
pub(crate) fn verify_server<S>(stream: &S, addr: &str, options: &ConnectOptions) -> Result<()>
where
    S: interprocess::local_socket::traits::StreamCommon,
{
    #[cfg(unix)]
    {
        let creds = stream.peer_creds().map_err(|err| {
            Error::Untrusted(format!(
                "cannot read who serves {addr}, so it is not used: {err}"
            ))
        })?;
        let Some(uid) = creds.euid() else {
            return Err(Error::Untrusted(format!(
                "the system does not report who serves {addr}, so it is not used"
            )));
        };
        let ours = rustix::process::geteuid().as_raw();
        if uid == ours || uid == 0 || options.trusted_uids.contains(&uid) {
            return Ok(());
        }
        let pid = creds
            .pid()
            .map(|pid| format!(" (pid {pid})"))
            .unwrap_or_default();
        Err(Error::Untrusted(format!(
            "{addr} is served by user {}{pid}, not by you ({}) or root: nothing was sent to it \
             (another user may have taken the address; to use a broker of that user on \
             purpose, trust it with ConnectOptions::trust_uid or `ipcq --trust-uid`)",
            user_name(uid),
            user_name(ours)
        )))
    }
    #[cfg(not(unix))]
    {
        let _ = (stream, addr, options);
        Ok(())
    }
}

/// Prepares the directory of the default address (see [`ipcq_proto::private_dir`]).
pub(crate) fn prepare(addr: &str) -> Result<()> {
    ipcq_proto::private_dir(addr).map_err(Error::Untrusted)
}

/// `uid 1000 (alice)`, or `uid 1000` when `/etc/passwd` does not name it.
#[cfg(unix)]
fn user_name(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    match name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// The error for a connection attempt that ran out of time at `what`.
pub(crate) fn no_answer(addr: &str, timeout: Duration, what: &str) -> Error {
    Error::NoAnswer {
        addr: addr.to_owned(),
        waited: timeout,
        what: what.to_owned(),
    }
}
