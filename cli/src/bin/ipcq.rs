//! `ipcq`: the command line. Speaks to the broker at `--addr` / `IPCQ_ADDR` and sees
//! queues as raw bytes. An address `nats://host:port` is a NATS server with JetStream, whose
//! queues the same commands list, fill, empty, close and remove (through the client's NATS
//! backend).
//!
//! Exit codes: 0 success; 1 the queue was empty (`get --nowait`, `get --timeout`) or full;
//! 2 any other error (no broker, no such queue, bad arguments, ...).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ipcq::stats::{ObjectDetail, ObjectStats};
use ipcq::{Client, ConnectOptions, Error, QueueOptions};
use ipcq_cli::stats::Rates;

#[derive(Debug, Parser)]
#[command(name = "ipcq", version, about = "Talk to an ipcq broker")]
struct Args {
    /// Broker address (default: IPCQ_ADDR, else the platform default).
    #[arg(long, global = true, env = "IPCQ_ADDR")]
    addr: Option<String>,
    /// Seconds to wait for the broker to accept and greet (and for answers that need no
    /// waiting, such as ping and stats).
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Also trust a broker run by this user id (default: only your own user and root).
    #[arg(long, global = true, value_name = "UID")]
    trust_uid: Vec<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the broker answers.
    Ping,
    /// List every object with its figures.
    Stats {
        /// Machine-readable output.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Refresh every second, with put and get rates, until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Create QUEUE (bounded to CAPACITY items, 0 for unbounded) if it does not exist.
    Create {
        /// Queue name.
        queue: String,
        /// Most items the queue holds; 0 for unbounded.
        #[arg(long, default_value_t = 0)]
        capacity: usize,
    },
    /// Put VALUE (its UTF-8 bytes) on QUEUE, waiting for room.
    Put {
        /// Queue name; it must exist unless --create is given.
        queue: String,
        /// The item.
        value: String,
        /// Fail at once if the queue is full.
        #[arg(long, conflicts_with = "timeout")]
        nowait: bool,
        /// Wait at most this many seconds for room.
        #[arg(long)]
        timeout: Option<f64>,
        /// Create the queue if it does not exist (with --capacity, default unbounded).
        #[arg(long)]
        create: bool,
        /// Capacity of a queue that --create creates.
        #[arg(long, requires = "create", default_value_t = 0)]
        capacity: usize,
    },
    /// Take an item from QUEUE and print it, waiting for one.
    Get {
        /// Queue name; it must exist unless --create is given.
        queue: String,
        /// Wait at most this many seconds.
        #[arg(long, conflicts_with = "nowait")]
        timeout: Option<f64>,
        /// Fail at once if the queue is empty.
        #[arg(long)]
        nowait: bool,
        /// Create the queue if it does not exist (unbounded), to wait for its first item.
        #[arg(long)]
        create: bool,
    },
    /// Close QUEUE: later puts fail, getters take what is left and then get "closed".
    Close {
        /// Queue name.
        queue: String,
    },
    /// Remove an object: its items are dropped and its waiters get "closed".
    Rm {
        /// Object name.
        name: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = args.addr.clone().unwrap_or_else(ipcq::default_addr);
    match run(&addr, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ipcq: {err}");
            match err {
                Failure::Empty(_) | Failure::Full(_) => ExitCode::from(1),
                Failure::Other(_) => ExitCode::from(2),
            }
        }
    }
}

#[derive(Debug)]
enum Failure {
    Empty(String),
    Full(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Failure::Empty(msg) | Failure::Full(msg) | Failure::Other(msg)) = self;
        f.write_str(msg)
    }
}

fn run(addr: &str, args: &Args) -> Result<(), Failure> {
    let connect_timeout = seconds(args.connect_timeout)?;
    // Requests wait as long as the broker says; this bounds the whole command against a
    // broker that stops answering (it was stopped, or the machine froze): a command that
    // can wait (a get or put without --nowait) gets its own time on top. Exiting closes the
    // connection, and the broker takes back anything it had handed over.
    let waits = match &args.command {
        Command::Put {
            nowait, timeout, ..
        }
        | Command::Get {
            nowait, timeout, ..
        } => match (nowait, timeout) {
            (true, _) => Some(Duration::ZERO),
            (false, Some(secs)) => Some(seconds(*secs)?),
            (false, None) => None,
        },
        // Listing many objects takes many answers; a mute broker is caught by the connect
        // time limit, and a stopped one by the user.
        Command::Stats { .. } => None,
        _ => Some(Duration::ZERO),
    };
    if let Some(waits) = waits {
        let limit = connect_timeout + connect_timeout + waits;
        let addr = addr.to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("ipcq: no answer from the broker at {addr} within {limit:?}");
            std::process::exit(2);
        });
    }
    let mut options = ConnectOptions::new().timeout(connect_timeout);
    for &uid in &args.trust_uid {
        options = options.trust_uid(uid);
    }
    let client =
        Client::connect_with(addr, &options).map_err(|err| Failure::Other(err.to_string()))?;
    let fail = |what: &str, err: Error| match err {
        Error::Empty => Failure::Empty(format!("queue '{what}' is empty")),
        Error::Full => Failure::Full(format!("queue '{what}' is full")),
        Error::Closed => Failure::Other(format!("queue '{what}' is closed")),
        other => Failure::Other(other.to_string()),
    };
    match &args.command {
        Command::Ping => {
            let start = Instant::now();
            client.ping().map_err(|err| fail("", err))?;
            println!("broker at {addr} answered in {:?}", start.elapsed());
        }
        Command::Stats { json, watch } => {
            if *watch {
                return watch_stats(&client);
            }
            let stats = client.stats().map_err(|err| fail("", err))?;
            if *json {
                println!("{}", ipcq_cli::stats::json(&stats));
            } else {
                print!("{}", ipcq_cli::stats::render(&stats, None));
            }
        }
        Command::Create { queue, capacity } => {
            client
                .raw_queue(queue, *capacity)
                .map_err(|err| fail(queue, err))?;
        }
        Command::Put {
            queue,
            value,
            nowait,
            timeout,
            create,
            capacity,
        } => {
            let handle = open(&client, queue, create.then_some(*capacity))?;
            let result = match (nowait, timeout) {
                (true, _) => handle.put_nowait(value.as_bytes()),
                (_, Some(secs)) => handle.put_timeout(value.as_bytes(), seconds(*secs)?),
                _ => handle.put(value.as_bytes()),
            };
            result.map_err(|err| fail(queue, err))?;
        }
        Command::Get {
            queue,
            timeout,
            nowait,
            create,
        } => {
            let handle = open(&client, queue, create.then_some(0))?;
            // One item at a time: what this command does not print stays in the queue.
            handle.set_prefetch(1);
            let result = match (nowait, timeout) {
                (true, _) => handle.get_nowait(),
                (_, Some(secs)) => handle.get_timeout(seconds(*secs)?),
                _ => handle.get(),
            };
            print_item(&result.map_err(|err| fail(queue, err))?)?;
        }
        Command::Close { queue } => {
            let handle = open(&client, queue, None)?;
            handle.close().map_err(|err| fail(queue, err))?;
        }
        Command::Rm { name } => client.remove(name).map_err(|err| fail(name, err))?,
    }
    Ok(())
}

/// Opens an existing queue with whatever options it has. A queue that does not exist is
/// an error, unless `create` gives the capacity to create it with: a typo must not leave a
/// queue behind, nor fix an unbounded capacity that a program would then conflict with.
fn open(client: &Client, name: &str, create: Option<usize>) -> Result<ipcq::RawQueue, Failure> {
    let options = match client.lookup(name) {
        Ok(object) => match object.detail {
            ObjectDetail::Queue(queue) => QueueOptions::new()
                .capacity(usize::try_from(queue.capacity).unwrap_or(usize::MAX))
                .auto_delete(queue.auto_delete),
            _ => return Err(Failure::Other(format!("'{name}' is not a queue"))),
        },
        Err(Error::NotFound(_)) => match create {
            Some(capacity) => QueueOptions::new().capacity(capacity),
            None => {
                return Err(Failure::Other(format!(
                    "no queue is named '{name}' (create it with `ipcq create {name} \
                     --capacity N`, or pass --create)"
                )))
            }
        },
        Err(err) => return Err(Failure::Other(err.to_string())),
    };
    client
        .raw_queue_with(name, options)
        .map_err(|err| Failure::Other(err.to_string()))
}

/// `stats` every second, with the rates since the previous refresh, until interrupted.
fn watch_stats(client: &Client) -> Result<(), Failure> {
    let mut previous: Option<(Instant, Vec<ObjectStats>)> = None;
    loop {
        let stats = client
            .stats()
            .map_err(|err| Failure::Other(err.to_string()))?;
        let now = Instant::now();
        let rates = previous.as_ref().map(|(then, before)| Rates {
            seconds: now.duration_since(*then).as_secs_f64(),
            before,
        });
        let mut out = std::io::stdout().lock();
        // Clear the terminal and go home, as `watch` does.
        let _ = write!(out, "\x1b[2J\x1b[H");
        let _ = out.flush();
        drop(out);
        print!("{}", ipcq_cli::stats::render(&stats, rates.as_ref()));
        previous = Some((now, stats));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Writes an item taken by `get`, and a newline, to stdout.
fn print_item(item: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(item)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    written.map_err(|err| Failure::Other(format!("cannot write the item: {err}")))
}

fn seconds(secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Failure::Other(format!("invalid timeout: {secs}")))
}
