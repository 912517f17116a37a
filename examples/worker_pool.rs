//! A pool of worker processes, as `multiprocessing.Pool.apply_async`: the parent puts jobs
//! on a joinable queue, workers take them, put results on a second queue and mark each job
//! done; the parent `join`s the job queue — it returns exactly when the last job is done —
//! and collects the results.
//!
//! ```text
//! cargo run --release --example worker_pool
//! cargo run --release --example worker_pool -- --workers 8 --jobs 2000
//! ```
//!
//! Workers take one job at a time (`set_prefetch(1)`), so a slow job never holds others
//! back in a busy worker's buffer; a worker killed mid-job gives its job back to the queue.

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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.worker {
        Some(run) => worker(run),
        None => parent(&args),
    }
}

fn queues(
    client: &Client,
    run: &str,
) -> ipcq::Result<(ipcq::Queue<Option<Job>>, ipcq::Queue<Answer>)> {
    Ok((
        client.queue(&format!("{run}:jobs"), 64)?,
        client.queue(&format!("{run}:answers"), 0)?,
    ))
}

/// Takes jobs until it gets `None`, answering each and marking it done.
fn worker(run: &str) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let (jobs, answers) = queues(&client, run)?;
    jobs.set_prefetch(1);
    while let Some(job) = jobs.get()? {
        let primes = (2..job.below).filter(|&n| is_prime(n)).count() as u64;
        answers.put(&Answer {
            id: job.id,
            primes,
            worker: std::process::id(),
        })?;
        jobs.task_done()?;
    }
    jobs.task_done()?;
    Ok(())
}

fn parent(args: &Args) -> anyhow::Result<()> {
    let (addr, _embedded) = common::broker()?;
    let run = format!("pool-{}", std::process::id());
    let client = Client::connect(&addr)?;
    let (jobs, answers) = queues(&client, &run)?;
    let workers = (0..args.workers)
        .map(|_| common::spawn(&addr, &["--worker", &run]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for id in 0..args.jobs {
        jobs.put(&Some(Job {
            id,
            below: 1000 + id * 37 % 5000,
        }))?;
    }
    // Returns when every job put so far has been marked done.
    jobs.join()?;
    println!("all {} jobs done", args.jobs);
    let mut results = answers.get_many(usize::try_from(args.jobs)?)?;
    while (results.len() as u64) < args.jobs {
        results.extend(answers.get_many(usize::try_from(args.jobs)?)?);
    }
    for _ in 0..args.workers {
        jobs.put(&None)?;
    }
    common::wait_all(workers)?;
    client.remove(jobs.name())?;
    client.remove(answers.name())?;

    results.sort_by_key(|answer| answer.id);
    let mut per_worker = std::collections::BTreeMap::<u32, u64>::new();
    for answer in &results {
        *per_worker.entry(answer.worker).or_default() += 1;
    }
    let ids: Vec<u64> = results.iter().map(|answer| answer.id).collect();
    if ids != (0..args.jobs).collect::<Vec<_>>() {
        bail!("an answer is missing or repeated");
    }
    let total: u64 = results.iter().map(|answer| answer.primes).sum();
    let shares: Vec<String> = per_worker.values().map(u64::to_string).collect();
    println!(
        "{} answers, {total} primes counted; jobs per worker: {}",
        results.len(),
        shares.join(", ")
    );
    Ok(())
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
