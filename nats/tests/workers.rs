//! Worker processes on a real nats-server, killed: a live worker keeps its job however long
//! it works, a killed one's job goes to another after the ack wait, and under random kills
//! no job is lost and none is acknowledged twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{run, NatsServer};
use ipcq_nats::{Connection, Error, ACK_WAIT};

fn job(id: u64) -> Bytes {
    Bytes::from(id.to_le_bytes().to_vec())
}

#[test]
fn a_live_worker_keeps_its_job_and_a_killed_ones_goes_to_another_after_the_ack_wait() {
    let server = NatsServer::start();
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async move {
        let connection = Connection::connect(&addr).await.unwrap();
        let queue = connection.queue("long", 0).await.unwrap();
        queue.put_nowait(job(42)).await.unwrap();
        let holder = Worker::start(&[&addr, "long", "hold", "1"]);
        assert_eq!(holder.next_line(), "holding");
        // Alive, its heartbeats keep the job past the ack wait.
        let err = queue
            .get_timeout(Some(ACK_WAIT + Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Empty(_)), "{err}");
        assert_eq!(queue.len().await.unwrap(), 1, "held, and counted");
        let killed = Instant::now();
        holder.stop(true);
        let again = queue
            .get_delivery_timeout(Some(ACK_WAIT * 2))
            .await
            .unwrap();
        let after = killed.elapsed();
        assert_eq!(again.item(), &job(42));
        assert!(again.is_redelivered().unwrap());
        assert!(
            after <= ACK_WAIT + Duration::from_secs(1),
            "redelivered {after:?} after the kill"
        );
        again.ack().await.unwrap();
    });
}

/// 5,000 jobs, four workers killed at random and replaced: every job is done, none is
/// acknowledged twice, and the only jobs started twice are ones a killed worker held.
#[test]
fn killed_workers_lose_no_job_and_none_is_acknowledged_twice() {
    const JOBS: u64 = 5_000;
    const WORKERS: usize = 4;
    let server = NatsServer::start();
    let addr = server.addr.clone();
    let mut seed: u64 = 0x5eed_0f1a_7500;
    run(Duration::from_secs(240), async move {
        let connection = Connection::connect(&addr).await.unwrap();
        let queue = connection.queue("chaos", 0).await.unwrap();
        for id in 0..JOBS {
            queue.put_nowait(job(id)).await.unwrap();
        }
        let work = || Worker::start(&[&addr, "chaos", "work"]);
        let mut workers: Vec<Worker> = (0..WORKERS).map(|_| work()).collect();
        let (mut finished, mut killed) = (Vec::new(), Vec::new());
        let mut kills = 0;
        // The kill schedule: every 50..150 ms a random worker, 20 times.
        while kills < 20 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            tokio::time::sleep(Duration::from_millis(50 + seed % 100)).await;
            let victim = usize::try_from(seed % WORKERS as u64).unwrap();
            let replaced = std::mem::replace(&mut workers[victim], work());
            killed.push(replaced.stop(true));
            kills += 1;
        }
        for worker in workers {
            finished.push(tokio::task::spawn_blocking(move || worker.stop(false)));
        }
        let mut done: BTreeMap<u64, u32> = BTreeMap::new();
        let mut held_by_killed = BTreeSet::new();
        let mut started_by_killed = 0;
        let mut logs: Vec<(Vec<String>, bool)> = Vec::new();
        for log in finished {
            logs.push((log.await.unwrap(), false));
        }
        logs.extend(killed.into_iter().map(|log| (log, true)));
        for (log, was_killed) in &logs {
            for line in log {
                let (kind, id) = line.split_once(' ').expect("a worker line");
                let id: u64 = id.parse().unwrap();
                match kind {
                    "s" if *was_killed => {
                        held_by_killed.insert(id);
                        started_by_killed += 1;
                    }
                    "s" => {}
                    "d" => *done.entry(id).or_default() += 1,
                    other => panic!("unexpected line {other}"),
                }
            }
        }
        let twice: Vec<_> = done.iter().filter(|(_, &n)| n > 1).collect();
        assert!(twice.is_empty(), "acknowledged twice: {twice:?}");
        let missing: Vec<u64> = (0..JOBS)
            .filter(|id| !done.contains_key(id) && !held_by_killed.contains(id))
            .collect();
        assert!(missing.is_empty(), "never done: {missing:?}");
        assert!(queue.is_empty().await.unwrap(), "jobs left in the stream");
        println!(
            "{JOBS} jobs, {kills} workers killed ({started_by_killed} jobs started by them), \
             {} done with a confirmed ack",
            done.len()
        );
    });
}

/// The worker program (tests/helper/worker.rs).
const WORKER: &str = env!("CARGO_BIN_EXE_ipcq-nats-test-worker");

/// A worker process whose output is read as it comes.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
}

impl Worker {
    fn start(args: &[&str]) -> Worker {
        let mut child = Command::new(WORKER)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines,
            reader,
        }
    }

    /// Waits (up to 60 s) for the worker's next line.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from the worker")
    }

    /// Kills the worker (or, with `kill` false, waits for it to finish) and returns what it
    /// printed that was not read yet.
    fn stop(mut self, kill: bool) -> Vec<String> {
        if kill {
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("wait for the worker");
        assert!(kill || status.success(), "a worker failed: {status}");
        self.reader.join().expect("the reader thread");
        self.lines.try_iter().collect()
    }
}
