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
    });
}
