//! The `ipcq` command line.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn put_get_stats_rm() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let addr = broker.addr.as_str();
        assert!(cli(addr, &["ping"]).status.success());
        assert!(cli(addr, &["put", "lines", "hello world"]).status.success());
        assert!(cli(addr, &["put", "lines", "second"]).status.success());

        let stats = cli(addr, &["stats"]);
        assert!(stats.status.success());
        let table = stdout(&stats);
        let row = table
            .lines()
            .find(|line| line.starts_with("lines"))
            .expect("a row for the queue");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..3], ["lines", "2", "-"], "{table}");

        let json = cli(addr, &["stats", "--json"]);
        let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let queue = &value["objects"][0];
        assert_eq!(queue["name"], "lines");
        assert_eq!(queue["depth"], 2);
        assert_eq!(queue["total_put"], 2);

        let got = cli(addr, &["get", "lines"]);
        assert!(got.status.success());
        assert_eq!(stdout(&got), "hello world\n");
        assert_eq!(
            stdout(&cli(addr, &["get", "lines", "--timeout", "5"])),
            "second\n"
        );

        assert!(cli(addr, &["rm", "lines"]).status.success());
        let again = cli(addr, &["rm", "lines"]);
        assert_eq!(again.status.code(), Some(2));
        assert!(
            stderr(&again).contains("no object is named 'lines'"),
            "{}",
            stderr(&again)
        );
    });
}

#[test]
fn cli_and_raw_queues_interoperate() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queue = client.raw_queue("bounded", 5).unwrap();
        queue.put(b"from a program").unwrap();
        // The command line finds the queue's capacity rather than conflicting with it.
        assert_eq!(
            stdout(&cli(&broker.addr, &["get", "bounded"])),
            "from a program\n"
        );
        assert!(cli(&broker.addr, &["put", "bounded", "from the shell"])
            .status
            .success());
        assert_eq!(&queue.get().unwrap()[..], b"from the shell");
    });
}

#[test]
fn empty_and_full_exit_1_with_a_message() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let empty = cli(&broker.addr, &["get", "nothing", "--nowait"]);
        assert_eq!(empty.status.code(), Some(1));
        assert!(
            stderr(&empty).contains("queue 'nothing' is empty"),
            "{}",
            stderr(&empty)
        );

        let timed = cli(&broker.addr, &["get", "nothing", "--timeout", "0.05"]);
        assert_eq!(timed.status.code(), Some(1));

        broker
            .client()
            .raw_queue("tiny", 1)
            .unwrap()
            .put(b"x")
            .unwrap();
        let full = cli(&broker.addr, &["put", "tiny", "y", "--nowait"]);
        assert_eq!(full.status.code(), Some(1));
        assert!(
            stderr(&full).contains("queue 'tiny' is full"),
            "{}",
            stderr(&full)
        );
    });
}

#[test]
fn no_broker_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let addr = dir.path().join("nobody.sock");
    let output = cli(&addr.to_string_lossy(), &["ping"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("no broker answers"), "{message}");
    assert!(message.contains("ipcq-broker"), "{message}");
}
