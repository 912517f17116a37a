//! `ipcq-broker`: the broker process.
//!
//! Listens at `--addr` (default: `IPCQ_ADDR`, else the platform default) until SIGINT or
//! SIGTERM, then wakes every waiting client with an error, removes the socket and exits 0.

/// Gives memory freed after a burst of connections back to the system (see Cargo.toml).
#[cfg(not(windows))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use clap::Parser;
use ipcq::broker::{serve, Config};

#[derive(Debug, Parser)]
#[command(
    name = "ipcq-broker",
    version,
    about = "The ipcq broker: named queues for the processes of one machine"
)]
struct Args {
    /// Address to listen at (socket path; a bare word is a namespaced name).
    #[arg(long, env = "IPCQ_ADDR")]
    addr: Option<String>,
    /// Longest frame accepted, in bytes (bounds one item).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame_len: usize,
    /// Most client connections at once.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Most named objects at once.
    #[arg(long, default_value_t = 65_536)]
    max_objects: usize,
    /// Payload bytes one queue may hold before it counts as full.
    #[arg(long, default_value_t = 256 << 20)]
    max_queue_bytes: usize,
    /// Payload bytes all queues together may hold before every queue counts as full.
    #[arg(long, default_value_t = 1 << 30)]
    max_total_bytes: usize,
    /// Most requests waiting at once on one object (getters, putters, acquirers, ...).
    #[arg(long, default_value_t = 65_536)]
    max_waiters: usize,
    /// Bytes of answers one connection may leave unread before the broker stops reading its
    /// requests (until it catches up).
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES")]
    output_soft_limit: usize,
    /// Bytes of answers one connection may leave unread before it is dropped.
    #[arg(long, default_value_t = 128 << 20, value_name = "BYTES")]
    output_hard_limit: usize,
    /// Seconds a connection may stay over the soft output limit before it is dropped.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    output_soft_seconds: f64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also admit clients of this user id (repeatable; default: only the broker's own user
    /// and root).
    #[arg(long, value_name = "UID")]
    allow_uid: Vec<u32>,
    /// Also admit clients in this group id (repeatable).
    #[arg(long, value_name = "GID")]
    allow_gid: Vec<u32>,
    /// Serve every queue over the socket: no shared-memory rings.
    #[arg(long)]
    no_shm: bool,
    /// Bytes a shared-memory slot holds; larger items turn their queue over to the socket.
    #[arg(long, default_value_t = ipcq::broker::DEFAULT_SLOT_SIZE, value_name = "BYTES")]
    shm_slot_size: usize,
    /// Bytes all queues' shared-memory rings may take together.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    max_shm_bytes: usize,
    /// Log filter (overridden by RUST_LOG), e.g. `info`, `debug`, `ipcq_broker=trace`.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ipcq-broker: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log))
        .context("invalid log filter")?;
    // Colour only for a person at a terminal: not in files, pipes or journals.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();

    let mut config = Config::new()
        .max_frame_len(args.max_frame_len)
        .max_connections(args.max_connections)
        .max_objects(args.max_objects)
        .max_queue_bytes(args.max_queue_bytes)
        .max_total_bytes(args.max_total_bytes)
        .max_waiters(args.max_waiters)
        .output_limits(
            args.output_soft_limit,
            args.output_hard_limit,
            std::time::Duration::try_from_secs_f64(args.output_soft_seconds)
                .context("invalid --output-soft-seconds")?,
        )
        .shared_memory((!args.no_shm).then_some(args.shm_slot_size))
        .max_shared_bytes(args.max_shm_bytes);
    for uid in args.allow_uid {
        config = config.allow_uid(uid);
    }
    for gid in args.allow_gid {
        config = config.allow_gid(gid);
    }
    if let Some(addr) = args.addr {
        config = config.addr(addr);
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let served = runtime.block_on(async {
        let signal = shutdown_signal()?;
        serve(config, signal).await.map_err(anyhow::Error::from)
    });
    // A stop during start-up may leave the probe of an old socket running for a moment:
    // it is not waited for.
    runtime.shutdown_background();
    served
}

/// Completes on SIGINT or SIGTERM (Ctrl-C on Windows).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
