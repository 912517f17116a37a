//! `ipcq`: the command line. Speaks to the broker at `--addr` / `IPCQ_ADDR` and sees
//! queues as raw bytes.
//!
//! Exit codes: 0 success; 1 the queue was empty (`get --nowait`, `get --timeout`) or full;
//! 2 any other error (no broker, bad arguments, ...).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipcq::stats::{
    BarrierStats, EventStats, ObjectDetail, ObjectStats, PermitStats, PipeStats, QueueStats,
};
use ipcq::{Client, Error};

#[derive(Debug, Parser)]
#[command(version, about = "Talk to an ipcq broker")]
struct Args {
    /// Broker address (default: IPCQ_ADDR, else the platform default).
    #[arg(long, global = true, env = "IPCQ_ADDR")]
    addr: Option<String>,
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
        #[arg(long)]
        json: bool,
    },
    /// Put VALUE (its UTF-8 bytes) on QUEUE, waiting for room.
    Put {
        /// Queue name (created unbounded if it does not exist).
        queue: String,
        /// The item.
        value: String,
        /// Fail at once if the queue is full.
        #[arg(long, conflicts_with = "timeout")]
        nowait: bool,
        /// Wait at most this many seconds for room.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Take an item from QUEUE and print it, waiting for one.
    Get {
        /// Queue name (created unbounded if it does not exist).
        queue: String,
        /// Wait at most this many seconds.
        #[arg(long, conflicts_with = "nowait")]
        timeout: Option<f64>,
        /// Fail at once if the queue is empty.
        #[arg(long)]
        nowait: bool,
    },
    /// Remove an object: its items are dropped and its waiters get "closed".
    Rm {
        /// Object name.
        name: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = args.addr.unwrap_or_else(ipcq::default_addr);
    match run(&addr, args.command) {
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

fn run(addr: &str, command: Command) -> Result<(), Failure> {
    let client = Client::connect(addr).map_err(|err| Failure::Other(err.to_string()))?;
    let fail = |what: &str, err: Error| match err {
        Error::Empty => Failure::Empty(format!("queue '{what}' is empty")),
        Error::Full => Failure::Full(format!("queue '{what}' is full")),
        Error::Closed => Failure::Other(format!("queue '{what}' is closed")),
        other => Failure::Other(other.to_string()),
    };
    match command {
        Command::Ping => {
            let start = std::time::Instant::now();
            client.ping().map_err(|err| fail("", err))?;
            println!("broker at {addr} answered in {:?}", start.elapsed());
        }
        Command::Stats { json } => {
            let stats = client.stats().map_err(|err| fail("", err))?;
            if json {
                println!("{}", stats_json(&stats));
            } else {
                print_stats(&stats);
            }
        }
        Command::Put {
            queue,
            value,
            nowait,
            timeout,
        } => {
            let handle = open(&client, &queue)?;
            let result = match (nowait, timeout) {
                (true, _) => handle.put_nowait(value.as_bytes()),
                (_, Some(secs)) => handle.put_timeout(value.as_bytes(), seconds(secs)?),
                _ => handle.put(value.as_bytes()),
            };
            result.map_err(|err| fail(&queue, err))?;
        }
        Command::Get {
            queue,
            timeout,
            nowait,
        } => {
            let handle = open(&client, &queue)?;
            let result = match (nowait, timeout) {
                (true, _) => handle.get_nowait(),
                (_, Some(secs)) => handle.get_timeout(seconds(secs)?),
                _ => handle.get(),
            };
            let item = result.map_err(|err| fail(&queue, err))?;
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(&item)
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush());
            written.map_err(|err| Failure::Other(format!("cannot write the item: {err}")))?;
        }
        Command::Rm { name } => client.remove(&name).map_err(|err| fail(&name, err))?,
    }
    Ok(())
}

/// Opens a queue with whatever capacity it has: an existing queue is found by trying the
/// capacity the broker reports for it; a new one is created unbounded.
fn open(client: &Client, name: &str) -> Result<ipcq::RawQueue, Failure> {
    let stats = client
        .stats()
        .map_err(|err| Failure::Other(err.to_string()))?;
    let capacity = stats
        .iter()
        .find(|object| object.name == name)
        .map(|object| match &object.detail {
            ObjectDetail::Queue(queue) => Ok(usize::try_from(queue.capacity).unwrap_or(usize::MAX)),
            _ => Err(Failure::Other(format!("'{name}' is not a queue"))),
        })
        .transpose()?
        .unwrap_or(0);
    client
        .raw_queue(name, capacity)
        .map_err(|err| Failure::Other(err.to_string()))
}

fn seconds(secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Failure::Other(format!("invalid timeout: {secs}")))
}

fn print_stats(stats: &[ObjectStats]) {
    if stats.is_empty() {
        println!("no objects");
        return;
    }
    let queues: Vec<(&str, &QueueStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Queue(q) => Some((object.name.as_str(), q)),
            _ => None,
        })
        .collect();
    let pipes: Vec<(&str, &PipeStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Pipe(p) => Some((object.name.as_str(), p)),
            _ => None,
        })
        .collect();
    let limit = |capacity: u64| {
        if capacity == 0 {
            "-".to_string()
        } else {
            capacity.to_string()
        }
    };
    if !queues.is_empty() {
        let columns = [
            "queue",
            "depth",
            "capacity",
            "in-flight",
            "reserved",
            "getters",
            "putters",
            "put",
            "got",
            "bytes",
        ];
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>12} {:>12} {:>10}  state",
            columns[0],
            columns[1],
            columns[2],
            columns[3],
            columns[4],
            columns[5],
            columns[6],
            columns[7],
            columns[8],
            columns[9]
        );
        for (name, q) in queues {
            println!(
                "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>12} {:>12} {:>10}  {}",
                name,
                q.ready,
                limit(q.capacity),
                q.in_flight,
                q.reserved,
                q.getters,
                q.putters,
                q.total_put,
                q.total_got,
                q.bytes,
                if q.closed { "closed" } else { "open" }
            );
        }
    }
    let permits: Vec<(&str, &str, &PermitStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Lock(p) => Some((object.name.as_str(), "lock", p)),
            ObjectDetail::Semaphore(p) => Some((object.name.as_str(), "semaphore", p)),
            _ => None,
        })
        .collect();
    if !permits.is_empty() {
        let columns = ["lock or semaphore", "kind", "permits", "free", "waiters"];
        println!(
            "{:<24} {:<10} {:>8} {:>8} {:>8}  holders (connection ids)",
            columns[0], columns[1], columns[2], columns[3], columns[4]
        );
        for (name, kind, p) in permits {
            let holders: Vec<String> = p.holders.iter().map(u64::to_string).collect();
            println!(
                "{:<24} {:<10} {:>8} {:>8} {:>8}  {}",
                name,
                kind,
                p.permits,
                p.free,
                p.waiters,
                if holders.is_empty() {
                    "-".to_string()
                } else {
                    holders.join(" ")
                }
            );
        }
    }
    let events: Vec<(&str, &EventStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Event(e) => Some((object.name.as_str(), e)),
            _ => None,
        })
        .collect();
    if !events.is_empty() {
        println!("{:<24} {:<6} {:>8}", "event", "state", "waiters");
        for (name, e) in events {
            println!(
                "{:<24} {:<6} {:>8}",
                name,
                if e.set { "set" } else { "clear" },
                e.waiters
            );
        }
    }
    let barriers: Vec<(&str, &BarrierStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Barrier(b) => Some((object.name.as_str(), b)),
            _ => None,
        })
        .collect();
    if !barriers.is_empty() {
        println!("{:<24} {:>8} {:>8}  state", "barrier", "parties", "waiting");
        for (name, b) in barriers {
            println!(
                "{:<24} {:>8} {:>8}  {}",
                name,
                b.parties,
                b.waiting,
                if b.broken { "broken" } else { "ok" }
            );
        }
    }
    if !pipes.is_empty() {
        let columns = [
            "pipe", "mode", "capacity", "to end 0", "to end 1", "end 0", "end 1",
        ];
        println!(
            "{:<24} {:<7} {:>9} {:>9} {:>9}  {:<7} {:<7}",
            columns[0], columns[1], columns[2], columns[3], columns[4], columns[5], columns[6]
        );
        let end = |held: bool, closed: bool| match (held, closed) {
            (_, true) => "closed",
            (true, false) => "held",
            (false, false) => "free",
        };
        for (name, p) in pipes {
            println!(
                "{:<24} {:<7} {:>9} {:>9} {:>9}  {:<7} {:<7}",
                name,
                if p.duplex { "duplex" } else { "simplex" },
                limit(p.capacity),
                p.buffered[0],
                p.buffered[1],
                end(p.held[0], p.closed[0]),
                end(p.held[1], p.closed[1]),
            );
        }
    }
}

fn stats_json(stats: &[ObjectStats]) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = stats
        .iter()
        .map(|object| match &object.detail {
            ObjectDetail::Queue(q) => serde_json::json!({
                "name": object.name,
                "kind": "queue",
                "depth": q.ready,
                "in_flight": q.in_flight,
                "capacity": q.capacity,
                "bytes": q.bytes,
                "getters": q.getters,
                "putters": q.putters,
                "total_put": q.total_put,
                "total_got": q.total_got,
                "closed": q.closed,
                "reserved": q.reserved,
            }),
            ObjectDetail::Pipe(p) => serde_json::json!({
                "name": object.name,
                "kind": "pipe",
                "duplex": p.duplex,
                "capacity": p.capacity,
                "buffered": p.buffered,
                "held": p.held,
                "closed": p.closed,
            }),
            ObjectDetail::Lock(p) | ObjectDetail::Semaphore(p) => serde_json::json!({
                "name": object.name,
                "kind": if matches!(object.detail, ObjectDetail::Lock(_)) { "lock" } else { "semaphore" },
                "permits": p.permits,
                "free": p.free,
                "holders": p.holders,
                "waiters": p.waiters,
            }),
            ObjectDetail::Event(e) => serde_json::json!({
                "name": object.name,
                "kind": "event",
                "set": e.set,
                "waiters": e.waiters,
            }),
            ObjectDetail::Barrier(b) => serde_json::json!({
                "name": object.name,
                "kind": "barrier",
                "parties": b.parties,
                "waiting": b.waiting,
                "broken": b.broken,
            }),
        })
        .collect();
    serde_json::json!({ "objects": objects })
}
