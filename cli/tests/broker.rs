//! The `ipcq-broker` process: one per address, stale sockets, permissions, shutdown.
//!
//! What has no Windows counterpart is Unix only: socket files (stale ones, their mode,
//! their removal), SIGTERM, and listeners made by hand. On Windows the pipe itself stands
//! in for the socket file: it exists while a broker listens on it and goes with it.

mod common;

#[cfg(unix)]
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
        #[cfg(unix)]
        assert!(broker.path().exists());
    });
}

/// A socket at `path` that listens with a backlog of one and never accepts, its backlog
/// filled: a connection to it waits (as to a broker too busy to accept).
#[cfg(unix)]
fn listener_with_a_full_backlog(path: &std::path::Path) -> Vec<rustix::fd::OwnedFd> {
    use rustix::net::{
        bind, connect, listen, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType,
    };
    let addr = SocketAddrUnix::new(path).unwrap();
    let listener = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )
    .unwrap();
    bind(&listener, &addr).unwrap();
    listen(&listener, 0).unwrap();
    let mut fds = vec![listener];
    loop {
        let socket = socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        match connect(&socket, &addr) {
            Ok(()) => fds.push(socket),
            Err(rustix::io::Errno::AGAIN) => return fds,
            Err(err) => panic!("connect: {err}"),
        }
        assert!(fds.len() < 100, "the backlog never filled");
    }
}

#[cfg(unix)]
#[test]
fn a_listener_that_takes_no_connection_is_not_taken_for_a_broker() {
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        let _held = listener_with_a_full_backlog(&path);
        let Err(err) = spawn_broker(&path.to_string_lossy(), &[]) else {
            panic!("the broker started over a live listener");
        };
        assert!(err.contains("not an ipcq broker"), "{err}");
        // Said once.
        assert_eq!(err.matches("not an ipcq broker").count(), 1, "{err}");
        assert!(path.exists(), "the other listener's socket was removed");
    });
}

#[cfg(unix)]
#[test]
fn sigterm_during_the_start_up_probe_stops_the_broker() {
    use std::io::{BufRead, BufReader};
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mute.sock");
        // Connections complete in its backlog, and nothing ever answers them: the probe
        // waits for a greeting.
        let _mute = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut broker = std::process::Command::new(BROKER)
            .args(["--addr", &path.to_string_lossy()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(broker.stderr.take().unwrap());
        let mut seen = String::new();
        // Once it says it is checking the old socket, it is in the probe.
        while !seen.contains("checking whether a broker answers") {
            assert!(log.read_line(&mut seen).unwrap() > 0, "{seen}");
        }
        signal(&broker, "TERM");
        let status = broker.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut log, &mut rest).unwrap();
        assert!(status.success(), "{status}: {seen}{rest}");
        assert!(rest.contains("stopped during start-up"), "{seen}{rest}");
        assert!(path.exists(), "the other listener's socket was removed");
    });
}

#[cfg(unix)]
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

#[cfg(unix)]
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

#[cfg(unix)]
#[test]
fn socket_is_owner_only() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let meta = std::fs::metadata(broker.path()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    });
}

#[cfg(unix)]
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
        let addr = addr_in(dir.path(), "embedded");
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
        #[cfg(unix)]
        assert!(!std::path::Path::new(&addr).exists());
        drop((queue, client));
        // A second embedded broker can take the address again.
        #[cfg(unix)]
        {
            let again =
                ipcq::broker::Broker::start(ipcq::broker::Config::new().addr(&addr)).unwrap();
            ipcq::Client::connect(again.addr()).unwrap().ping().unwrap();
        }
        // On Windows the name stays held until every client handle of the stopped
        // broker's pipe is closed, which under Wine can take long after the clients are
        // dropped: a broker started meanwhile must say so (the name is taken) in time
        // rather than wait for a free pipe instance (it hung, before its probe was
        // bounded). Either outcome is right; hanging is not, and the watchdog sees that.
        #[cfg(windows)]
        match ipcq::broker::Broker::start(ipcq::broker::Config::new().addr(&addr)) {
            Ok(again) => ipcq::Client::connect(again.addr()).unwrap().ping().unwrap(),
            Err(ipcq::broker::Error::AddrTaken { .. }) => {}
            Err(other) => panic!("the second broker: {other}"),
        }
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
        let addr = addr_in(dir.path(), "served");
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
        #[cfg(unix)]
        assert!(!std::path::Path::new(&addr).exists());
    });
}

/// A broker killed outright (no shutdown to warn anyone): every blocked call of the
/// blocking and the async client fails with `BrokerGone` as soon as the socket closes,
/// and clients reconnect to a new broker started at the same address.
#[test]
fn a_killed_broker_fails_blocked_calls_and_a_new_one_takes_over() {
    watchdog(LIMIT, || {
        // Calls parked in the broker, where the test can see them (calls asleep on a
        // queue's ring: tests/shared_memory.rs).
        let mut broker = TestBroker::start_with(&["--no-shm"]);
        let client = broker.client();
        let queue = client.queue::<u64>("q", 1).unwrap();
        queue.put(&0).unwrap();
        let getter = {
            let queue = broker.client().queue::<u64>("empty", 0).unwrap();
            std::thread::spawn(move || queue.get())
        };
        let putter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.put(&1))
        };
        // Worker threads run the async waiters while this thread watches.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = broker.addr.clone();
        let (async_get, async_lock) = runtime.block_on(async {
            let client = ipcq::tokio::Client::connect(&addr).await.unwrap();
            let queue = client.queue::<u64>("empty", 0).await.unwrap();
            let lock = client.lock("held").await.unwrap();
            let other = ipcq::tokio::Client::connect(&addr).await.unwrap();
            let guard = other.lock("held").await.unwrap().lock().await.unwrap();
            std::mem::forget(guard);
            (
                tokio::spawn(async move { queue.get().await }),
                tokio::spawn(async move { lock.acquire().await }),
            )
        });
        let observer = broker.client();
        wait_until(&observer, "empty", "two parked getters", |s| s.getters == 2);
        wait_until(&observer, "q", "a parked putter", |s| s.putters == 1);

        broker.child.kill().unwrap();
        broker.child.wait().unwrap();

        assert!(getter.join().unwrap().unwrap_err().is_broker_gone());
        assert!(putter.join().unwrap().unwrap_err().is_broker_gone());
        runtime.block_on(async {
            assert!(async_get.await.unwrap().unwrap_err().is_broker_gone());
            assert!(async_lock.await.unwrap().unwrap_err().is_broker_gone());
        });

        // The dead broker's socket file is stale: a new broker removes it and listens (a
        // named pipe went with the broker's process).
        let (child, log) = spawn_broker(&broker.addr, &[]).expect("a new broker starts");
        broker.child = child;
        broker.log = log;
        let client = broker.client();
        let queue = client.queue::<u64>("q", 1).unwrap();
        assert!(queue.is_empty().unwrap(), "a new broker starts empty");
        queue.put(&2).unwrap();
        assert_eq!(queue.get().unwrap(), 2);
    });
}

/// `--max-waiters`: one request too many parked on an object gets `LimitReached` at once,
/// for queues and the other objects alike; the object keeps working.
#[test]
fn waiters_per_object_are_limited() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start_with(&["--max-waiters", "2"]);
        let client = broker.client();
        let queue = client.queue::<u64>("q", 0).unwrap();
        let getters: Vec<_> = (0..2)
            .map(|_| {
                let queue = broker.client().queue::<u64>("q", 0).unwrap();
                std::thread::spawn(move || queue.get())
            })
            .collect();
        wait_until(&client, "q", "two parked getters", |s| s.getters == 2);
        let err = queue.get().unwrap_err();
        assert!(matches!(err, Error::LimitReached(_)), "{err}");
        assert!(err.to_string().contains("max-waiters"), "{err}");
        queue.put_many(&[1, 2]).unwrap();
        let mut got: Vec<u64> = getters
            .into_iter()
            .map(|g| g.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);

        let holder = broker.client();
        let lock = holder.lock("l").unwrap();
        let _held = lock.lock().unwrap();
        let acquirers: Vec<_> = (0..2)
            .map(|_| {
                let lock = broker.client().lock("l").unwrap();
                std::thread::spawn(move || lock.acquire().map(|_| lock.release()))
            })
            .collect();
        let waiting =
            || {
                client.stats().unwrap().into_iter().any(
                    |s| matches!(s.detail, ipcq::stats::ObjectDetail::Lock(p) if p.waiters == 2),
                )
            };
        while !waiting() {
            std::thread::yield_now();
        }
        let err = client.lock("l").unwrap().acquire().unwrap_err();
        assert!(matches!(err, Error::LimitReached(_)), "{err}");
        drop(_held);
        for acquirer in acquirers {
            acquirer.join().unwrap().unwrap().unwrap();
        }
    });
}

/// `--max-objects`: one object too many gets `LimitReached`; removing one makes room.
#[test]
fn objects_are_limited() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start_with(&["--max-objects", "3"]);
        let client = broker.client();
        client.queue::<u8>("a", 0).unwrap();
        client.lock("b").unwrap();
        client.event("c").unwrap();
        let err = client.queue::<u8>("d", 0).unwrap_err();
        assert!(matches!(err, Error::LimitReached(_)), "{err}");
        // Reopening an existing object is not a new one.
        client.queue::<u8>("a", 0).unwrap();
        client.remove("b").unwrap();
        client.queue::<u8>("d", 0).unwrap();
    });
}
