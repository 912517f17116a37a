//! The ticket office: 10 buyer processes sell tickets from a count kept in a JSON file,
//! each sale under an ipcq `Lock`. Exactly the available number of tickets is sold, never
//! one more, whatever the interleaving.
//!
//! ```text
//! cargo run --release --example lock_tickets
//! cargo run --release --example lock_tickets -- --tickets 500 --buyers 16
//! ```
//!
//! Unlike Python's `multiprocessing.Lock`, the lock lives in the broker: the buyers need
//! not descend from one parent, and a buyer killed while holding it does not block the
//! others — the next buyer gets the lock and is told its previous owner died.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use ipcq::Client;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "Buyer processes selling tickets under an ipcq Lock")]
struct Args {
    /// Tickets on sale.
    #[arg(long, default_value_t = 100)]
    tickets: u64,
    /// Buyer processes.
    #[arg(long, default_value_t = 10)]
    buyers: u64,
    /// Internal: run as a buyer on this office file.
    #[arg(long, hide = true)]
    buyer: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Office {
    left: u64,
    sold: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.buyer {
        Some(file) => buyer(file),
        None => office(&args),
    }
}

/// Buys tickets one at a time until none are left; prints how many it bought.
fn buyer(file: &PathBuf) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let lock = client.lock(&lock_name(file))?;
    let mut bought = 0;
    loop {
        let guard = lock.lock()?;
        if guard.owner_died() {
            eprintln!("a buyer died holding the lock; the office file is still whole");
        }
        let mut office: Office = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        if office.left == 0 {
            break;
        }
        office.left -= 1;
        office.sold += 1;
        std::fs::write(file, serde_json::to_string(&office)?)?;
        bought += 1;
    }
    println!("buyer {}: bought {bought}", std::process::id());
    Ok(())
}

fn office(args: &Args) -> anyhow::Result<()> {
    let (addr, _embedded) = common::broker()?;
    let dir = std::env::temp_dir().join(format!("ipcq-tickets-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("office.json");
    let office = Office {
        left: args.tickets,
        sold: 0,
    };
    std::fs::write(&file, serde_json::to_string(&office)?)?;
    let path = file.to_str().context("temporary path")?;
    let buyers = (0..args.buyers)
        .map(|_| common::spawn(&addr, &["--buyer", path]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    common::wait_all(buyers)?;
    let office: Office = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    std::fs::remove_dir_all(&dir)?;
    Client::connect(&addr)?.remove(&lock_name(&file))?;
    println!(
        "sold {} of {} tickets, {} left",
        office.sold, args.tickets, office.left
    );
    if office.sold != args.tickets || office.left != 0 {
        bail!("the lock did not keep the count right");
    }
    Ok(())
}

fn lock_name(file: &std::path::Path) -> String {
    format!("tickets:{}", file.display())
}
