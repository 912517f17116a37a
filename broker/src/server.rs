//! The listener: binding the socket, accepting clients, shutting down.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use interprocess::local_socket::tokio::{prelude::*, Listener, Stream};
use interprocess::local_socket::{GenericFilePath, GenericNamespaced, ListenerOptions};
use ipcq_proto::{AddrKind, ErrorCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::registry::Registry;
use crate::session::{self, Shared};
use crate::{Config, Error};

/// How long shutdown waits for connections to flush their last answers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a broker on the caller's tokio runtime until `shutdown` completes.
///
/// Binds `config`'s address (refusing if a live broker answers there, removing a stale
/// socket file), serves clients, and on `shutdown` stops accepting, wakes every parked
/// request with a "shutting down" error, lets connections flush, and removes the socket.
///
/// When nothing is at the address, it listens within the first poll, so a client may
/// connect as soon as the spawned future has run once. A file already there is first
/// probed, for up to about a second, on a blocking thread; `shutdown` completing meanwhile
/// ends start-up at once with `Ok(())`.
///
/// # Errors
///
/// [`Error::AddrInUse`] if a broker already answers on the address, [`Error::Listen`] if
/// the socket cannot be created, [`Error::InvalidConfig`] for an unusable configuration.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), ipcq_broker::Error> {
/// let config = ipcq_broker::Config::new().addr("/tmp/ipcq-example.sock");
/// ipcq_broker::serve(config, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let mut shutdown = std::pin::pin!(shutdown);
    let file_there = match ipcq_proto::classify_addr(&config.addr) {
        AddrKind::Path(path) => std::fs::symlink_metadata(path).is_ok(),
        AddrKind::Namespaced(_) => false,
    };
    if file_there {
        // Checking a socket file left at the address may take a moment (a listener that
        // never answers): a stop asked for meanwhile ends start-up at once.
        let prepared = tokio::task::spawn_blocking({
            let config = config.clone();
            move || prepare(&config)
        });
        tokio::select! {
            prepared = prepared => prepared.map_err(|err| Error::Listen {
                addr: config.addr.clone(),
                cause: std::io::Error::other(err),
            })??,
            () = &mut shutdown => {
                tracing::info!(addr = %config.addr, "stopped during start-up");
                return Ok(());
            }
        }
    } else {
        // Nothing to probe: listening starts within the first poll, as callers that
        // spawn `serve` and then connect expect.
        prepare(&config)?;
    }
    let listener = listen(&config)?;
    run(listener, config, shutdown).await;
    Ok(())
}

/// Creates the listening socket. Must run inside a tokio runtime.
pub(crate) fn bind(config: &Config) -> Result<Listener, Error> {
    prepare(config)?;
    listen(config)
}

/// Checks the configuration and makes the address ready to listen on: the private
/// directory of the default address, and no stale socket file (Unix); no pipe of that name
/// that someone serves (Windows). Blocks for at most a few seconds (the probe of an
/// existing socket or pipe).
fn prepare(config: &Config) -> Result<(), Error> {
    config.validate()?;
    let addr = config.addr.as_str();
    #[cfg(not(windows))]
    if let AddrKind::Path(path) = ipcq_proto::classify_addr(addr) {
        ipcq_proto::private_dir(addr).map_err(|why| Error::Listen {
            addr: addr.to_owned(),
            cause: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
        })?;
        clear_stale_socket(addr, &path)?;
    }
    #[cfg(windows)]
    refuse_served_pipe(addr)?;
    Ok(())
}

/// A pipe leaves nothing behind when its server dies, so there is nothing stale to clear
/// on Windows; but a pipe of that name that some process serves is probed as a socket file
/// is on Unix, so that a second broker says that one is already running (or that the name
/// is taken by something else) instead of sharing it. Creating the pipe with
/// `FILE_FLAG_FIRST_PIPE_INSTANCE` refuses it too, at the moment of creation, where the
/// system enforces that flag (Wine does not).
#[cfg(windows)]
fn refuse_served_pipe(addr: &str) -> Result<(), Error> {
    match who_answers(local_name(addr)?) {
        Answer::Broker => Err(Error::AddrInUse {
            addr: addr.to_owned(),
        }),
        Answer::Other => Err(Error::AddrTaken {
            addr: addr.to_owned(),
        }),
        Answer::Nobody => Ok(()),
    }
}

/// The local socket name of `addr`: a socket path or an abstract name, a pipe on Windows.
fn local_name(addr: &str) -> Result<interprocess::local_socket::Name<'static>, Error> {
    let name = match ipcq_proto::classify_addr(addr) {
        AddrKind::Path(path) => path.to_fs_name::<GenericFilePath>(),
        AddrKind::Namespaced(name) => name.to_ns_name::<GenericNamespaced>(),
    };
    name.map(|name| name.into_owned())
        .map_err(|cause| Error::Listen {
            addr: addr.to_owned(),
            cause,
        })
}

/// Listens on the address that [`prepare`] made ready.
fn listen(config: &Config) -> Result<Listener, Error> {
    let addr = config.addr.as_str();
    let listen_err = |cause| Error::Listen {
        addr: addr.to_owned(),
        cause,
    };
    let name = local_name(addr)?;
    let options = || {
        ListenerOptions::new()
            .name(name.borrow())
            .reclaim_name(true)
    };
    #[cfg(unix)]
    let listener = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        // Owner-only before the socket is reachable. Where the system cannot set the mode
        // at creation, it is set right after (see docs/broker.md).
        match options().mode(0o600).create_tokio() {
            Err(err) if err.kind() == std::io::ErrorKind::Unsupported => {
                let listener = options().create_tokio().map_err(listen_err)?;
                restrict_permissions(addr)?;
                Ok(listener)
            }
            other => other,
        }
    };
    #[cfg(windows)]
    let listener = {
        use interprocess::os::windows::local_socket::ListenerOptionsExt;
        // The first instance is created with FILE_FLAG_FIRST_PIPE_INSTANCE, so a pipe that
        // someone else created first under this name makes listening fail instead of
        // being joined.
        let descriptor = pipe_security().map_err(listen_err)?;
        options().security_descriptor(descriptor).create_tokio()
    };
    #[cfg(not(any(unix, windows)))]
    let listener = options().create_tokio();
    listener.map_err(|err| match err.kind() {
        std::io::ErrorKind::AddrInUse => Error::AddrInUse {
            addr: addr.to_owned(),
        },
        _ => listen_err(err),
    })
}

/// Who may open the broker's pipe (Windows), in the security descriptor string format: a
/// protected DACL (`P`: nothing inherited from elsewhere) that grants all access (`GA`) to
/// the pipe's owner (`OW`, the user running the broker) and to the system (`SY`), and to
/// no one else.
#[cfg(windows)]
const PIPE_SDDL: &str = "D:P(A;;GA;;;OW)(A;;GA;;;SY)";

/// The security descriptor every instance of the broker's pipe is created with.
#[cfg(windows)]
fn pipe_security(
) -> std::io::Result<interprocess::os::windows::security_descriptor::SecurityDescriptor> {
    let sddl = widestring::U16CString::from_str(PIPE_SDDL).map_err(std::io::Error::other)?;
    interprocess::os::windows::security_descriptor::SecurityDescriptor::deserialize(&sddl)
}

/// A socket file left by a broker that died is removed; one that a live broker answers on
/// is not: starting a second broker there is an error. The probe is bounded in time, so a
/// listener with a full backlog or one that never answers cannot hold up start-up (or a
/// signal to stop).
#[cfg(not(windows))]
fn clear_stale_socket(addr: &str, path: &std::path::Path) -> Result<(), Error> {
    let listen_err = |cause| Error::Listen {
        addr: addr.to_owned(),
        cause,
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(listen_err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; refusing to replace it",
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let name = path.to_fs_name::<GenericFilePath>().map_err(listen_err)?;
    tracing::info!(
        addr,
        "a socket file is at the address: checking whether a broker answers"
    );
    match who_answers(name) {
        Answer::Broker => Err(Error::AddrInUse {
            addr: addr.to_owned(),
        }),
        Answer::Other => Err(Error::AddrTaken {
            addr: addr.to_owned(),
        }),
        Answer::Nobody => {
            tracing::info!(addr, "removing stale socket file");
            std::fs::remove_file(path).map_err(listen_err)
        }
    }
}

/// Who serves an address that exists.
enum Answer {
    /// An ipcq broker: it greeted.
    Broker,
    /// Something that takes no connection in time, or does not greet as a broker.
    Other,
    /// Nothing takes connections there.
    Nobody,
}

/// Connects to `name` and waits for a greeting, each for at most [`PROBE_TIMEOUT`].
fn who_answers(name: interprocess::local_socket::Name<'_>) -> Answer {
    match probe_connect(name) {
        Ok(stream) => {
            if greets_as_broker(stream) {
                Answer::Broker
            } else {
                Answer::Other
            }
        }
        // Something holds the address but does not take connections in time.
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Answer::Other
        }
        Err(_) => Answer::Nobody,
    }
}

/// Connects to `name`, waiting at most [`PROBE_TIMEOUT`] for a server instance.
#[cfg(not(windows))]
fn probe_connect(
    name: interprocess::local_socket::Name<'_>,
) -> std::io::Result<interprocess::local_socket::Stream> {
    interprocess::local_socket::ConnectOptions::new()
        .name(name)
        .wait_mode(interprocess::ConnectWaitMode::Timeout(PROBE_TIMEOUT))
        .connect_sync()
}

/// Connects to `name`, waiting at most [`PROBE_TIMEOUT`] for a server instance. The wait
/// runs on a thread of its own: a pipe whose every instance is busy (a broker that has
/// just stopped, its last instance still closing) kept the wait for a free instance
/// blocked past its time limit under Wine (the second start of
/// `broker::embedded_broker_shutdown_wakes_waiters` hung in 13 runs of 20 under load). Not
/// answered in time, it counts as a timeout; the thread is left to end when the system
/// lets it.
#[cfg(windows)]
fn probe_connect(
    name: interprocess::local_socket::Name<'_>,
) -> std::io::Result<interprocess::local_socket::Stream> {
    let name = name.into_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let probe = interprocess::local_socket::ConnectOptions::new()
            .name(name)
            .wait_mode(interprocess::ConnectWaitMode::Timeout(PROBE_TIMEOUT))
            .connect_sync();
        let _ = tx.send(probe);
    });
    rx.recv_timeout(PROBE_TIMEOUT + PROBE_TIMEOUT / 2)
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no pipe instance of that name came free in time",
            ))
        })
}

/// How long the start-up probe of an existing socket waits to connect, and then for a
/// greeting.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the peer of `stream` sends an ipcq handshake within [`PROBE_TIMEOUT`].
fn greets_as_broker(stream: interprocess::local_socket::Stream) -> bool {
    use interprocess::local_socket::traits::Stream as _;
    if stream.set_recv_timeout(Some(PROBE_TIMEOUT)).is_ok() {
        return reads_a_greeting(&stream);
    }
    // A named pipe has no read timeout: the read goes to a thread, which is waited for at
    // most that long (and left behind, blocked until the other side closes, if it never
    // answers: the broker is about to exit with an error then).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(reads_a_greeting(&stream));
    });
    rx.recv_timeout(PROBE_TIMEOUT).unwrap_or(false)
}

/// Reads from `stream` until it has a frame, and says whether that is an ipcq broker's
/// greeting; false if the stream ends, fails, or [`PROBE_TIMEOUT`] passes.
fn reads_a_greeting(stream: &interprocess::local_socket::Stream) -> bool {
    use std::io::Read;
    let mut buf = bytes::BytesMut::new();
    let mut chunk = [0u8; 64];
    let start = std::time::Instant::now();
    while start.elapsed() < PROBE_TIMEOUT {
        match ipcq_proto::decode_frame(&mut buf, ipcq_proto::MAX_HANDSHAKE_LEN) {
            Ok(Some(frame)) => {
                return ipcq_proto::decode::<ipcq_proto::Hello>(frame)
                    .is_ok_and(|(hello, _)| hello.magic == ipcq_proto::MAGIC);
            }
            Ok(None) => {}
            Err(_) => return false,
        }
        match (&*stream).read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    false
}

#[cfg(unix)]
fn restrict_permissions(addr: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(addr, std::fs::Permissions::from_mode(0o600)).map_err(|cause| {
        Error::Listen {
            addr: addr.to_owned(),
            cause,
        }
    })
}

/// Serves `listener` until `shutdown` completes.
pub(crate) async fn run(listener: Listener, config: Config, shutdown: impl Future<Output = ()>) {
    let shared = Arc::new(Shared {
        registry: Registry::new(&config),
        max_frame_len: config.max_frame_len,
        output: config.output(),
        tickets: crate::share::Tickets::default(),
    });
    // Connections past the limit are accepted only to be told why they are refused; the
    // permit travels with the session and is returned when it ends.
    let permits = Arc::new(Semaphore::new(config.max_connections));
    // Sessions watch this to learn of shutdown.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every session holds a clone of `done_tx`; when `done_rx` yields `None`, all have ended.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let next_id = AtomicU64::new(1);
    // Refused connections are told why by a short task each; at most this many at once, so
    // a flood of them holds few descriptors. Past it they are closed without a word.
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let mut warnings = Warnings::default();

    tracing::info!(addr = %config.addr, "broker listening");
    let accept = async {
        let mut backoff = Duration::from_millis(1);
        loop {
            let stream = match listener.accept().await {
                Ok(stream) => {
                    backoff = Duration::from_millis(1);
                    stream
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait, never stop accepting.
                    if warnings.allow() {
                        tracing::error!(cause = %err, "accept failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let refused = match admit(&stream, &config) {
                Err(why) => Some((ErrorCode::Denied, why, "not admitted")),
                Ok(()) => None,
            };
            let permit = match refused {
                Some(_) => None,
                None => Arc::clone(&permits).try_acquire_owned().ok(),
            };
            let refused = refused.or_else(|| {
                permit.is_none().then(|| {
                    let why = format!(
                        "the broker serves at most {} connections",
                        config.max_connections
                    );
                    (ErrorCode::LimitReached, why, "limit reached")
                })
            });
            if let Some((code, why, what)) = refused {
                if warnings.allow() {
                    tracing::warn!(peer = id, reason = %why, "connection refused: {what}");
                }
                // Told why if there is room for one more refusal in progress; else closed.
                if let Ok(slot) = Arc::clone(&refusals).try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream, code, why).await;
                        drop(slot);
                    });
                }
                continue;
            }
            let Some(permit) = permit else { continue };
            let pid = peer_pid(&stream);
            let stream = Arc::new(stream);
            let port = crate::share::Port::of(&stream);
            let (reader, writer) = (SharedStream(Arc::clone(&stream)), SharedStream(stream));
            let shared = Arc::clone(&shared);
            let stop = stop_rx.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                session::run(id, pid, port, reader, writer, shared, stop).await;
                drop(permit);
                drop(done);
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
    tracing::info!("broker shutting down");
    drop(listener);
    shared.registry.shut_down();
    let _ = stop_tx.send(true);
    drop(done_tx);
    if tokio::time::timeout(DRAIN_TIMEOUT, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    tracing::info!(
        bytes_dropped = shared.registry.bytes_used(),
        "broker stopped"
    );
}

/// Most refused connections being told why at once.
const MAX_REFUSALS: usize = 64;

/// Most warnings about refused connections (or failed accepts) logged per second; past
/// it, one line a second says how many were not logged.
const WARNINGS_PER_SECOND: u32 = 10;

/// Rate limit for the accept loop's warnings: a flood of refused connections must not
/// become a flood of log lines.
#[derive(Debug, Default)]
struct Warnings {
    window: Option<tokio::time::Instant>,
    logged: u32,
    suppressed: u64,
}

impl Warnings {
    /// Whether to log one more warning now.
    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let fresh = self
            .window
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            if self.suppressed > 0 {
                tracing::warn!(
                    count = self.suppressed,
                    "connections refused (or accepts failed) without a log line in the last second"
                );
            }
            self.window = Some(now);
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < WARNINGS_PER_SECOND {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Tells a refused client why it is turned away.
async fn refuse(stream: Stream, code: ErrorCode, message: String) {
    let mut writer = stream;
    // Take the client's handshake first: closing a socket with unread data resets the
    // connection, and the client could lose the explanation below. A client checks the
    // broker before it greets, so its handshake comes at once.
    let mut hello = [0u8; 64];
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::AsyncReadExt::read(&mut writer, &mut hello),
    )
    .await;
    let mut frame = Vec::new();
    let max = ipcq_proto::MAX_HANDSHAKE_LEN;
    let hello = ipcq_proto::Hello::new(1024);
    let fatal = ipcq_proto::BrokerMsg::Fatal(ipcq_proto::ErrorReply::new(code, message));
    if ipcq_proto::encode(&hello, 0, max, &mut frame).is_ok()
        && ipcq_proto::encode(&fatal, 0, max, &mut frame).is_ok()
    {
        let _ = writer.write_all(&frame).await;
        let _ = writer.shutdown().await;
    }
}

/// Whether the peer of `stream` may use this broker: on Unix, its effective user is the
/// broker's, root, or allowed, or one of its groups is allowed. Credentials that cannot be
/// read are a refusal. On Windows the pipe's security descriptor has already decided.
#[cfg(unix)]
fn admit(stream: &Stream, config: &Config) -> Result<(), String> {
    let creds = stream
        .peer_creds()
        .map_err(|err| format!("the client's credentials cannot be read: {err}"))?;
    let Some(uid) = creds.euid() else {
        return Err("the system does not report the client's user".into());
    };
    let ours = rustix::process::geteuid().as_raw();
    if uid == ours || uid == 0 || config.allow_uids.contains(&uid) {
        return Ok(());
    }
    let groups = creds
        .egid()
        .into_iter()
        .chain(creds.groups().unwrap_or(&[]).iter().copied());
    if groups
        .into_iter()
        .any(|gid| config.allow_gids.contains(&gid))
    {
        return Ok(());
    }
    Err(format!(
        "user {uid} may not use this broker (it admits user {ours}, root, and those allowed with --allow-uid/--allow-gid)"
    ))
}

#[cfg(not(unix))]
fn admit(_stream: &Stream, _config: &Config) -> Result<(), String> {
    Ok(())
}

/// The client's process, for stats (who holds a lock); 0 where the system does not say.
/// On Windows it is the pipe client's process (`GetNamedPipeClientProcessId`).
// A pid is an i32 on Unix and already a u32 on Windows.
#[allow(clippy::useless_conversion)]
fn peer_pid(stream: &Stream) -> u32 {
    stream
        .peer_creds()
        .ok()
        .and_then(|creds| creds.pid())
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or(0)
}

/// One half of a connection: `&Stream` reads and writes, so both halves share the stream
/// rather than splitting it, and the socket closes when both are gone.
#[derive(Debug, Clone)]
struct SharedStream(Arc<Stream>);

impl tokio::io::AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        (*self.0).is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut &*self.0).poll_shutdown(cx)
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    use interprocess::os::windows::security_descriptor::AsSecurityDescriptorExt;

    /// The descriptor the pipe is created with, read back from the system: owner and
    /// system only, nothing inherited.
    #[test]
    fn the_pipe_admits_its_owner_and_the_system_only() {
        const DACL_SECURITY_INFORMATION: u32 = 4;
        let descriptor = super::pipe_security().expect("the descriptor is valid");
        let dacl = descriptor
            .serialize(DACL_SECURITY_INFORMATION, |sddl| sddl.to_string_lossy())
            .expect("serialized");
        assert_eq!(dacl, super::PIPE_SDDL);
    }
}
