//! What the examples share: finding a broker, or embedding one, and starting child
//! processes of the example itself.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use anyhow::Context;
use ipcq::broker::{Broker, Config};
use ipcq::{Client, Error};

/// Connects to the broker at the default address (`IPCQ_ADDR`, else the platform default),
/// starting one inside this process if none answers. Keep the returned broker alive for as
/// long as the children need it.
pub(crate) fn broker() -> anyhow::Result<(String, Option<Broker>)> {
    broker_at(&ipcq::default_addr())
}

/// Connects to the broker at `addr`, starting one inside this process if none answers.
pub(crate) fn broker_at(addr: &str) -> anyhow::Result<(String, Option<Broker>)> {
    let addr = addr.to_owned();
    match Client::connect(&addr) {
        Ok(_) => {
            println!("using the broker at {addr}");
            Ok((addr, None))
        }
        Err(Error::NoBroker { .. }) => {
            let broker =
                Broker::start(Config::new().addr(&addr)).context("starting an embedded broker")?;
            println!("no broker at {addr}: started one in this process");
            Ok((addr, Some(broker)))
        }
        Err(err) => Err(err.into()),
    }
}

/// Starts this example again as a child with `args`, talking to the broker at `addr`.
pub(crate) fn spawn(addr: &str, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(args)
        .env(ipcq::ADDR_ENV, addr)
        .stdin(Stdio::null())
        .spawn()
        .context("spawning a child process")
}

/// Waits for every child and fails if one failed.
pub(crate) fn wait_all(children: Vec<Child>) -> anyhow::Result<()> {
    for mut child in children {
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "a child process failed: {status}");
    }
    Ok(())
}
