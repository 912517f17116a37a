//! Chaos for acknowledged deliveries: worker processes take jobs as deliveries and are
//! SIGKILLed at random mid-job and replaced. Every job is acknowledged exactly once at the
//! broker, none is lost, and the only jobs done more than once are ones a killed worker
//! held.
//!
//! A worker prints `s ID` when it has a job and `d ID` once its `ack` returned. A killed
//! worker's jobs — the one it was working on, and any whose acknowledgement was still
//! waiting for its next write — go back to the queue and are done again by another; one
//! it acknowledged just before the kill may have no `d` line. The broker's count of
//! acknowledged jobs is the proof of exactly once: 20,000, with nothing left in flight.

mod common;
#[cfg(unix)]
#[path = "../../nats/tests/common/mod.rs"]
mod nats_server;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;

const JOBS: u64 = 20_000;
#[cfg(unix)]
const JOBS_ON_NATS: u64 = 5_000;
const WORKERS: usize = 4;

#[test]
fn killed_workers_lose_no_job_and_only_their_jobs_are_done_twice() {
    watchdog(Duration::from_secs(240), move || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = chaos(&broker.addr, &client, JOBS);
        // The broker settled each job exactly once, and holds nothing more.
        let stats = queue_stats(&client, "jobs");
        assert_eq!(
            (stats.ready, stats.in_flight, stats.total_got),
            (0, 0, JOBS)
        );
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
    });
}

/// The same through `Client` on NATS JetStream (`nats://`), with 5,000 jobs: a killed
/// worker's jobs come back after the ack wait (5 s) instead of at once. The stream holds
/// nothing at the end (a work-queue stream deletes an item at its first acknowledgement,
/// so none is acknowledged twice), and `join` sees every job counted done.
// Unix only: the Windows run (under Wine) has no nats-server to start.
#[cfg(unix)]
#[test]
fn on_nats_killed_workers_lose_no_job_and_only_their_jobs_are_done_twice() {
    watchdog(Duration::from_secs(240), move || {
        let server = nats_server::NatsServer::start();
        let client = ipcq::Client::connect(&server.addr).unwrap();
        let jobs = chaos(&server.addr, &client, JOBS_ON_NATS);
        assert_eq!(jobs.len().unwrap(), 0);
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
        assert!(
            matches!(jobs.task_done(), Err(ipcq::Error::Invalid(_))),
            "every job was counted done"
        );
    });
}

/// Puts `count` jobs on the queue `jobs` at `addr` and closes it; runs four worker
/// processes, killing one at random every 20-60 ms (up to 40 times) while jobs are ready
/// and starting another; then checks that every job was done, and that the jobs done more
/// than once are all ones a killed worker held.
fn chaos(addr: &str, client: &ipcq::Client, count: u64) -> ipcq::Queue<u64> {
    let mut seed: u64 = std::env::var("IPCQ_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0b5e_55ed_c0ff_ee00);
    let jobs = client.queue::<u64>("jobs", 0).unwrap();
    jobs.put_many(&(0..count).collect::<Vec<_>>()).unwrap();
    // Workers stop at `Closed`: once every job has been acknowledged.
    jobs.close().unwrap();
    let work = || start(&["chaos-work", addr, "jobs", "0"]);
    let mut workers: Vec<Running> = (0..WORKERS).map(|_| work()).collect();
    let (mut done_logs, mut killed_logs) = (Vec::new(), Vec::new());
    let mut kills = 0;
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20 + next(&mut seed) % 40));
        let stats = queue_stats(client, "jobs");
        if stats.ready == 0 || kills >= 40 {
            break;
        }
        let victim = pick(&mut seed, WORKERS);
        let replaced = std::mem::replace(&mut workers[victim], work());
        killed_logs.push(stop(replaced, true));
        kills += 1;
    }
    for worker in workers {
        done_logs.push(stop(worker, false));
    }

    let mut done: BTreeMap<u64, u32> = BTreeMap::new();
    let mut held_by_killed: BTreeSet<u64> = BTreeSet::new();
    for (log, killed) in done_logs
        .iter()
        .map(|log| (log, false))
        .chain(killed_logs.iter().map(|log| (log, true)))
    {
        for line in log {
            let (kind, id) = line.split_once(' ').expect("a worker line");
            let id: u64 = id.parse().unwrap();
            match kind {
                "s" if killed => {
                    held_by_killed.insert(id);
                }
                "s" => {}
                "d" => *done.entry(id).or_default() += 1,
                other => panic!("unexpected line {other}"),
            }
        }
    }
    // A worker killed between its `ack` and its `d` line did the job all the same.
    let missing: Vec<u64> = (0..count)
        .filter(|id| !done.contains_key(id) && !held_by_killed.contains(id))
        .collect();
    assert!(missing.is_empty(), "jobs never done: {missing:?}");
    let twice: Vec<u64> = done
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&id, _)| id)
        .collect();
    let strangers: Vec<&u64> = twice
        .iter()
        .filter(|id| !held_by_killed.contains(id))
        .collect();
    assert!(
        strangers.is_empty(),
        "done twice, but no killed worker had them: {strangers:?}"
    );
    println!(
        "{count} jobs done; {kills} workers killed; {} jobs done twice, all held by a \
         killed worker; {:.1} s",
        twice.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills >= 10,
        "too few kills ({kills}) for the run to mean much"
    );
    jobs
}
