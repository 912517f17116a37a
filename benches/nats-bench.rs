//! ipcq's `Client` on NATS (`nats://` addresses) against raw async-nats doing the same
//! work, in interleaved rounds.
//!
//! ```text
//! cargo bench --bench nats-bench -- [ROUNDS] [ITEMS]
//! ```
//!
//! All sides use a work-queue stream with the same bound and discard-new, a durable pull
//! consumer with explicit acks, and the same round trips per item: a publish whose
//! acknowledgement is awaited (ipcq's `put` returns once the server stored the item), then
//! a pull of one message and an acknowledgement confirmed by the server (ipcq's plain
//! `get` returns once the ack was recorded). Each round runs raw async-nats, ipcq's tokio
//! client and ipcq's blocking client, in a rotating order, on one nats-server; the figures
//! are the medians over rounds of each client's rate over raw's.

#[path = "../nats/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use ipcq_client::async_nats::{
    self,
    jetstream::{self, consumer, stream},
};

const CAPACITY: usize = 100_000;

/// Items per second: (puts, gets).
type Rates = (f64, f64);

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let rounds: usize = args.next().map_or(5, |n| n.parse().expect("ROUNDS"));
    let items: usize = args.next().map_or(5_000, |n| n.parse().expect("ITEMS"));
    let server = common::NatsServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut ratios: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        let mut rates: [Option<Rates>; 3] = [None; 3];
        for side in (0..3).map(|k| (k + round) % 3) {
            let addr = server.addr.as_str();
            rates[side] = Some(match side {
                0 => runtime.block_on(raw_round(addr, round, items)),
                1 => runtime.block_on(tokio_round(addr, round, items)),
                _ => std::thread::scope(|s| {
                    s.spawn(|| blocking_round(addr, round, items))
                        .join()
                        .expect("the blocking round")
                }),
            });
        }
        let [raw, tokio, blocking] = rates.map(|rate| rate.expect("ran"));
        println!(
            "round {}/{rounds}: put raw {:.0}/s tokio {:.0}/s blocking {:.0}/s; \
             get raw {:.0}/s tokio {:.0}/s blocking {:.0}/s",
            round + 1,
            raw.0,
            tokio.0,
            blocking.0,
            raw.1,
            tokio.1,
            blocking.1
        );
        ratios[0].push(tokio.0 / raw.0);
        ratios[1].push(tokio.1 / raw.1);
        ratios[2].push(blocking.0 / raw.0);
        ratios[3].push(blocking.1 / raw.1);
    }
    println!(
        "\n{rounds} interleaved rounds of {items} 64-byte items; ipcq's rate / raw async-nats's:"
    );
    let names = ["tokio put", "tokio get", "blocking put", "blocking get"];
    for (what, ratios) in names.iter().zip(&mut ratios) {
        ratios.sort_by(f64::total_cmp);
        println!(
            "{what}: median {:.2}x (min {:.2} - max {:.2})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

fn payload(i: usize) -> Bytes {
    let mut item = vec![0u8; 64];
    item[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(item)
}

/// Items per second through raw async-nats.
async fn raw_round(addr: &str, round: usize, items: usize) -> Rates {
    let client = async_nats::connect(addr).await.expect("connect");
    let js = jetstream::new(client);
    let subject = format!("raw.{round}");
    let stream = js
        .get_or_create_stream(stream::Config {
            name: format!("RAW_{round}"),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: i64::try_from(CAPACITY).expect("fits"),
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("stream");
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            "raw",
            consumer::pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let start = Instant::now();
    for i in 0..items {
        js.publish(subject.clone(), payload(i))
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let put = items as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..items {
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("pull");
        let message = batch.next().await.expect("a message").expect("a message");
        message.double_ack().await.expect("ack");
    }
    let get = items as f64 / start.elapsed().as_secs_f64();
    (put, get)
}

/// Items per second through ipcq's tokio client.
async fn tokio_round(addr: &str, round: usize, items: usize) -> Rates {
    let client = ipcq_client::tokio::Client::connect(addr)
        .await
        .expect("connect");
    let queue = client
        .raw_queue(&format!("bench-tokio-{round}"), CAPACITY)
        .await
        .expect("queue");
    let start = Instant::now();
    for i in 0..items {
        queue.put_nowait(&payload(i)).await.expect("put");
    }
    let put = items as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..items {
        queue.get().await.expect("get");
    }
    let get = items as f64 / start.elapsed().as_secs_f64();
    (put, get)
}

/// Items per second through ipcq's blocking client.
fn blocking_round(addr: &str, round: usize, items: usize) -> Rates {
    let client = ipcq_client::Client::connect(addr).expect("connect");
    let queue = client
        .raw_queue(&format!("bench-blocking-{round}"), CAPACITY)
        .expect("queue");
    let start = Instant::now();
    for i in 0..items {
        queue.put_nowait(&payload(i)).expect("put");
    }
    let put = items as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..items {
        queue.get().expect("get");
    }
    let get = items as f64 / start.elapsed().as_secs_f64();
    (put, get)
}
