//! The main job: producer processes feed a pool of consumer processes through one bounded
//! queue, as with Python's `multiprocessing.Queue`, but between processes that only share
//! a queue name.
//!
//! The parent re-executes itself as P producers and C consumers. Producers put
//! `Some(job)`; when they are done the parent puts one `None` per consumer (the sentinel),
//! and each consumer stops at its `None`. Consumers report every job they processed on a
//! second queue, and the parent checks that each job was processed exactly once.
//!
//! ```text
//! cargo run --release --example producer_consumer               # embedded broker
//! cargo run --release --example producer_consumer -- --jobs 1000000 --producers 2 --consumers 4
//! IPCQ_ADDR=/tmp/q.sock cargo run --release --example producer_consumer   # a running ipcq-broker
//! cargo run --release --example producer_consumer -- --addr nats://127.0.0.1:4222 --consumers 2 --jobs 5000
//! ```
//!
//! If no broker answers at the address (`--addr`, else `IPCQ_ADDR`, else the platform
//! default), the parent starts one inside itself and says so. A `nats://` address runs the
//! same program on NATS JetStream (a `nats-server -js` must be running there).

#[path = "common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ipcq::{Client, Error, QueueOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "Producers and consumers in separate processes, meeting at an ipcq queue")]
struct Args {
    /// Producer processes.
    #[arg(long, short = 'p', default_value_t = 2)]
    producers: u64,
    /// Consumer processes.
    #[arg(long, short = 'c', default_value_t = 4)]
    consumers: u64,
    /// Jobs in all.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    jobs: u64,
    /// Capacity of the job queue.
    #[arg(long, default_value_t = 1000)]
    capacity: usize,
    /// Where the queues live: a broker's socket, or `nats://host:port` (default:
    /// `IPCQ_ADDR`, else the platform's default address).
    #[arg(long)]
    addr: Option<String>,
    /// Internal: the role of a child process.
    #[arg(long, hide = true)]
    role: Option<String>,
    /// Internal: the run's queue-name prefix.
    #[arg(long, hide = true)]
    run: Option<String>,
    /// Internal: a producer's first job id.
    #[arg(long, hide = true, default_value_t = 0)]
    first: u64,
    /// Internal: a producer's job count.
    #[arg(long, hide = true, default_value_t = 0)]
    count: u64,
}

/// A unit of work.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
    text: String,
}

/// What a consumer reports for each job.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    job: u64,
    worker: u32,
    words: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.role.as_deref() {
        None => parent(&args),
        Some("producer") => producer(&args),
        Some("consumer") => consumer(&args),
        Some(other) => bail!("unknown role {other}"),
    }
}

/// The run's two queues. On a local broker they are auto-delete: the parent opens them
/// first and holds them to the end, and when the last process of the run exits (or dies)
/// they go with whatever is left in them, so a failed run leaves nothing behind in a
/// long-running broker. NATS streams outlive their clients (there is no auto-delete): the
/// parent removes them at the end.
fn queues(
    client: &Client,
    run: &str,
    capacity: usize,
) -> ipcq::Result<(ipcq::Queue<Option<Job>>, ipcq::Queue<Done>)> {
    let options = QueueOptions::new().auto_delete(!is_nats(client.addr()));
    Ok((
        client.queue_with(&format!("{run}-jobs"), options.capacity(capacity))?,
        client.queue_with(&format!("{run}-done"), options)?,
    ))
}

fn is_nats(addr: &str) -> bool {
    addr.starts_with("nats://") || addr.starts_with("tls://")
}

fn producer(args: &Args) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let run = args.run.as_deref().context("--run")?;
    let (jobs, _) = queues(&client, run, args.capacity)?;
    for id in args.first..args.first + args.count {
        let text = format!("job {id} has {} words in it", id % 7 + 3);
        jobs.put(&Some(Job { id, text }))?;
    }
    Ok(())
}

fn consumer(args: &Args) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let run = args.run.as_deref().context("--run")?;
    let (jobs, done) = queues(&client, run, args.capacity)?;
    let worker = std::process::id();
    while let Some(job) = jobs.get()? {
        let words = job.text.split_whitespace().count() as u64;
        done.put(&Done {
            job: job.id,
            worker,
            words,
        })?;
    }
    Ok(())
}

fn parent(args: &Args) -> anyhow::Result<()> {
    if args.producers == 0 || args.consumers == 0 {
        bail!("need at least one producer and one consumer");
    }
    // Use the broker at the address if one answers, else embed one for this run.
    let (addr, _embedded) = match &args.addr {
        Some(addr) if is_nats(addr) => (addr.clone(), None),
        Some(addr) => common::broker_at(addr)?,
        None => common::broker()?,
    };
    let client = Client::connect(&addr)?;
    let run = format!("producer-consumer-{}", std::process::id());
    let (jobs, done) = queues(&client, &run, args.capacity)?;
    let result = run_jobs(args, &addr, &run, &jobs, &done);
    if is_nats(&addr) {
        for queue in [jobs.name(), done.name()] {
            client.remove(queue)?;
        }
    }
    result
}

fn run_jobs(
    args: &Args,
    addr: &str,
    run: &str,
    jobs: &ipcq::Queue<Option<Job>>,
    done: &ipcq::Queue<Done>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let spawn = |role: &str, extra: &[String]| -> anyhow::Result<Child> {
        Command::new(std::env::current_exe()?)
            .args([
                "--role",
                role,
                "--run",
                run,
                "--capacity",
                &args.capacity.to_string(),
            ])
            .args(extra)
            .env(ipcq::ADDR_ENV, addr)
            .stdin(Stdio::null())
            .spawn()
            .context("spawning a child process")
    };
    let consumers = (0..args.consumers)
        .map(|_| spawn("consumer", &[]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let share = args.jobs.div_ceil(args.producers);
    let producers = (0..args.producers)
        .map(|p| {
            let first = p * share;
            let count = share.min(args.jobs.saturating_sub(first));
            spawn(
                "producer",
                &[
                    "--first".into(),
                    first.to_string(),
                    "--count".into(),
                    count.to_string(),
                ],
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Collect reports while the children work, so the report queue stays short.
    let mut seen = vec![0u8; usize::try_from(args.jobs)?];
    let mut workers = std::collections::BTreeMap::<u32, u64>::new();
    let mut received = 0u64;
    let mut children: Vec<Child> = producers.into_iter().chain(consumers).collect();
    while received < args.jobs {
        match done.get_many_timeout(1024, Duration::from_millis(200)) {
            Ok(reports) => {
                for report in reports {
                    *seen
                        .get_mut(usize::try_from(report.job)?)
                        .context("unknown job id")? += 1;
                    *workers.entry(report.worker).or_default() += 1;
                    received += 1;
                }
            }
            // Nothing for a while: make sure nobody died.
            Err(Error::Empty) => {
                for child in &mut children {
                    if let Some(status) = child.try_wait()? {
                        if !status.success() {
                            bail!("a child process failed: {status}");
                        }
                    }
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    // The producers are done: one sentinel per consumer ends the pool.
    for _ in 0..args.consumers {
        jobs.put(&None)?;
    }
    for child in &mut children {
        let status = child.wait()?;
        if !status.success() {
            bail!("a child process failed: {status}");
        }
    }
    let elapsed = started.elapsed();

    let missing = seen.iter().filter(|&&n| n == 0).count();
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    println!(
        "{} jobs through {} producer and {} consumer processes in {:.2?}: {:.0} jobs/s",
        args.jobs,
        args.producers,
        args.consumers,
        elapsed,
        args.jobs as f64 / elapsed.as_secs_f64()
    );
    let shares: Vec<String> = workers.values().map(u64::to_string).collect();
    println!("jobs per consumer: {}", shares.join(", "));
    if missing != 0 || duplicated != 0 {
        bail!("{missing} jobs were lost and {duplicated} processed more than once");
    }
    println!("every job was processed exactly once");
    Ok(())
}
