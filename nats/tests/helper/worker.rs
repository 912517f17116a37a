//! A worker process for the NATS tests, which kill it: `ipcq-nats-test-worker ADDR QUEUE MODE`.
//!
//! - `lock`: takes the lock named QUEUE, prints `held`, and keeps it until killed.
//! - `hold N`: takes N deliveries, prints `holding`, and keeps them (its heartbeats going)
//!   until killed.
//! - `work`: takes deliveries until none comes for twice the ack wait (so that the jobs of
//!   killed workers, which come back after it, are taken too); prints `s ID` when it has
//!   one and `d ID` once its acknowledgement is confirmed.

use ipcq_nats::{Connection, Error};
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, name, mode, rest @ ..] = &args[..] else {
        return Err("usage: ipcq-nats-test-worker ADDR QUEUE hold N | work".into());
    };
    let connection = Connection::connect(addr).await?;
    let mut out = std::io::stdout().lock();
    if mode == "lock" {
        // QUEUE names the lock here.
        let lock = connection.lock(name).await?;
        let _guard = lock.acquire_timeout(None).await?.ok_or("not acquired")?;
        writeln!(out, "held")?;
        out.flush()?;
        std::future::pending::<()>().await;
    }
    let queue = connection.queue(name, 0).await?;
    match mode.as_str() {
        "hold" => {
            let count: usize = rest.first().ok_or("hold N")?.parse()?;
            let mut held = Vec::new();
            for _ in 0..count {
                held.push(queue.get_delivery_timeout(None).await?);
            }
            writeln!(out, "holding")?;
            out.flush()?;
            std::future::pending::<()>().await;
        }
        "work" => loop {
            let delivery = match queue
                .get_delivery_timeout(Some(ipcq_nats::ACK_WAIT * 2))
                .await
            {
                Ok(delivery) => delivery,
                Err(Error::Empty(_)) => return Ok(()),
                Err(err) => return Err(err.into()),
            };
            let id = u64::from_le_bytes(delivery.item()[..8].try_into()?);
            writeln!(out, "s {id}")?;
            out.flush()?;
            delivery.ack().await?;
            writeln!(out, "d {id}")?;
            out.flush()?;
        },
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
