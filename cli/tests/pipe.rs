//! Pipes between real processes: ping-pong in order, simplex directions, exclusive ends,
//! end of file when a peer closes or dies, backpressure, poll, stats.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::*;
use ipcq::{End, Error, PipeOptions};

const LIMIT: Duration = Duration::from_secs(120);

/// Waits for the helper's "sent" line.
fn wait_sent(child: &mut std::process::Child) {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "sent");
}

#[test]
fn ping_pong_between_processes_in_order() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let parent = client.pipe::<u64>("chat", End::Zero).unwrap();
        let rounds = scaled(10_000);
        let child = helper(&["pipe-echo", &broker.addr, "chat", &rounds.to_string()]);
        for i in 0..rounds {
            parent.send(&i).unwrap();
            assert_eq!(parent.recv().unwrap(), i);
        }
        finish(child);
        // The child exited: its end is closed, and this end sees end of file.
        assert!(parent.recv().unwrap_err().is_closed());
        assert!(parent.send(&0).unwrap_err().is_closed());
    });
}

#[test]
fn simplex_pipe_has_one_direction() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let options = PipeOptions::new().duplex(false);
        let reader = client
            .pipe_with::<u64>("one-way", End::Zero, options)
            .unwrap();
        let err = reader.send(&1).unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref m) if m.contains("only receives")),
            "{err}"
        );

        let mut writer = helper(&[
            "pipe-send",
            &broker.addr,
            "one-way",
            "simplex",
            "100",
            "close",
        ]);
        wait_sent(&mut writer);
        for i in 0..100 {
            assert_eq!(reader.recv().unwrap(), i);
        }
        assert!(reader.recv().unwrap_err().is_closed());
        finish(writer);
        // The end its holder closed stays closed.
        let err = broker
            .client()
            .pipe_with::<u64>("one-way", End::One, options)
            .unwrap_err();
        assert!(err.is_closed(), "{err}");

        // The sending end of another simplex pipe cannot receive.
        let sender = client
            .pipe_with::<u64>("other-way", End::One, options)
            .unwrap();
        let err = sender.recv().unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref m) if m.contains("only sends")),
            "{err}"
        );
        // Opening with other options is a conflict.
        let err = client.pipe::<u64>("one-way", End::Zero).unwrap_err();
        assert!(err.is_conflict(), "{err}");
    });
}

#[test]
fn an_end_is_held_by_one_client_and_stays_closed() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let mut holder = helper(&["pipe-send", &broker.addr, "owned", "duplex", "0", "hold"]);
        wait_sent(&mut holder);
        let err = client.pipe::<u64>("owned", End::One).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err}");
        let stats = pipe_stats(&client, "owned");
        assert_eq!((stats.held, stats.closed), ([false, true], [false, false]));

        kill(&mut holder);
        holder.wait().unwrap();
        let zero = client.pipe::<u64>("owned", End::Zero).unwrap();
        assert!(zero.recv().unwrap_err().is_closed());
        // The dead holder's end is not handed to someone else: it stays closed.
        let err = broker.client().pipe::<u64>("owned", End::One).unwrap_err();
        assert!(err.is_closed(), "{err}");
        let stats = pipe_stats(&client, "owned");
        assert_eq!(stats.closed, [false, true]);
    });
}

#[test]
fn killed_sender_peer_receives_everything_then_eof() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let zero = client.pipe::<u64>("doomed", End::Zero).unwrap();
        let mut sender = helper(&["pipe-send", &broker.addr, "doomed", "duplex", "500", "hold"]);
        wait_sent(&mut sender);
        kill(&mut sender);
        sender.wait().unwrap();
        let got: Vec<u64> = std::iter::from_fn(|| match zero.recv() {
            Ok(item) => Some(item),
            Err(err) => {
                assert!(err.is_closed(), "{err}");
                None
            }
        })
        .collect();
        assert_eq!(got, (0..500).collect::<Vec<u64>>());
        assert!(zero.recv().unwrap_err().is_closed(), "end of file stays");
    });
}

#[test]
fn sends_wait_while_the_peer_buffer_is_full() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let options = PipeOptions::new().capacity(4);
        let one = broker
            .client()
            .pipe_with::<u32>("narrow", End::One, options)
            .unwrap();
        let zero = broker
            .client()
            .pipe_with::<u32>("narrow", End::Zero, options)
            .unwrap();
        for i in 0..4 {
            one.send_nowait(&i).unwrap();
        }
        assert!(one.send_nowait(&4).unwrap_err().is_full());
        assert!(one
            .send_timeout(&4, Duration::from_millis(30))
            .unwrap_err()
            .is_full());
        let blocked = {
            let one = one.clone();
            std::thread::spawn(move || one.send(&4))
        };
        let observer = broker.client();
        while pipe_stats(&observer, "narrow").buffered[0] != 4 {
            std::thread::yield_now();
        }
        assert_eq!(zero.recv().unwrap(), 0);
        blocked.join().unwrap().unwrap();
        let rest: Vec<u32> = (0..4).map(|_| zero.recv().unwrap()).collect();
        assert_eq!(rest, [1, 2, 3, 4]);
        // The other direction has its own buffer.
        zero.send(&9).unwrap();
        assert_eq!(one.recv().unwrap(), 9);
    });
}

#[test]
fn poll_says_whether_recv_would_return_at_once() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let zero = broker.client().pipe::<String>("polled", End::Zero).unwrap();
        let one = broker.client().pipe::<String>("polled", End::One).unwrap();
        let start = Instant::now();
        assert!(!zero.poll(Duration::from_millis(50)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(50));

        let poller = {
            let zero = zero.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                (zero.poll(Duration::from_secs(60)).unwrap(), start.elapsed())
            })
        };
        one.send(&"hello".to_string()).unwrap();
        let (ready, waited) = poller.join().unwrap();
        assert!(ready);
        assert!(
            waited < Duration::from_secs(60),
            "poll returned when data came"
        );
        // poll did not consume: the item is there for recv.
        assert!(zero.poll(Duration::ZERO).unwrap());
        assert_eq!(zero.recv().unwrap(), "hello");
        one.close().unwrap();
        assert!(
            zero.poll(Duration::from_secs(60)).unwrap(),
            "end of file is ready too"
        );
        assert!(zero.recv().unwrap_err().is_closed());
    });
}

#[test]
fn stats_show_pipes() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let zero = client.pipe::<u32>("shown", End::Zero).unwrap();
        let one = broker.client().pipe::<u32>("shown", End::One).unwrap();
        zero.send(&1).unwrap();
        for i in 0..3 {
            one.send(&i).unwrap();
        }
        let observer = broker.client();
        while pipe_stats(&observer, "shown").buffered != [3, 1] {
            std::thread::yield_now();
        }
        let stats = pipe_stats(&observer, "shown");
        assert_eq!(
            (stats.duplex, stats.capacity, stats.held, stats.closed),
            (true, 1024, [true, true], [false, false])
        );
        let output = cli(&broker.addr, &["stats"]);
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = table
            .lines()
            .find(|l| l.starts_with("shown"))
            .expect("a pipe row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["shown", "duplex", "1024", "3", "1", "held", "held"],
            "{table}"
        );
        let json = cli(&broker.addr, &["stats", "--json"]);
        let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(value["objects"][0]["kind"], "pipe");
        assert_eq!(value["objects"][0]["buffered"], serde_json::json!([3, 1]));
    });
}
