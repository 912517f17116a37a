//! A pipe between a parent and a child process, as Python's `multiprocessing.Pipe`: they
//! play ping-pong over the two ends; then the child exits, and the parent, reading on,
//! sees end of file (Python's `EOFError`): a peer that is gone closes its end.
//!
//! ```text
//! cargo run --release --example pipe_ping_pong              # embedded broker
//! cargo run --release --example pipe_ping_pong -- --rounds 100000
//! ```
//!
//! If no broker answers at the address (`IPCQ_ADDR`, else the platform default), the
//! parent starts one inside itself and says so.

#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use ipcq::{Client, End, Error};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "Ping-pong over an ipcq pipe between two processes")]
struct Args {
    /// Round trips.
    #[arg(long, default_value_t = 10_000)]
    rounds: u64,
    /// Internal: run as the child, on this pipe.
    #[arg(long, hide = true)]
    child: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Message {
    Ping(u64),
    Pong(u64),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.child {
        Some(pipe) => child(pipe, args.rounds),
        None => parent(args.rounds),
    }
}

/// Answers `rounds` pings, then exits: its end of the pipe closes with its connection.
fn child(pipe: &str, rounds: u64) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let end = client.pipe::<Message>(pipe, End::One)?;
    for _ in 0..rounds {
        match end.recv()? {
            Message::Ping(n) => end.send(&Message::Pong(n))?,
            other => bail!("unexpected {other:?}"),
        }
    }
    println!("child: answered {rounds} pings, exiting");
    Ok(())
}

fn parent(rounds: u64) -> anyhow::Result<()> {
    let (addr, _embedded) = common::broker()?;
    let client = Client::connect(&addr)?;
    let name = format!("ping-pong-{}", std::process::id());
    let end = client.pipe::<Message>(&name, End::Zero)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", &name, "--rounds", &rounds.to_string()])
        .env(ipcq::ADDR_ENV, &addr)
        .spawn()
        .context("spawning the child")?;

    let start = Instant::now();
    for n in 0..rounds {
        end.send(&Message::Ping(n))?;
        let answer = end.recv()?;
        if answer != Message::Pong(n) {
            bail!("expected Pong({n}), got {answer:?}");
        }
    }
    let elapsed = start.elapsed();
    println!(
        "parent: {rounds} round trips in {elapsed:.2?}, {:.1} µs each",
        elapsed.as_secs_f64() * 1e6 / rounds.max(1) as f64
    );
    if !child.wait()?.success() {
        bail!("the child failed");
    }
    // The child is gone: what it sent has been read, and reading on is end of file.
    match end.recv() {
        Err(Error::Closed) => println!("parent: the child's end is closed: end of file"),
        other => bail!("expected end of file, got {other:?}"),
    }
    client.remove(&name)?;
    Ok(())
}
