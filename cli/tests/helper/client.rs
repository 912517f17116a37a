//! `ipcq-test-client`: client processes for the end-to-end tests in `tests/`. Not meant
//! for users; each role is one kind of process a test needs.
//!
//! ```text
//! ipcq-test-client produce ADDR QUEUE CAPACITY FIRST COUNT   put ids FIRST.. as u64
//! ipcq-test-client consume ADDR QUEUE CAPACITY               get u64s until Closed, print each
//! ipcq-test-client fifo ADDR QUEUE CAPACITY COUNT            get COUNT u64s, check they are 0, 1, ...
//! ipcq-test-client get ADDR QUEUE CAPACITY                   one blocking get, print the item
//! ipcq-test-client hold ADDR QUEUE CAPACITY COUNT             get COUNT u64s, print "holding",
//!                                                             then wait to be killed
//! ipcq-test-client hold-deliveries ADDR QUEUE CAPACITY COUNT  take COUNT u64s as deliveries
//!                                                             (prefetch 1), print "holding",
//!                                                             then wait to be killed
//! ipcq-test-client select ADDR QUEUES                        select over the u64 queues of the
//!                                                             comma-separated QUEUES until all
//!                                                             are closed, print "INDEX ITEM"
//! ipcq-test-client pipe-echo ADDR PIPE COUNT                  on end 1 of a duplex pipe, send
//!                                                             back COUNT u64s, then exit
//! ipcq-test-client pipe-send ADDR PIPE DUPLEX COUNT THEN      on end 1, send 0..COUNT, then
//!                                                             `close`, `exit` or `hold`
//! ipcq-test-client lock-count ADDR LOCK FILE COUNT            COUNT times under LOCK: read the
//!                                                             number in FILE, write it + 1
//! ipcq-test-client lock-hold ADDR LOCK                        acquire, print "held", wait to
//!                                                             be killed
//! ipcq-test-client sem-room ADDR SEM PERMITS LOCK FILE        enter the room (SEM, a guard), count the
//!                                                             guests inside in FILE under LOCK
//! ipcq-test-client sem-hold ADDR SEM PERMITS                  take a permit, print "held", wait
//! ipcq-test-client event-wait ADDR EVENT                      print "set" once EVENT is set
//! ipcq-test-client barrier-wait ADDR BARRIER PARTIES          wait at BARRIER, print the place
//! ipcq-test-client spin-produce ADDR QUEUE CAPACITY          print "started", then put ids 0, 1, ...
//!                                                             until killed
//! ipcq-test-client task ADDR QUEUE COUNT                      get COUNT u64s, task_done each
//! ipcq-test-client chaos-produce ADDR QUEUE CAPACITY FIRST END
//!                                                             for ids FIRST..END: print
//!                                                             "a ID", put it, print "o ID"
//! ipcq-test-client chaos-consume ADDR QUEUE CAPACITY MODE     until Closed, print each id
//!                                                             got; MODE: `prefetch` (default
//!                                                             get), `single` (prefetch 1),
//!                                                             `batch` (get_many of 64)
//! ipcq-test-client chaos-work ADDR QUEUE CAPACITY            until Closed, take each id as a
//!                                                             delivery: print "s ID", work
//!                                                             200 µs, acknowledge, print
//!                                                             "d ID"
//! ipcq-test-client half-open ADDR COUNT                       open COUNT connections and never
//!                                                             greet; print "open N" (how many
//!                                                             the system allowed), wait for
//!                                                             stdin to close
//! ```
//!
//! A queue's CAPACITY may end in `:auto-delete` to open it as an auto-delete queue.

use std::io::Write;

use anyhow::{bail, Context};
use ipcq::{Client, End, Error, PipeOptions, QueueOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}"))
    };
    let role = arg(0)?;
    if role == "half-open" {
        return half_open(arg(1)?, arg(2)?.parse()?);
    }
    let client = Client::connect(arg(1)?)?;
    if role == "select" {
        return select(&client, arg(2)?);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(done) = sync_role(&client, role, &args)? {
        writeln!(out, "{done}")?;
        out.flush()?;
        return Ok(());
    }
    if let Some(pipe_role) = role.strip_prefix("pipe-") {
        let name = arg(2)?;
        match pipe_role {
            "echo" => {
                let end = client.pipe::<u64>(name, End::One)?;
                for _ in 0..arg(3)?.parse::<u64>()? {
                    end.send(&end.recv()?)?;
                }
            }
            "send" => {
                let options = PipeOptions::new().duplex(arg(3)? == "duplex");
                let end = client.pipe_with::<u64>(name, End::One, options)?;
                for i in 0..arg(4)?.parse::<u64>()? {
                    end.send(&i)?;
                }
                writeln!(out, "sent")?;
                out.flush()?;
                match arg(5)? {
                    "close" => end.close()?,
                    "exit" => {}
                    _ => loop {
                        std::thread::park();
                    },
                }
            }
            other => bail!("unknown role pipe-{other}"),
        }
        out.flush()?;
        return Ok(());
    }
    let (capacity, auto_delete) = match arg(3)?.strip_suffix(":auto-delete") {
        Some(capacity) => (capacity, true),
        None => (arg(3)?, false),
    };
    let options = QueueOptions::new()
        .capacity(capacity.parse()?)
        .auto_delete(auto_delete);
    let queue = client.queue_with::<u64>(arg(2)?, options)?;
    match role {
        "produce" => {
            let first: u64 = arg(4)?.parse()?;
            let count: u64 = arg(5)?.parse()?;
            for id in first..first + count {
                queue.put(&id)?;
            }
            writeln!(out, "done")?;
        }
        "chaos-produce" => {
            // One write per line: what the log says happened, happened.
            let mut out = std::io::stdout().lock();
            for id in arg(4)?.parse::<u64>()?..arg(5)?.parse()? {
                out.write_all(format!("a {id}\n").as_bytes())?;
                queue.put(&id)?;
                out.write_all(format!("o {id}\n").as_bytes())?;
            }
        }
        "spin-produce" => {
            writeln!(out, "started")?;
            out.flush()?;
            for id in 0.. {
                queue.put(&id)?;
            }
        }
        "chaos-work" => {
            let mut out = std::io::stdout().lock();
            loop {
                let job = match queue.get_delivery() {
                    Ok(job) => job,
                    Err(Error::Closed) => break,
                    Err(err) => return Err(err.into()),
                };
                writeln!(out, "s {}", *job)?;
                out.flush()?;
                std::thread::sleep(std::time::Duration::from_micros(200));
                let id = *job;
                job.ack()?;
                writeln!(out, "d {id}")?;
                out.flush()?;
            }
        }
        "chaos-consume" => {
            let mut out = std::io::stdout().lock();
            let mode = arg(4)?;
            if mode == "single" {
                queue.set_prefetch(1);
            }
            loop {
                let got = match mode {
                    "batch" => queue.get_many(64),
                    _ => queue.get().map(|id| vec![id]),
                };
                match got {
                    Ok(ids) => {
                        let lines: String = ids.iter().map(|id| format!("{id}\n")).collect();
                        out.write_all(lines.as_bytes())?;
                    }
                    Err(Error::Closed) => break,
                    Err(err) => return Err(err.into()),
                }
            }
        }
        "consume" => loop {
            match queue.get() {
                Ok(id) => writeln!(out, "{id}")?,
                Err(Error::Closed) => break,
                Err(err) => return Err(err.into()),
            }
        },
        "fifo" => {
            let count: u64 = arg(4)?.parse()?;
            for expected in 0..count {
                let id = queue.get()?;
                if id != expected {
                    bail!("out of order: got {id}, expected {expected}");
                }
            }
            writeln!(out, "in order: {count}")?;
        }
        "get" => {
            let id = queue.get()?;
            writeln!(out, "{id}")?;
        }
        "hold" => {
            // In batches of 10, so that its pace makes the client fetch ahead even on a
            // slow transport: it then holds prefetched items past the ones it took.
            let count: usize = arg(4)?.parse()?;
            let mut taken = 0;
            while taken < count {
                taken += queue.get_many((count - taken).min(10))?.len();
            }
            writeln!(out, "holding")?;
            out.flush()?;
            // Keep the connection, and whatever was prefetched, until killed.
            loop {
                std::thread::park();
            }
        }
        "hold-deliveries" => {
            let count: u64 = arg(4)?.parse()?;
            queue.set_prefetch(1);
            let held: Vec<_> = (0..count)
                .map(|_| queue.get_delivery())
                .collect::<Result<_, _>>()?;
            writeln!(out, "holding")?;
            out.flush()?;
            // Mid-job until killed: none is acknowledged.
            let _held = held;
            loop {
                std::thread::park();
            }
        }
        other => bail!("unknown role {other}"),
    }
    out.flush()?;
    Ok(())
}

/// Roles on locks, semaphores and events; `None` for other roles.
fn sync_role(client: &Client, role: &str, args: &[String]) -> anyhow::Result<Option<String>> {
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}"))
    };
    let park = || -> ! {
        loop {
            std::thread::park();
        }
    };
    let announce = |line: &str| -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        Ok(())
    };
    Ok(Some(match role {
        "lock-count" => {
            let lock = client.lock(arg(2)?)?;
            let file = arg(3)?;
            for _ in 0..arg(4)?.parse::<u64>()? {
                let _guard = lock.lock()?;
                let value: u64 = std::fs::read_to_string(file)?.trim().parse()?;
                std::fs::write(file, (value + 1).to_string())?;
            }
            "counted".into()
        }
        "lock-hold" => {
            let _held = client.lock(arg(2)?)?.acquire()?;
            announce("held")?;
            park()
        }
        "sem-room" => {
            let room = client.semaphore(arg(2)?, arg(3)?.parse()?)?;
            let lock = client.lock(arg(4)?)?;
            let file = arg(5)?;
            // FILE holds "inside most": guests in the room now, and the most ever seen.
            let update = |change: i64| -> anyhow::Result<()> {
                let _guard = lock.lock()?;
                let text = std::fs::read_to_string(file)?;
                let mut numbers = text.split_whitespace().map(str::parse::<i64>);
                let inside = numbers.next().context("inside")?? + change;
                let most = numbers.next().context("most")??.max(inside);
                std::fs::write(file, format!("{inside} {most}"))?;
                Ok(())
            };
            // The guard gives the permit back when it goes.
            let guard = room.enter()?;
            update(1)?;
            // Stay a moment, so that guests overlap.
            std::thread::sleep(std::time::Duration::from_millis(20));
            update(-1)?;
            drop(guard);
            "left".into()
        }
        "sem-hold" => {
            let _held = client.semaphore(arg(2)?, arg(3)?.parse()?)?.acquire()?;
            announce("held")?;
            park()
        }
        "event-wait" => {
            client.event(arg(2)?)?.wait()?;
            "set".into()
        }
        "barrier-wait" => {
            let barrier = client.barrier(arg(2)?, arg(3)?.parse()?)?;
            match barrier.wait() {
                Ok(place) => place.to_string(),
                Err(err) if err.is_broken() => "broken".into(),
                Err(err) => return Err(err.into()),
            }
        }
        "task" => {
            let queue = client.queue::<u64>(arg(2)?, 0)?;
            queue.set_prefetch(1);
            for _ in 0..arg(3)?.parse::<u64>()? {
                queue.get()?;
                queue.task_done()?;
            }
            "done".into()
        }
        _ => return Ok(None),
    }))
}

/// Connections that never send a handshake, as a crowd of idle or hostile processes would
/// hold them, until stdin closes.
#[cfg(unix)]
fn half_open(addr: &str, count: usize) -> anyhow::Result<()> {
    use std::io::Read;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match std::os::unix::net::UnixStream::connect(addr) {
            Ok(stream) => held.push(stream),
            // Out of descriptors (or the broker's backlog is full): hold what we have.
            Err(_) => break,
        }
    }
    println!("open {}", held.len());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    Ok(())
}

#[cfg(not(unix))]
fn half_open(_addr: &str, _count: usize) -> anyhow::Result<()> {
    bail!("half-open is for Unix sockets")
}

/// Selects over `names` until every queue is closed, printing each item as it comes.
fn select(client: &Client, names: &str) -> anyhow::Result<()> {
    let queues = names
        .split(',')
        .map(|name| client.queue::<u64>(name, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut select = ipcq::Select::new();
    for queue in &queues {
        select.add(queue.raw());
    }
    let mut stdout = std::io::stdout().lock();
    loop {
        match select.get() {
            Ok((index, item)) => {
                let item = queues[index].decode(&item)?;
                writeln!(stdout, "{index} {item}")?;
                stdout.flush()?;
            }
            Err(Error::Closed) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
}
