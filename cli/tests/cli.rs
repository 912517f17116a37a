//! The `ipcq` command line.

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
        assert!(cli(addr, &["put", "lines", "hello world", "--create"])
            .status
            .success());
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
        assert!(cli(&broker.addr, &["create", "nothing"]).status.success());
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
    let addr = addr_in(dir.path(), "nobody");
    let output = cli(&addr, &["ping"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("no broker answers"), "{message}");
    assert!(message.contains("ipcq-broker"), "{message}");
}

#[test]
fn get_and_put_create_nothing_unless_asked() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let addr = broker.addr.as_str();
        for args in [
            &["get", "typo", "--nowait"][..],
            &["put", "typo", "x"][..],
            &["close", "typo"][..],
        ] {
            let out = cli(addr, args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert!(
                stderr(&out).contains("no queue is named 'typo'"),
                "{}",
                stderr(&out)
            );
        }
        assert!(
            broker.client().stats().unwrap().is_empty(),
            "nothing was created"
        );
        // `create` makes a bounded queue that a program then opens with the same capacity.
        assert!(cli(addr, &["create", "work", "--capacity", "3"])
            .status
            .success());
        let work = broker.client().raw_queue("work", 3).unwrap();
        assert!(cli(addr, &["put", "work", "a"]).status.success());
        assert_eq!(&work.get().unwrap()[..], b"a");
        // `close`: puts fail, what is left can be taken, then "closed".
        assert!(cli(addr, &["put", "work", "b"]).status.success());
        assert!(cli(addr, &["close", "work"]).status.success());
        let late = cli(addr, &["put", "work", "c"]);
        assert_eq!(late.status.code(), Some(2));
        assert!(stderr(&late).contains("is closed"), "{}", stderr(&late));
        assert_eq!(stdout(&cli(addr, &["get", "work"])), "b\n");
        assert!(stderr(&cli(addr, &["get", "work"])).contains("is closed"));
        // `--create` on put makes the queue with the capacity given.
        assert!(
            cli(addr, &["put", "made", "x", "--create", "--capacity", "7"])
                .status
                .success()
        );
        broker.client().raw_queue("made", 7).unwrap();
    });
}

#[test]
fn stats_columns_line_up_for_any_name() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let long = "a-queue-name-much-longer-than-the-twenty-eight-characters-of-old";
        client.raw_queue("q", 0).unwrap().put(b"1").unwrap();
        client.raw_queue(long, 5).unwrap();
        let table = stdout(&cli(&broker.addr, &["stats"]));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        // Every column ends at the same place on every line.
        let depth_end = lines[0].find("depth").unwrap() + "depth".len();
        for line in &lines[1..] {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let depth_at = line[cells[0].len()..].find(cells[1]).unwrap() + cells[0].len();
            assert_eq!(depth_at + cells[1].len(), depth_end, "{table}");
        }
    });
}

#[test]
fn every_command_fails_in_time_against_a_listener_that_never_answers() {
    use interprocess::local_socket::traits::ListenerExt as _;
    watchdog(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let addr = addr_in(dir.path(), "mute");
        let listener = common::raw::listen(&addr);
        // Accept and hold every connection, never saying a word.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let runs: [&[&str]; 6] = [
            &["ping"],
            &["stats"],
            &["get", "q", "--nowait"],
            &["get", "q", "--timeout", "1"],
            &["put", "q", "x", "--nowait"],
            &["rm", "q"],
        ];
        for args in runs {
            let start = std::time::Instant::now();
            let out = cli(&addr, &[&["--connect-timeout", "1"][..], args].concat());
            let took = start.elapsed();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("no answer from"),
                "{args:?}: {}",
                stderr(&out)
            );
            assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        }
    });
}

#[test]
fn versions_name_their_program() {
    let out = std::process::Command::new(BROKER)
        .arg("--version")
        .output()
        .unwrap();
    assert!(stdout(&out).starts_with("ipcq-broker "), "{}", stdout(&out));
    let out = std::process::Command::new(CLI)
        .arg("--version")
        .output()
        .unwrap();
    assert!(stdout(&out).starts_with("ipcq "), "{}", stdout(&out));
}
