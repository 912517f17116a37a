#![cfg(unix)]
//! Access control: the broker admits its own user and root, and others only when allowed,
//! judging each connection by its peer credentials. Needs a second user: the tests run a
//! client as `nobody` with `setpriv`, which takes root; otherwise they say so and skip.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);
const NOBODY: &str = "65534";

/// Whether a client can be run as another user here.
fn can_switch_user() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !(root && setpriv) {
        eprintln!("skipped: running a client as another user needs root and setpriv");
    }
    root && setpriv
}

/// A broker whose socket another user can reach, as an administrator would arrange it:
/// what stands between that user and the queues is then the credential check alone.
fn reachable_broker(args: &[&str]) -> TestBroker {
    let broker = TestBroker::start_with(args);
    std::fs::set_permissions(broker.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(broker.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    broker
}

/// `ipcq ping` run as `nobody`.
fn ping_as_nobody(addr: &str) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            CLI,
            "--addr",
            addr,
            "ping",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

#[test]
fn another_user_is_refused_with_a_clear_error_and_logged() {
    if !can_switch_user() {
        return;
    }
    watchdog(LIMIT, || {
        let broker = reachable_broker(&[]);
        let out = ping_as_nobody(&broker.addr);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("access denied"), "{stderr}");
        assert!(stderr.contains(&format!("user {NOBODY}")), "{stderr}");
        // The broker logs the refusal before it answers; the line reaches the test through
        // the thread reading the broker's stderr.
        broker.wait_for_log("not admitted");
        // The broker's own user still gets in.
        broker.client().ping().unwrap();
    });
}

#[test]
fn allowed_users_and_groups_get_in() {
    if !can_switch_user() {
        return;
    }
    watchdog(LIMIT, || {
        for flag in ["--allow-uid", "--allow-gid"] {
            let broker = reachable_broker(&[flag, NOBODY]);
            let out = ping_as_nobody(&broker.addr);
            assert!(
                out.status.success(),
                "{flag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

#[test]
fn the_socket_alone_keeps_other_users_out() {
    if !can_switch_user() {
        return;
    }
    watchdog(LIMIT, || {
        // As created: owner-only socket in an owner-only directory.
        let broker = TestBroker::start_with(&["--allow-uid", NOBODY]);
        let mode = std::fs::metadata(broker.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let out = ping_as_nobody(&broker.addr);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("access denied"), "{stderr}");
    });
}

/// Runs `program args` as `nobody`.
fn as_nobody(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            program,
        ])
        .args(args);
    command
}

/// A broker run by `nobody` at `addr` (an impostor, from this test's point of view).
fn impostor(addr: &str) -> std::process::Child {
    let mut child = as_nobody(BROKER, &["--addr", addr])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the impostor");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|line| line.is_ok_and(|line| line.contains("broker listening"))),
        "the impostor did not start"
    );
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn a_client_refuses_a_broker_of_another_user_before_sending_anything() {
    if !can_switch_user() {
        return;
    }
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("ipcq.sock").to_string_lossy().into_owned();
        let namespaced = format!("ipcq-impostor-{}", std::process::id());
        for addr in [path.as_str(), namespaced.as_str()] {
            let mut broker = impostor(addr);
            let err = ipcq::Client::connect(addr).unwrap_err();
            assert!(err.is_untrusted(), "{addr}: {err}");
            assert!(err.to_string().contains(&format!("uid {NOBODY}")), "{err}");
            // The command line says the same, and a deliberate setup can trust that user.
            let out = cli(addr, &["ping"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("untrusted server"), "{stderr}");
            let out = cli(addr, &["--trust-uid", NOBODY, "ping"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let options = ipcq::ConnectOptions::new().trust_uid(NOBODY.parse().unwrap());
            ipcq::Client::connect_with(addr, &options)
                .unwrap()
                .ping()
                .unwrap();
            let _ = broker.kill();
            let _ = broker.wait();
        }
    });
}

#[test]
fn the_default_address_lies_in_a_private_directory_checked_by_clients() {
    if !can_switch_user() {
        return;
    }
    watchdog(LIMIT, || {
        // `nobody`'s default address is /tmp/ipcq-65534/ipcq.sock. Another user (root here)
        // prepares that directory first: nobody's client refuses it.
        let dir = std::path::PathBuf::from(format!("/tmp/ipcq-{NOBODY}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let ping = || {
            as_nobody(CLI, &["ping"])
                .env_remove("IPCQ_ADDR")
                .env_remove("XDG_RUNTIME_DIR")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let out = ping();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("belongs to user 0"), "{stderr}");
        std::fs::remove_dir(&dir).unwrap();
        // A symbolic link there is refused too.
        std::os::unix::fs::symlink("/tmp", &dir).unwrap();
        let out = ping();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a directory"), "{stderr}");
        std::fs::remove_file(&dir).unwrap();
        // Missing, the client creates it, private, and finds no broker.
        let out = ping();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no broker answers"), "{stderr}");
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            NOBODY.parse::<u32>().unwrap()
        );
        std::fs::remove_dir(&dir).unwrap();
    });
}

#[test]
fn thousands_of_half_open_connections_of_another_user_do_not_starve_the_owner() {
    if !can_switch_user() {
        return;
    }
    watchdog(LIMIT, || {
        let broker = reachable_broker(&[]);
        let pid = broker.child.id();
        let mut crowd = Vec::new();
        let mut opened = 0;
        // Five processes of 1,000 each, within the usual limit of 1,024 descriptors.
        for _ in 0..5 {
            let mut child = as_nobody(HELPER, &["half-open", &broker.addr, "1000"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                &mut line,
            )
            .unwrap();
            opened += line
                .trim()
                .strip_prefix("open ")
                .unwrap()
                .parse::<usize>()
                .unwrap();
            crowd.push(child);
        }
        assert!(opened >= 4000, "only {opened} connections opened");
        // The owner still gets in at once.
        let start = std::time::Instant::now();
        broker.client().ping().unwrap();
        let took = start.elapsed();
        let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let refusals = broker.log().matches("connection refused").count();
        eprintln!(
            "{opened} half-open connections: owner's connect+ping {took:?}, broker holds \
             {descriptors} descriptors, {refusals} refusal lines logged"
        );
        assert!(took < Duration::from_secs(2), "the owner waited {took:?}");
        assert!(
            descriptors < 200,
            "the broker holds {descriptors} descriptors"
        );
        assert!(
            refusals < 500,
            "{refusals} refusal lines for {opened} connections"
        );
        drop(crowd);
    });
}
