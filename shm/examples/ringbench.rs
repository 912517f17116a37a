//! The ring alone between two processes (Linux): how fast it moves 64-byte items one at a
//! time, and its round trip. Not ipcq's figures (no broker, no client API): what the
//! shared-memory data path has to work with on this machine.
//!
//! ```text
//! cargo run --release -p ipcq-shm --example ringbench -- tput 5000000
//! cargo run --release -p ipcq-shm --example ringbench -- pingpong 200000
//! ```
//!
//! The parent makes the rings (1024 slots of 64 bytes) and starts itself again as the
//! child, which maps them through `/proc/<parent>/fd/<n>`.

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("ringbench needs Linux (memfd and futex)");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    use ipcq_shm::{Owner, SharedRing, Take};

    pub(super) fn main() {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("child") {
            return child(&args[2..]);
        }
        let mode = args.get(1).map_or("tput", String::as_str);
        let n: usize = args
            .get(2)
            .map_or(5_000_000, |n| n.parse().expect("a count"));
        let to_child = SharedRing::create("to-child", 1024, 64).expect("a ring");
        let to_parent = SharedRing::create("to-parent", 1024, 64).expect("a ring");
        let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
            .args([
                "child".to_owned(),
                std::process::id().to_string(),
                mode.to_owned(),
                n.to_string(),
                to_child.file().as_raw_fd().to_string(),
                to_parent.file().as_raw_fd().to_string(),
            ])
            .spawn()
            .expect("the child");
        let me = Owner::new(1).expect("an owner");
        let item = [7u8; 64];
        if mode == "tput" {
            for _ in 0..n {
                to_child
                    .push_wait(me, &item, None, &mut || true)
                    .expect("room");
            }
        } else {
            let mut nanos = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                to_child
                    .push_wait(me, &item, None, &mut || true)
                    .expect("room");
                take(&to_parent, me);
                nanos.push(start.elapsed().as_nanos());
            }
            nanos.sort_unstable();
            println!(
                "ping-pong of {n}: p50 {:.2} us, p99 {:.2} us",
                nanos[n / 2] as f64 / 1e3,
                nanos[n * 99 / 100] as f64 / 1e3
            );
        }
        assert!(child.wait().expect("the child").success());
    }

    /// The next item, as long as it takes.
    fn take(ring: &SharedRing, me: Owner) -> Vec<u8> {
        match ring.take(me, None, &mut || true) {
            Take::Item(item) => item,
            other => panic!("no item: {other:?}"),
        }
    }

    /// The child: takes `n` items (`tput`) or echoes `n` of them back (`pingpong`).
    fn child(args: &[String]) {
        let [parent, mode, n, to_child, to_parent] = args else {
            panic!("child PARENT MODE N FD FD");
        };
        let open = |fd: &str| {
            let file = std::fs::File::options()
                .read(true)
                .write(true)
                .open(format!("/proc/{parent}/fd/{fd}"))
                .expect("the parent's ring");
            SharedRing::open(file).expect("a ring")
        };
        let n: usize = n.parse().expect("a count");
        let me = Owner::new(2).expect("an owner");
        let from_parent = open(to_child);
        if mode == "tput" {
            let start = Instant::now();
            for _ in 0..n {
                take(&from_parent, me);
            }
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "1 producer, 1 consumer, {n} items of 64 B: {:.2} M items/s",
                n as f64 / seconds / 1e6
            );
        } else {
            let back = open(to_parent);
            for _ in 0..n {
                let item = take(&from_parent, me);
                back.push_wait(me, &item, None, &mut || true).expect("room");
            }
        }
    }
}
