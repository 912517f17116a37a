//! ipcq's queue on NATS against raw async-nats doing the same work, in interleaved rounds.
//!
//! ```text
//! cargo bench -p ipcq-nats --bench nats-bench -- [ROUNDS] [ITEMS]
//! ```
//!
//! Both sides use a work-queue stream with the same bound and discard-new, a durable pull
//! consumer with explicit acks, and the same round trips per item: a publish whose
//! acknowledgement is awaited (ipcq's `put` returns once the server stored the item), then
//! a pull of one message and an acknowledgement confirmed by the server (ipcq's plain
//! `get` returns once the ack was recorded). Each round runs both, in alternating order, on
//! one nats-server; the figure is the median over rounds of ipcq's rate over raw's.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;

const CAPACITY: i64 = 100_000;

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
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (raw, ipcq) = runtime.block_on(async {
            let raw_first = round % 2 == 0;
            let mut raw = None;
            let mut ipcq = None;
            for side in 0..2 {
                if (side == 0) == raw_first {
                    raw = Some(raw_round(&server.addr, round, items).await);
                } else {
                    ipcq = Some(ipcq_round(&server.addr, round, items).await);
                }
            }
            (raw.expect("ran"), ipcq.expect("ran"))
        });
        println!(
            "round {}/{rounds}: put raw {:.0}/s ipcq {:.0}/s; get raw {:.0}/s ipcq {:.0}/s",
            round + 1,
            raw.0,
            ipcq.0,
            raw.1,
            ipcq.1
        );
        puts.push(ipcq.0 / raw.0);
        gets.push(ipcq.1 / raw.1);
    }
    println!(
        "\n{rounds} interleaved rounds of {items} 64-byte items; ipcq's rate / raw async-nats's:"
    );
    for (what, ratios) in [("put", &mut puts), ("get", &mut gets)] {
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

/// Items per second for the puts and for the gets, through raw async-nats.
async fn raw_round(addr: &str, round: usize, items: usize) -> (f64, f64) {
    let client = async_nats::connect(addr).await.expect("connect");
    let js = jetstream::new(client);
    let subject = format!("raw.{round}");
    let stream = js
        .get_or_create_stream(stream::Config {
            name: format!("RAW_{round}"),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: CAPACITY,
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

/// Items per second for the puts and for the gets, through ipcq's queue.
async fn ipcq_round(addr: &str, round: usize, items: usize) -> (f64, f64) {
    let connection = ipcq_nats::Connection::connect(addr).await.expect("connect");
    let capacity = usize::try_from(CAPACITY).expect("fits");
    let queue = connection
        .queue(&format!("bench{round}"), capacity)
        .await
        .expect("queue");
    let start = Instant::now();
    for i in 0..items {
        queue.put_nowait(payload(i)).await.expect("put");
    }
    let put = items as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..items {
        queue.get_timeout(None).await.expect("get");
    }
    let get = items as f64 / start.elapsed().as_secs_f64();
    (put, get)
}
