//! A room for 4: 10 guest processes want in, an ipcq `Semaphore` of 4 permits keeps at
//! most 4 inside at once. Each guest notes arrivals and departures in a shared log under a
//! `Lock`, and the host reads the log back to show the most guests ever inside.
//!
//! ```text
//! cargo run --release --example semaphore_rooms
//! cargo run --release --example semaphore_rooms -- --guests 20 --room 3
//! ```
//!
//! A guest killed inside the room gives its place back: the broker returns the permits of
//! a client whose connection goes away.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use ipcq::Client;

#[derive(Debug, Parser)]
#[command(about = "Guest processes sharing a room through an ipcq Semaphore")]
struct Args {
    /// Guest processes.
    #[arg(long, default_value_t = 10)]
    guests: u64,
    /// Places in the room.
    #[arg(long, default_value_t = 4)]
    room: u64,
    /// Internal: run as a guest, logging to this file.
    #[arg(long, hide = true)]
    guest: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.guest {
        Some(log) => guest(log, args.room),
        None => host(&args),
    }
}

/// Enters, stays a moment, leaves; writes "in" and "out" lines to the log under the lock.
fn guest(log: &Path, places: u64) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let room = client.semaphore(&name("room", log), places)?;
    let pen = client.lock(&name("log", log))?;
    let note = |what: &str| -> anyhow::Result<()> {
        let _guard = pen.lock()?;
        let mut file = std::fs::OpenOptions::new().append(true).open(log)?;
        writeln!(file, "{what} {}", std::process::id())?;
        Ok(())
    };
    let _permit = room.acquire()?;
    note("in")?;
    // The stay: other guests come and go meanwhile.
    std::thread::sleep(Duration::from_millis(50));
    note("out")?;
    room.release()?;
    Ok(())
}

fn host(args: &Args) -> anyhow::Result<()> {
    let (addr, _embedded) = common::broker()?;
    let log = std::env::temp_dir().join(format!("ipcq-rooms-{}.log", std::process::id()));
    std::fs::write(&log, "")?;
    let path = log.to_str().context("temporary path")?;
    let places = args.room.to_string();
    let guests = (0..args.guests)
        .map(|_| common::spawn(&addr, &["--guest", path, "--room", &places]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    common::wait_all(guests)?;

    let mut inside = 0i64;
    let mut most = 0i64;
    for line in std::fs::read_to_string(&log)?.lines() {
        inside += if line.starts_with("in ") { 1 } else { -1 };
        most = most.max(inside);
        println!(
            "{line:<12} inside: {}",
            "#".repeat(usize::try_from(inside).unwrap_or(0))
        );
    }
    let client = Client::connect(&addr)?;
    client.remove(&name("room", &log))?;
    client.remove(&name("log", &log))?;
    std::fs::remove_file(&log)?;
    println!(
        "{} guests, a room for {}: at most {most} inside at once",
        args.guests, args.room
    );
    if most > i64::try_from(args.room)? || inside != 0 {
        bail!("the semaphore let too many in");
    }
    Ok(())
}

fn name(what: &str, log: &Path) -> String {
    format!("{what}:{}", log.display())
}
