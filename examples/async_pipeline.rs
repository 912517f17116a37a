//! A three-stage pipeline on the tokio client: a source task, transform processes, and a
//! sink task, joined by two bounded queues and ended by `close()`.
//!
//! ```text
//! source (task) --raw--> transform (2 processes x 4 tasks) --cooked--> sink (task)
//! ```
//!
//! The source puts the numbers `0..n` and closes `raw`. Each transform task takes numbers
//! until `raw` is closed and drained (`Error::Closed`), and puts what it made of them on
//! `cooked`. Once every transform process has exited, the parent closes `cooked`, and the
//! sink, which takes until it is closed and drained, checks that every number came
//! through exactly once.
//!
//! ```text
//! cargo run --release --example async_pipeline                  # embedded broker
//! cargo run --release --example async_pipeline -- --items 1000000 --transforms 3
//! IPCQ_ADDR=/tmp/q.sock cargo run --release --example async_pipeline   # a running ipcq-broker
//! ```
//!
//! If no broker answers at the address, the parent serves one on its own tokio runtime
//! (`ipcq::broker::serve`) for as long as the pipeline runs.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use clap::Parser;
use ipcq::tokio::Client;
use ipcq::Error;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "source -> transform processes -> sink, on the tokio client")]
struct Args {
    /// Numbers to send through.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    items: u64,
    /// Transform processes.
    #[arg(long, default_value_t = 2)]
    transforms: u32,
    /// Tasks per transform process.
    #[arg(long, default_value_t = 4)]
    tasks: u32,
    /// Internal: run as a transform process for this run's queues.
    #[arg(long, hide = true)]
    transform: Option<String>,
}

/// What the transform stage makes of a number.
#[derive(Debug, Serialize, Deserialize)]
struct Cooked {
    n: u64,
    square: u64,
    by: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.transform {
        Some(run) => transform(run, args.tasks).await,
        None => parent(&args).await,
    }
}

async fn parent(args: &Args) -> anyhow::Result<()> {
    let addr = ipcq::default_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let embedded = match Client::connect(&addr).await {
        Ok(_) => {
            println!("using the broker at {addr}");
            None
        }
        Err(Error::NoBroker { .. }) => {
            let config = ipcq::broker::Config::new().addr(&addr);
            let served = tokio::spawn(ipcq::broker::serve(config, async {
                let _ = stopped.await;
            }));
            println!("no broker at {addr}: serving one on this runtime");
            Some(served)
        }
        Err(err) => return Err(err.into()),
    };
    let client = connect(&addr).await?;
    let run = format!("pipeline-{}", std::process::id());
    let raw = client.queue::<u64>(&format!("{run}.raw"), 256).await?;
    let cooked = client
        .queue::<Cooked>(&format!("{run}.cooked"), 256)
        .await?;
    let started = Instant::now();

    let transforms = (0..args.transforms)
        .map(|_| {
            tokio::process::Command::new(std::env::current_exe()?)
                .args(["--transform", &run, "--tasks", &args.tasks.to_string()])
                .env(ipcq::ADDR_ENV, &addr)
                .stdin(Stdio::null())
                .spawn()
                .context("spawning a transform process")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let items = args.items;
    let source = tokio::spawn({
        let raw = raw.clone();
        async move {
            for n in 0..items {
                raw.put(&n).await?;
            }
            // End of stream: the transforms drain what is left, then get `Closed`.
            raw.close().await
        }
    });
    let sink = tokio::spawn({
        let cooked = cooked.clone();
        async move {
            let mut seen = vec![false; usize::try_from(items)?];
            let mut workers = std::collections::HashSet::new();
            loop {
                match cooked.get().await {
                    Ok(c) => {
                        ensure!(c.square == c.n * c.n, "bad square for {}", c.n);
                        let slot = seen
                            .get_mut(usize::try_from(c.n)?)
                            .context("a number that was never sent")?;
                        ensure!(!*slot, "{} came through twice", c.n);
                        *slot = true;
                        workers.insert(c.by);
                    }
                    Err(Error::Closed) => break,
                    Err(err) => return Err(err.into()),
                }
            }
            ensure!(seen.iter().all(|&s| s), "numbers were lost");
            anyhow::Ok(workers.len())
        }
    });

    source.await??;
    for mut child in transforms {
        let status = child.wait().await?;
        ensure!(status.success(), "a transform process failed: {status}");
    }
    cooked.close().await?;
    let workers = sink.await??;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{items} numbers through 3 stages in {secs:.2} s ({:.0}/s), {workers} transform processes took part, none lost or repeated",
        items as f64 / secs
    );
    client.remove(&format!("{run}.raw")).await?;
    client.remove(&format!("{run}.cooked")).await?;
    if let Some(served) = embedded {
        drop(client);
        let _ = stop.send(());
        served.await??;
    }
    Ok(())
}

async fn transform(run: &str, tasks: u32) -> anyhow::Result<()> {
    let client = Client::connect_default().await?;
    let raw = client.queue::<u64>(&format!("{run}.raw"), 256).await?;
    let cooked = client
        .queue::<Cooked>(&format!("{run}.cooked"), 256)
        .await?;
    let by = std::process::id();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (raw, cooked) = (raw.clone(), cooked.clone());
            tokio::spawn(async move {
                loop {
                    match raw.get().await {
                        Ok(n) => {
                            let square = n * n;
                            cooked.put(&Cooked { n, square, by }).await?;
                        }
                        Err(Error::Closed) => return anyhow::Ok(()),
                        Err(err) => return Err(err.into()),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    // Everything put is in the socket unless it was full; make sure before exiting.
    client.flush().await?;
    Ok(())
}

/// Connects, retrying while a broker just spawned on this runtime starts listening.
async fn connect(addr: &str) -> anyhow::Result<Client> {
    for _ in 0..1000 {
        match Client::connect(addr).await {
            Ok(client) => return Ok(client),
            Err(Error::NoBroker { .. }) => tokio::task::yield_now().await,
            Err(err) => return Err(err.into()),
        }
    }
    bail!("the embedded broker did not start listening at {addr}")
}
