//! Locks, semaphores and events between real processes, and what happens when a process
//! dies holding one.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipcq::stats::ObjectDetail;
use ipcq::Error;

const LIMIT: Duration = Duration::from_secs(120);

/// Waits for a helper's first line.
fn permit_stats(client: &ipcq::Client, name: &str) -> ipcq::stats::PermitStats {
    client
        .stats()
        .unwrap()
        .into_iter()
        .find_map(|object| match object.detail {
            ObjectDetail::Lock(stats) | ObjectDetail::Semaphore(stats) if object.name == name => {
                Some(stats)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no lock or semaphore named {name}"))
}

fn event_waiters(client: &ipcq::Client, name: &str) -> u64 {
    client
        .stats()
        .unwrap()
        .into_iter()
        .find_map(|object| match object.detail {
            ObjectDetail::Event(stats) if object.name == name => Some(stats.waiters),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no event named {name}"))
}

#[test]
fn a_lock_makes_a_shared_counter_exact() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let file = broker.dir.path().join("counter");
        std::fs::write(&file, "0").unwrap();
        let path = file.to_string_lossy().into_owned();
        let counters: Vec<_> = (0..8)
            .map(|_| helper(&["lock-count", &broker.addr, "counter-lock", &path, "1000"]))
            .collect();
        for counter in counters {
            assert_eq!(finish(counter).trim(), "counted");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "8000");
    });
}

#[test]
fn a_held_lock_excludes_everyone_else() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let mut holder = helper(&["lock-hold", &broker.addr, "excl"]);
        expect_line(&mut holder, "held");
        let lock = broker.client().lock("excl").unwrap();
        assert!(lock.try_acquire().unwrap().is_none());
        let start = Instant::now();
        assert!(lock
            .acquire_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none());
        assert!(start.elapsed() >= Duration::from_millis(50));
        // Releasing a lock one does not hold is an error.
        let err = lock.release().unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref m) if m.contains("not held")),
            "{err}"
        );
        let stats = permit_stats(&broker.client(), "excl");
        assert_eq!((stats.permits, stats.free, stats.holders.len()), (1, 0, 1));
        // The holder is named by its process, as `ipcq stats` shows it.
        assert_eq!(stats.holder_pids, [holder.id()]);
        let table = String::from_utf8(cli(&broker.addr, &["stats"]).stdout).unwrap();
        let shown = format!("{}/{}", holder.id(), stats.holders[0]);
        assert!(
            table
                .lines()
                .any(|line| line.starts_with("excl") && line.ends_with(&shown)),
            "{table}"
        );
        kill(&mut holder);
        holder.wait().unwrap();
    });
}

#[test]
fn a_killed_holder_hands_the_lock_on_and_the_next_owner_is_told() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let mut holder = helper(&["lock-hold", &broker.addr, "robust"]);
        expect_line(&mut holder, "held");
        let lock = broker.client().lock("robust").unwrap();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.acquire())
        };
        let observer = broker.client();
        while permit_stats(&observer, "robust").waiters != 1 {
            std::thread::yield_now();
        }
        kill(&mut holder);
        holder.wait().unwrap();
        let acquired = waiter.join().unwrap().unwrap();
        assert!(
            acquired.owner_died(),
            "the next owner learns the last one died"
        );
        // The flag is for that acquirer only.
        lock.release().unwrap();
        let again = lock.lock().unwrap();
        assert!(!again.owner_died());
    });
}

#[test]
fn a_semaphore_admits_at_most_its_permits() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let file = broker.dir.path().join("room");
        std::fs::write(&file, "0 0").unwrap();
        let path = file.to_string_lossy().into_owned();
        let guests: Vec<_> = (0..10)
            .map(|_| helper(&["sem-room", &broker.addr, "room", "4", "room-lock", &path]))
            .collect();
        for guest in guests {
            assert_eq!(finish(guest).trim(), "left");
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let numbers: Vec<i64> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(numbers[0], 0, "everyone left");
        assert!(
            (1..=4).contains(&numbers[1]),
            "at most 4 inside at once: {text}"
        );
        assert_eq!(permit_stats(&broker.client(), "room").free, 4);
    });
}

#[test]
fn permits_of_a_killed_process_come_back() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let sem = client.semaphore("pool", 2).unwrap();
        let mut holders: Vec<_> = (0..2)
            .map(|_| {
                let mut holder = helper(&["sem-hold", &broker.addr, "pool", "2"]);
                expect_line(&mut holder, "held");
                holder
            })
            .collect();
        assert!(sem.try_acquire().unwrap().is_none());
        for holder in &mut holders {
            kill(holder);
            holder.wait().unwrap();
        }
        let first = sem.acquire().unwrap();
        assert!(first.owner_died());
        let _second = sem
            .acquire_timeout(Duration::from_secs(20))
            .unwrap()
            .expect("a permit");
        assert!(sem.try_acquire().unwrap().is_none(), "bounded at 2");
        sem.release().unwrap();
        sem.release().unwrap();
        let err = sem.release().unwrap_err();
        assert!(
            matches!(err, Error::Invalid(_)),
            "no release above the count: {err}"
        );
        assert_eq!(permit_stats(&client, "pool").free, 2);
        // Another count for the same name is a conflict.
        assert!(client.semaphore("pool", 3).unwrap_err().is_conflict());
    });
}

#[test]
fn one_set_releases_every_waiting_process() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let event = client.event("go").unwrap();
        assert!(!event.is_set().unwrap());
        let start = Instant::now();
        assert!(!event.wait_timeout(Duration::from_millis(50)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(50));

        let waiters: Vec<_> = (0..10)
            .map(|_| helper(&["event-wait", &broker.addr, "go"]))
            .collect();
        while event_waiters(&client, "go") != 10 {
            std::thread::yield_now();
        }
        event.set().unwrap();
        for waiter in waiters {
            assert_eq!(finish(waiter).trim(), "set");
        }
        assert!(event.is_set().unwrap());
        assert!(event.wait_timeout(Duration::from_secs(60)).unwrap());
        event.clear().unwrap();
        assert!(!event.is_set().unwrap());
    });
}

#[test]
fn stats_show_locks_semaphores_and_events() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let lock = client.lock("l").unwrap();
        let _held = lock.lock().unwrap();
        let _permit = client.semaphore("s", 3).unwrap().acquire().unwrap();
        client.event("e").unwrap().set().unwrap();
        client.barrier("b", 2).unwrap();
        let output = cli(&broker.addr, &["stats"]);
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = |name: &str| -> Vec<String> {
            table
                .lines()
                .find(|line| line.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no row for {name}: {table}"))
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        assert_eq!(row("l")[..5], ["l", "lock", "1", "0", "0"], "{table}");
        assert_eq!(row("s")[..5], ["s", "semaphore", "3", "2", "0"], "{table}");
        assert_eq!(row("e"), ["e", "set", "0"], "{table}");
        assert_eq!(row("b"), ["b", "2", "0", "ok"], "{table}");
        let json = cli(&broker.addr, &["stats", "--json"]);
        let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let kinds: Vec<&str> = value["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["barrier", "event", "lock", "semaphore"]);
    });
}

/// The barrier's figures; all zero until some party has opened it.
fn barrier_stats(client: &ipcq::Client, name: &str) -> ipcq::stats::BarrierStats {
    client
        .stats()
        .unwrap()
        .into_iter()
        .find_map(|object| match object.detail {
            ObjectDetail::Barrier(stats) if object.name == name => Some(stats),
            _ => None,
        })
        .unwrap_or(ipcq::stats::BarrierStats {
            parties: 0,
            waiting: 0,
            broken: false,
        })
}

#[test]
fn a_barrier_lets_all_parties_pass_together() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let mut parties: Vec<_> = (0..3)
            .map(|_| helper(&["barrier-wait", &broker.addr, "meet", "4"]))
            .collect();
        while barrier_stats(&client, "meet").waiting != 3 {
            std::thread::yield_now();
        }
        for party in &mut parties {
            assert!(
                party.try_wait().unwrap().is_none(),
                "nobody passes before the last comes"
            );
        }
        parties.push(helper(&["barrier-wait", &broker.addr, "meet", "4"]));
        let mut places: Vec<u64> = parties
            .into_iter()
            .map(|party| finish(party).trim().parse().unwrap())
            .collect();
        places.sort_unstable();
        assert_eq!(places, [0, 1, 2, 3]);
        assert_eq!(barrier_stats(&client, "meet").waiting, 0);
    });
}

#[test]
fn a_party_killed_while_waiting_breaks_the_barrier() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let mut doomed = helper(&["barrier-wait", &broker.addr, "fragile", "3"]);
        let survivor = helper(&["barrier-wait", &broker.addr, "fragile", "3"]);
        while barrier_stats(&client, "fragile").waiting != 2 {
            std::thread::yield_now();
        }
        kill(&mut doomed);
        doomed.wait().unwrap();
        assert_eq!(finish(survivor).trim(), "broken");
        let barrier = client.barrier("fragile", 3).unwrap();
        let err = barrier.wait().unwrap_err();
        assert!(err.is_broken(), "{err}");
        assert!(barrier_stats(&client, "fragile").broken);
        // A reset mends it for the next round.
        barrier.reset().unwrap();
        let others: Vec<_> = (0..2)
            .map(|_| helper(&["barrier-wait", &broker.addr, "fragile", "3"]))
            .collect();
        barrier.wait().unwrap();
        for other in others {
            assert_ne!(finish(other).trim(), "broken");
        }
        // A wait that runs out breaks it too.
        let err = barrier.wait_timeout(Duration::from_millis(30)).unwrap_err();
        assert!(err.is_broken(), "{err}");
    });
}

#[test]
fn join_returns_when_the_last_job_is_done() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 0).unwrap();
        assert!(
            jobs.join_timeout(Duration::ZERO).unwrap(),
            "nothing put, nothing to wait for"
        );
        jobs.put_many(&(0..20).collect::<Vec<u64>>()).unwrap();
        assert!(!jobs.join_timeout(Duration::from_millis(20)).unwrap());
        let joiner = {
            let jobs = broker.client().queue::<u64>("jobs", 0).unwrap();
            std::thread::spawn(move || jobs.join())
        };
        assert_eq!(
            finish(helper(&["task", &broker.addr, "jobs", "19"])).trim(),
            "done"
        );
        // One job is still not done: join keeps waiting.
        assert!(!jobs.join_timeout(Duration::from_millis(50)).unwrap());
        assert!(!joiner.is_finished());
        assert_eq!(
            finish(helper(&["task", &broker.addr, "jobs", "1"])).trim(),
            "done"
        );
        joiner.join().unwrap().unwrap();
        assert!(jobs.join_timeout(Duration::ZERO).unwrap());
        // More task_done than items put is an error.
        let err = jobs.task_done().unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref m) if m.contains("more times")),
            "{err}"
        );
    });
}
