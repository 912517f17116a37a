//! A pool of worker processes, as `multiprocessing.Pool.apply_async`, whose jobs survive
//! their worker: the parent puts jobs on a joinable queue; each worker takes a job as a
//! delivery, puts its result on a second queue, and acknowledges the job only then; the
//! parent `join`s the job queue — it returns exactly when every job is acknowledged — and
//! collects the results, keyed by job id.
//!
//! ```text
//! cargo run --release --example worker_pool
//! cargo run --release --example worker_pool -- --workers 8 --jobs 2000
//! cargo run --release --example worker_pool -- --kill-one
//! ```
//!
//! With `--kill-one`, the parent kills one worker (SIGKILL on Unix) while it holds a job:
//! the broker puts the job back at the head of the queue, marked as redelivered, another
//! worker does it, and every job still has its result. A job whose worker died after
//! putting the result but before acknowledging it is done twice (at-least-once): results
//! are keyed by job id, and the run counts such repeats.
//!
//! Workers take one job at a time (`set_prefetch(1)`), so a slow job never holds others
//! back in a busy worker's buffer.

#[path = "common/mod.rs"]
mod common;

use anyhow::bail;
use clap::Parser;
use ipcq::Client;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "A pool of worker processes fed by an ipcq joinable queue")]
struct Args {
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    workers: u64,
    /// Jobs: find the primes below each number.
    #[arg(long, default_value_t = 200)]
    jobs: u64,
    /// Kill one worker in the middle of a job; the others finish its work.
    #[arg(long)]
    kill_one: bool,
    /// Internal: run as a worker for this run.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
    below: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    id: u64,
    primes: u64,
    worker: u32,
    /// The job had been delivered before: a worker died (or let go of it) mid-job.
    redelivered: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.worker {
        Some(run) => worker(run),
        None => parent(&args),
    }
}

type Queues = (
    ipcq::Queue<Option<Job>>,
    ipcq::Queue<Answer>,
    ipcq::Queue<u32>,
);

/// The jobs, the answers, and the workers' "I have started a job" (their pids).
fn queues(client: &Client, run: &str) -> ipcq::Result<Queues> {
    Ok((
        client.queue(&format!("{run}:jobs"), 64)?,
        client.queue(&format!("{run}:answers"), 0)?,
        client.queue(&format!("{run}:started"), 0)?,
    ))
}

/// Takes jobs as deliveries until it gets `None`, acknowledging each once its answer is
/// out.
fn worker(run: &str) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let (jobs, answers, started) = queues(&client, run)?;
    jobs.set_prefetch(1);
    loop {
        let delivery = jobs.get_delivery()?;
        let Some(job) = delivery.item() else {
            delivery.ack()?;
            return Ok(());
        };
        started.put(&std::process::id())?;
        let primes = (2..job.below).filter(|&n| is_prime(n)).count() as u64;
        answers.put(&Answer {
            id: job.id,
            primes,
            worker: std::process::id(),
            redelivered: delivery.is_redelivered(),
        })?;
        // Done: the job leaves the queue, and counts as done for `join`.
        delivery.ack()?;
    }
}

fn parent(args: &Args) -> anyhow::Result<()> {
    let (addr, _embedded) = common::broker()?;
    let run = format!("pool-{}", std::process::id());
    let client = Client::connect(&addr)?;
    let (jobs, answers, started) = queues(&client, &run)?;
    let mut workers = (0..args.workers)
        .map(|_| common::spawn(&addr, &["--worker", &run]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for id in 0..args.jobs {
        jobs.put(&Some(Job {
            id,
            below: 1000 + id * 37 % 5000,
        }))?;
    }
    let mut alive = workers.len();
    if args.kill_one && alive > 1 {
        // The first worker to say it started a job dies with it.
        let pid = started.get()?;
        if let Some(at) = workers.iter().position(|w| w.id() == pid) {
            let mut victim = workers.swap_remove(at);
            // SIGKILL on Unix, TerminateProcess on Windows: no chance to answer.
            let killed = victim.kill();
            victim.wait()?;
            killed?;
            alive -= 1;
            println!("killed worker {pid} in the middle of a job");
        }
    }
    // Returns when every job is acknowledged: a killed worker's job went back to the
    // queue and was done by another.
    jobs.join()?;
    println!("all {} jobs done", args.jobs);
    for _ in 0..alive {
        jobs.put(&None)?;
    }
    common::wait_all(workers)?;
    // Every answer is in: take them all, keyed by job id.
    let mut results = std::collections::BTreeMap::<u64, Answer>::new();
    let (mut repeats, mut redelivered) = (0, 0);
    while let Ok(answer) = answers.get_nowait() {
        redelivered += u64::from(answer.redelivered);
        if results.insert(answer.id, answer).is_some() {
            repeats += 1;
        }
    }
    client.remove(jobs.name())?;
    client.remove(answers.name())?;
    client.remove(started.name())?;

    if results.keys().copied().ne(0..args.jobs) {
        bail!("a job has no answer");
    }
    let mut per_worker = std::collections::BTreeMap::<u32, u64>::new();
    for answer in results.values() {
        *per_worker.entry(answer.worker).or_default() += 1;
    }
    let total: u64 = results.values().map(|answer| answer.primes).sum();
    let shares: Vec<String> = per_worker.values().map(u64::to_string).collect();
    println!(
        "{} jobs answered, {total} primes counted; jobs per worker: {}",
        results.len(),
        shares.join(", ")
    );
    println!("{redelivered} answers came from redelivered jobs; {repeats} jobs were done twice");
    Ok(())
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
