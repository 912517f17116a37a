//! The `ipcq-broker` process: one per address, stale sockets, permissions, shutdown.
#![cfg(unix)]

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use common::*;
use ipcq::Error;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn refuses_to_start_where_a_broker_answers() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let output = std::process::Command::new(BROKER)
            .args(["--addr", &broker.addr])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("already running"), "{stderr}");
        // The first broker is untouched.
        broker.client().ping().unwrap();
        assert!(broker.path().exists());
    });
}

#[test]
fn removes_a_stale_socket_file_and_starts() {
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipcq.sock");
        // A socket file that nobody listens on any more, as a killed broker leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let addr = path.to_string_lossy().into_owned();
        let broker = TestBroker::start_at(dir, addr, &[]);
        broker.client().ping().unwrap();
        assert!(broker.log().contains("stale socket"), "{}", broker.log());
    });
}

#[test]
fn refuses_to_replace_a_file_that_is_not_a_socket() {
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious.txt");
        std::fs::write(&path, "keep me").unwrap();
        let Err(err) = spawn_broker(&path.to_string_lossy(), &[]) else {
            panic!("the broker started over a regular file");
        };
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    });
}

#[test]
fn socket_is_owner_only() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let meta = std::fs::metadata(broker.path()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    });
}

#[test]
fn sigterm_wakes_waiters_removes_the_socket_and_exits_0() {
    watchdog(LIMIT, || {
        let mut broker = TestBroker::start();
        let client = broker.client();
        let queue = client.queue::<u64>("q", 0).unwrap();
        let getter = {
            let queue = broker.client().queue::<u64>("q", 0).unwrap();
            std::thread::spawn(move || queue.get())
        };
        let process = helper(&["get", &broker.addr, "q", "0"]);
        wait_until(&client, "q", "two parked getters", |s| s.getters == 2);

        let status = broker.terminate();
        assert!(status.success(), "exit status {status}");
        assert!(!broker.path().exists(), "the socket file is removed");

        let err = getter.join().unwrap().unwrap_err();
        assert!(err.is_broker_gone(), "{err}");
        let output = process.wait_with_output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("broker is gone"), "{stderr}");
        // Every later call says so too, at once.
        assert!(queue.put(&1).unwrap_err().is_broker_gone());
        assert!(matches!(
            ipcq::Client::connect(&broker.addr),
            Err(Error::NoBroker { .. })
        ));
    });
}

#[test]
fn embedded_broker_shutdown_wakes_waiters() {
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let addr = dir
            .path()
            .join("embedded.sock")
            .to_string_lossy()
            .into_owned();
        let mut broker =
            ipcq::broker::Broker::start(ipcq::broker::Config::new().addr(&addr)).unwrap();
        let client = ipcq::Client::connect(broker.addr()).unwrap();
        let queue = client.queue::<u64>("q", 0).unwrap();
        let getter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.get())
        };
        wait_until(
            &ipcq::Client::connect(&addr).unwrap(),
            "q",
            "a parked getter",
            |s| s.getters == 1,
        );
        broker.shutdown();
        broker.shutdown(); // idempotent
        assert!(getter.join().unwrap().unwrap_err().is_broker_gone());
        assert!(!std::path::Path::new(&addr).exists());
        // A second embedded broker can take the address again.
        let again = ipcq::broker::Broker::start(ipcq::broker::Config::new().addr(&addr)).unwrap();
        ipcq::Client::connect(again.addr()).unwrap().ping().unwrap();
    });
}

#[test]
fn connection_limit_gives_a_clear_error() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start_with(&["--max-connections", "2"]);
        let first = broker.client();
        let _second = broker.client();
        let err = ipcq::Client::connect(&broker.addr).unwrap_err();
        assert!(matches!(err, Error::LimitReached(_)), "{err}");
        assert!(err.to_string().contains("at most 2 connections"), "{err}");
        first.ping().unwrap();
        drop(first);
        // The slot comes back once the broker has seen the connection close.
        let start = std::time::Instant::now();
        loop {
            match ipcq::Client::connect(&broker.addr) {
                Ok(client) => break client.ping().unwrap(),
                Err(Error::LimitReached(_)) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::yield_now()
                }
                Err(err) => panic!("{err}"),
            }
        }
    });
}

#[test]
fn serve_runs_on_the_callers_runtime() {
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let addr = dir
            .path()
            .join("served.sock")
            .to_string_lossy()
            .into_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ipcq::broker::Config::new().addr(&addr);
        let served = runtime.spawn(ipcq::broker::serve(config, async {
            let _ = stopped.await;
        }));
        // The socket appears once the serving task has run; ask until it answers.
        let client = loop {
            match ipcq::Client::connect(&addr) {
                Ok(client) => break client,
                Err(Error::NoBroker { .. }) => std::thread::yield_now(),
                Err(err) => panic!("{err}"),
            }
        };
        let queue = client.queue::<String>("q", 0).unwrap();
        let getter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.get())
        };
        queue.put(&"served".to_string()).unwrap();
        assert_eq!(getter.join().unwrap().unwrap(), "served");
        let waiting = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.get())
        };
        wait_until(
            &ipcq::Client::connect(&addr).unwrap(),
            "q",
            "a parked getter",
            |s| s.getters == 1,
        );
        stop.send(()).unwrap();
        runtime.block_on(served).unwrap().unwrap();
        assert!(waiting.join().unwrap().unwrap_err().is_broker_gone());
        assert!(!std::path::Path::new(&addr).exists());
    });
}
