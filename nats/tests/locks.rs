//! Locks on a real nats-server: exclusion, release, a holder kept alive past the TTL,
//! and a killed holder's lock freed within the TTL with the owner-died flag.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, NatsServer};
use ipcq_nats::{Connection, LOCK_TTL};

const WORKER: &str = env!("CARGO_BIN_EXE_ipcq-nats-test-worker");

#[test]
fn one_holder_at_a_time_kept_alive_past_the_ttl() {
    let server = NatsServer::start();
    run(Duration::from_secs(60), async move {
        let a = Connection::connect(&server.addr).await.unwrap();
        let b = Connection::connect(&server.addr).await.unwrap();
        let lock_a = a.lock("tickets").await.unwrap();
        let lock_b = b.lock("tickets").await.unwrap();
        let held = lock_a.try_acquire().await.unwrap().expect("free");
        assert!(!held.owner_died());
        assert!(lock_b.try_acquire().await.unwrap().is_none());
        // Held longer than the TTL: the holder's rewrites keep it.
        let start = Instant::now();
        let waited = lock_b.acquire_timeout(Some(LOCK_TTL * 2)).await.unwrap();
        assert!(waited.is_none(), "taken from a live holder");
        assert!(start.elapsed() >= LOCK_TTL * 2);
        held.release().await.unwrap();
        let next = lock_b
            .acquire_timeout(Some(Duration::from_secs(2)))
            .await
            .unwrap()
            .expect("released");
        assert!(!next.owner_died(), "released, not died");
        drop(next);
        // Dropped: released too.
        let again = lock_a
            .acquire_timeout(Some(Duration::from_secs(2)))
            .await
            .unwrap()
            .expect("released by the drop");
        again.release().await.unwrap();
    });
}

#[test]
fn a_killed_holders_lock_is_free_within_the_ttl_and_says_so() {
    let server = NatsServer::start();
    let addr = server.addr.clone();
    let mut holder = Command::new(WORKER)
        .args([&addr, "doomed", "lock"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    run(Duration::from_secs(60), async move {
        let connection = Connection::connect(&addr).await.unwrap();
        let lock = connection.lock("doomed").await.unwrap();
        assert!(lock.try_acquire().await.unwrap().is_none());
        let waiting = {
            let lock = lock.clone();
            tokio::spawn(async move { lock.acquire_timeout(Some(LOCK_TTL * 3)).await })
        };
        holder.kill().unwrap();
        holder.wait().unwrap();
        let killed = Instant::now();
        let guard = waiting.await.unwrap().unwrap().expect("freed");
        let after = killed.elapsed();
        assert!(guard.owner_died(), "the next holder is told");
        assert!(
            after <= LOCK_TTL + Duration::from_millis(1500),
            "free {after:?} after the kill"
        );
        guard.release().await.unwrap();
    });
}

/// An event set by one client wakes the waiters of others at once; cleared, waits time out.
#[test]
fn an_event_wakes_every_waiter_and_clears() {
    let server = NatsServer::start();
    run(Duration::from_secs(60), async move {
        let a = Connection::connect(&server.addr).await.unwrap();
        let b = Connection::connect(&server.addr).await.unwrap();
        let light = a.event("green").await.unwrap();
        assert!(!light.is_set().await.unwrap());
        let start = Instant::now();
        assert!(!light
            .wait_timeout(Some(Duration::from_millis(200)))
            .await
            .unwrap());
        assert!(start.elapsed() >= Duration::from_millis(200));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let event = b.clone();
                tokio::spawn(async move {
                    let event = event.event("green").await.unwrap();
                    event.wait_timeout(None).await.unwrap()
                })
            })
            .collect();
        // Once all three watch (their `is_set` ran), the set wakes them; a set before that
        // is seen by their first look. Either way each returns true.
        light.set().await.unwrap();
        for waiter in waiters {
            assert!(waiter.await.unwrap());
        }
        assert!(b.event("green").await.unwrap().is_set().await.unwrap());
        light.clear().await.unwrap();
        assert!(!light.is_set().await.unwrap());
        assert!(!light
            .wait_timeout(Some(Duration::from_millis(100)))
            .await
            .unwrap());
    });
}
