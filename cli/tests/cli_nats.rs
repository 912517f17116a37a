//! The `ipcq` command line against a real nats-server: `--addr nats://...` lists, fills,
//! empties, closes and removes the queues that programs use there.

#[path = "../../nats/tests/common/mod.rs"]
mod nats_server;

use nats_server::NatsServer;

const CLI: &str = env!("CARGO_BIN_EXE_ipcq");

fn ipcq(addr: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(CLI)
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ipcq")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_command_line_works_against_nats() {
    let server = NatsServer::start();
    let addr = server.addr.as_str();
    assert!(ipcq(addr, &["ping"]).status.success());
    // Nothing is created by a typo.
    let out = ipcq(addr, &["put", "jobs", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no queue is named 'jobs'"),
        "{}",
        text(&out.stderr)
    );
    assert!(ipcq(addr, &["create", "jobs", "--capacity", "2"])
        .status
        .success());
    assert!(ipcq(addr, &["put", "jobs", "first"]).status.success());
    assert!(ipcq(addr, &["put", "jobs", "second"]).status.success());
    let full = ipcq(addr, &["put", "jobs", "third", "--nowait"]);
    assert_eq!(full.status.code(), Some(1), "{}", text(&full.stderr));
    assert!(text(&full.stderr).contains("is full"));
    let stats = text(&ipcq(addr, &["stats"]).stdout);
    let row: Vec<&str> = stats
        .lines()
        .find(|line| line.starts_with("jobs "))
        .expect("a row for the queue")
        .split_whitespace()
        .collect();
    // name, depth, capacity, in flight, ..., items put, ..., state
    assert_eq!(row[..4], ["jobs", "2", "2", "0"], "{stats}");
    assert_eq!(row[7], "2", "{stats}");
    assert!(row.contains(&"open"), "{stats}");
    let json: serde_json::Value =
        serde_json::from_slice(&ipcq(addr, &["stats", "--json"]).stdout).unwrap();
    assert_eq!(json["objects"][0]["depth"], 2);
    assert_eq!(text(&ipcq(addr, &["get", "jobs"]).stdout), "first\n");
    assert!(ipcq(addr, &["close", "jobs"]).status.success());
    let closed = ipcq(addr, &["put", "jobs", "late", "--nowait"]);
    assert!(
        text(&closed.stderr).contains("closed"),
        "{}",
        text(&closed.stderr)
    );
    assert_eq!(
        text(&ipcq(addr, &["get", "jobs", "--nowait"]).stdout),
        "second\n"
    );
    let drained = ipcq(addr, &["get", "jobs", "--nowait"]);
    assert_eq!(drained.status.code(), Some(2));
    assert!(
        text(&drained.stderr).contains("closed"),
        "{}",
        text(&drained.stderr)
    );
    assert!(ipcq(addr, &["rm", "jobs"]).status.success());
    let gone = ipcq(addr, &["rm", "jobs"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        text(&gone.stderr).contains("jobs"),
        "{}",
        text(&gone.stderr)
    );
    let empty = ipcq(addr, &["get", "other", "--create", "--timeout", "0.2"]);
    assert_eq!(empty.status.code(), Some(1), "{}", text(&empty.stderr));
}
