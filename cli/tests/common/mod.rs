//! Shared test fixtures: a real `ipcq-broker` process on a temporary socket (a named pipe on
//! Windows), helper client processes, a watchdog, and waiting on broker state instead of
//! sleeping.
//!
//! Everything platform-specific that the tests need goes through here: the address of a test
//! broker ([`addr_in`]) and killing a process ([`kill`]), so that the same tests run against
//! Unix and Windows binaries.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ipcq::stats::{ObjectDetail, PipeStats, QueueStats};
use ipcq::Client;

pub mod raw;

pub const BROKER: &str = env!("CARGO_BIN_EXE_ipcq-broker");
pub const CLI: &str = env!("CARGO_BIN_EXE_ipcq");
pub const HELPER: &str = env!("CARGO_BIN_EXE_ipcq-test-client");

/// A broker process listening on a socket in its own temporary directory.
pub struct TestBroker {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// Everything the broker wrote to stderr so far.
    pub log: Log,
}

/// A broker's stderr as read so far, and a signal for each line.
pub type Log = Arc<(Mutex<String>, Condvar)>;

impl TestBroker {
    pub fn start() -> TestBroker {
        Self::start_with(&[])
    }

    /// Starts `ipcq-broker` with extra arguments and returns once it logs that it listens.
    pub fn start_with(args: &[&str]) -> TestBroker {
        let dir = tempfile::tempdir().expect("temporary directory");
        let addr = addr_in(dir.path(), "ipcq");
        Self::start_at(dir, addr, args)
    }

    pub fn start_at(dir: tempfile::TempDir, addr: String, args: &[&str]) -> TestBroker {
        let (child, log) = spawn_broker(&addr, args).expect("broker starts");
        TestBroker {
            child,
            addr,
            dir,
            log,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr).expect("connect to the test broker")
    }

    /// The socket file (Unix).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.addr)
    }

    /// Sends SIGTERM and waits for the exit status.
    #[cfg(unix)]
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().expect("broker exits")
    }

    /// Checks that the broker is still up and stops it, and returns everything it logged.
    /// On Unix it is asked to stop (SIGTERM) and must exit with success; a Windows process
    /// cannot be sent Ctrl-C from outside its console, so there it must still be running,
    /// and is then killed.
    pub fn stop_cleanly(&mut self) -> String {
        #[cfg(unix)]
        {
            let status = self.terminate();
            assert!(status.success(), "the broker stopped with {status}");
        }
        #[cfg(not(unix))]
        {
            let running = self.child.try_wait().expect("the broker's status");
            assert!(
                running.is_none(),
                "the broker exited on its own: {running:?}"
            );
            kill(&mut self.child);
            self.child.wait().expect("broker exits");
        }
        self.log()
    }

    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until the broker has logged a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let (log, line) = &*self.log;
        let (log, timeout) = line
            .wait_timeout_while(log.lock().unwrap(), Duration::from_secs(30), |log| {
                !log.contains(needle)
            })
            .unwrap();
        assert!(!timeout.timed_out(), "never logged {needle:?}: {}", *log);
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns a broker and waits for its "broker listening" line. On failure returns the
/// exit status and everything it printed.
pub fn spawn_broker(addr: &str, args: &[&str]) -> Result<(Child, Log), String> {
    let mut child = Command::new(BROKER)
        .arg("--addr")
        .arg(addr)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ipcq-broker");
    let stderr = child.stderr.take().expect("piped stderr");
    let log: Log = Arc::new((Mutex::new(String::new()), Condvar::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("broker listening") {
                let _ = ready_tx.send(());
            }
            let mut log = sink.0.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
            sink.1.notify_all();
        }
    });
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => Ok((child, log)),
        Err(_) => {
            let status = child.wait().expect("broker exited");
            Err(format!("{status}: {}", log.0.lock().unwrap()))
        }
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: the test did not finish within {limit:?}")
        }
    }
}

/// The figures of queue `name`.
pub fn queue_stats(client: &Client, name: &str) -> QueueStats {
    client
        .stats()
        .expect("stats")
        .into_iter()
        .find_map(|object| match object.detail {
            ObjectDetail::Queue(stats) if object.name == name => Some(stats),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no queue named {name}"))
}

/// The figures of pipe `name`.
pub fn pipe_stats(client: &Client, name: &str) -> PipeStats {
    client
        .stats()
        .expect("stats")
        .into_iter()
        .find_map(|object| match object.detail {
            ObjectDetail::Pipe(stats) if object.name == name => Some(stats),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no pipe named {name}"))
}

/// Runs the async `test` on a two-thread tokio runtime, failing it if it takes longer than
/// `limit`.
pub fn on_tokio<F: std::future::Future<Output = ()> + Send + 'static>(
    limit: Duration,
    test: impl FnOnce() -> F + Send + 'static,
) {
    watchdog(limit, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test())
    });
}

/// Waits until the broker's figures for queue `name` satisfy `condition`. This asks the
/// broker, which is the authority on who is parked where; it polls because the broker
/// has no "tell me when" request, with a short pause between questions.
pub fn wait_until(
    client: &Client,
    name: &str,
    what: &str,
    condition: impl Fn(&QueueStats) -> bool,
) {
    let start = Instant::now();
    loop {
        let stats = queue_stats(client, name);
        if condition(&stats) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {stats:?}"
        );
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Starts a helper client process.
pub fn helper(args: &[&str]) -> Child {
    Command::new(HELPER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ipcq-test-client")
}

/// Reads the helper's next line of output and checks it is `expected`.
pub fn expect_line(child: &mut Child, expected: &str) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the helper's output");
    assert_eq!(line.trim(), expected);
}

/// Waits for a helper and returns its stdout, failing the test if it failed.
pub fn finish(child: Child) -> String {
    let output = child.wait_with_output().expect("helper exits");
    assert!(
        output.status.success(),
        "helper failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A fresh address for a test broker: a socket file `<stem>.sock` in `dir` on Unix; on
/// Windows a named pipe (`\\.\pipe\ipcq-test-...`) whose name no other test, and no other
/// run, uses: pipes live in one namespace for the whole machine, not in `dir`.
pub fn addr_in(dir: &Path, stem: &str) -> String {
    #[cfg(windows)]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let _ = dir;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        format!(
            "ipcq-test-{}-{}-{nanos}-{stem}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
    #[cfg(not(windows))]
    {
        dir.join(format!("{stem}.sock"))
            .to_string_lossy()
            .into_owned()
    }
}

/// `n` divided by `IPCQ_TEST_DIVISOR` (1 when unset), at least 1: the item counts of the
/// long runs, which the Windows run under Wine (whose named pipes move a few thousand items
/// a second) lowers. What the tests assert does not depend on it.
pub fn scaled(n: u64) -> u64 {
    let divisor: u64 = std::env::var("IPCQ_TEST_DIVISOR")
        .ok()
        .and_then(|divisor| divisor.parse().ok())
        .unwrap_or(1);
    (n / divisor.max(1)).max(1)
}

/// Kills a process at once, with no chance to clean up: SIGKILL on Unix, TerminateProcess
/// on Windows. It is reaped later, by whoever waits for it.
pub fn kill(child: &mut Child) {
    child.kill().expect("kill a child process");
}

/// Sends the Unix signal `name` (`TERM`, `STOP`, ...) to `child`.
#[cfg(unix)]
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Runs the `ipcq` command line against `addr`.
pub fn cli(addr: &str, args: &[&str]) -> std::process::Output {
    Command::new(CLI)
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ipcq")
}

/// A process's resident memory, in KiB (Linux).
#[cfg(unix)]
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A helper process whose output is read as it comes, so that it never blocks on a full
/// pipe.
pub struct Running {
    pub child: Child,
    lines: std::thread::JoinHandle<Vec<String>>,
}

pub fn start(args: &[&str]) -> Running {
    let mut child = helper(args);
    let stdout = child.stdout.take().expect("piped stdout");
    // Read as it comes, so that no client blocks on a full pipe.
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect()
    });
    Running { child, lines }
}

/// Kills (or, with `kill` false, waits for) a client; returns what it printed.
pub fn stop(mut running: Running, kill: bool) -> Vec<String> {
    if kill {
        let _ = running.child.kill();
    }
    let status = running.child.wait().expect("wait for a client");
    let lines = running.lines.join().expect("reader thread");
    if !kill {
        let mut stderr = String::new();
        if let Some(mut err) = running.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        assert!(status.success(), "a client failed ({status}): {stderr}");
    }
    lines
}

/// The next number of a xorshift sequence: a kill schedule that a seed replays.
pub fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A pseudo-random index below `n`.
pub fn pick(seed: &mut u64, n: usize) -> usize {
    usize::try_from(next(seed) % n as u64).expect("below n")
}
