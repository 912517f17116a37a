//! A traffic light: one light process turns an ipcq `Event` green (set) and red (clear);
//! car processes wait for green, cross, and come round again. Cars never cross on red.
//!
//! ```text
//! cargo run --release --example event_traffic_light
//! cargo run --release --example event_traffic_light -- --cars 6 --rounds 5
//! ```

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use ipcq::Client;

#[derive(Debug, Parser)]
#[command(about = "A light process and car processes sharing an ipcq Event")]
struct Args {
    /// Car processes.
    #[arg(long, default_value_t = 4)]
    cars: u64,
    /// Crossings per car.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Internal: run as the light, or as a car.
    #[arg(long, hide = true)]
    role: Option<String>,
    /// Internal: the run's object names.
    #[arg(long, hide = true, default_value = "")]
    run: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.role.as_deref() {
        Some("light") => light(&args.run),
        Some("car") => car(&args.run, args.rounds),
        Some(other) => bail!("unknown role {other}"),
        None => junction(&args),
    }
}

/// Green for 60 ms, red for 40 ms, until the junction says the cars are all through.
fn light(run: &str) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let green = client.event(&format!("{run}:green"))?;
    let done = client.event(&format!("{run}:done"))?;
    let mut cycles = 0;
    while !done.is_set()? {
        green.set()?;
        println!("light: green");
        std::thread::sleep(Duration::from_millis(60));
        green.clear()?;
        println!("light: red");
        cycles += 1;
        // Red lasts until the time is up or the cars are done, whichever is first.
        done.wait_timeout(Duration::from_millis(40))?;
    }
    green.set()?;
    println!("light: off after {cycles} cycles");
    Ok(())
}

/// Waits for green, crosses, drives round, `rounds` times.
fn car(run: &str, rounds: u64) -> anyhow::Result<()> {
    let client = Client::connect_default()?;
    let green = client.event(&format!("{run}:green"))?;
    for round in 1..=rounds {
        green.wait()?;
        println!("car {}: crossing ({round}/{rounds})", std::process::id());
        // Round the block and back to the light.
        std::thread::sleep(Duration::from_millis(80));
    }
    Ok(())
}

fn junction(args: &Args) -> anyhow::Result<()> {
    let (addr, _embedded) = common::broker()?;
    let run = format!("traffic-{}", std::process::id());
    let client = Client::connect(&addr)?;
    let done = client.event(&format!("{run}:done"))?;
    let light = common::spawn(&addr, &["--role", "light", "--run", &run])?;
    let rounds = args.rounds.to_string();
    let cars = (0..args.cars)
        .map(|_| {
            common::spawn(
                &addr,
                &["--role", "car", "--run", &run, "--rounds", &rounds],
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    common::wait_all(cars)?;
    done.set()?;
    common::wait_all(vec![light])?;
    client.remove(&format!("{run}:green"))?;
    client.remove(&format!("{run}:done"))?;
    println!("{} cars crossed {} times each", args.cars, args.rounds);
    Ok(())
}
