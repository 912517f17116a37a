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
//! ipcq-test-client pipe-echo ADDR PIPE COUNT                  on end 1 of a duplex pipe, send
//!                                                             back COUNT u64s, then exit
//! ipcq-test-client pipe-send ADDR PIPE DUPLEX COUNT THEN      on end 1, send 0..COUNT, then
//!                                                             `close`, `exit` or `hold`
//! ```

use std::io::Write;

use anyhow::{bail, Context};
use ipcq::{Client, End, Error, PipeOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}"))
    };
    let role = arg(0)?;
    let client = Client::connect(arg(1)?)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
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
    let queue = client.queue::<u64>(arg(2)?, arg(3)?.parse()?)?;
    match role {
        "produce" => {
            let first: u64 = arg(4)?.parse()?;
            let count: u64 = arg(5)?.parse()?;
            for id in first..first + count {
                queue.put(&id)?;
            }
            writeln!(out, "done")?;
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
            let count: u64 = arg(4)?.parse()?;
            for _ in 0..count {
                queue.get()?;
            }
            writeln!(out, "holding")?;
            out.flush()?;
            // Keep the connection, and whatever was prefetched, until killed.
            loop {
                std::thread::park();
            }
        }
        other => bail!("unknown role {other}"),
    }
    out.flush()?;
    Ok(())
}
