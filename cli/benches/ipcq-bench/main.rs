//! `ipcq-bench`: the multi-process benchmark. Producers, consumers and the broker are
//! separate processes; peers run the same workloads in the same run.
//!
//! ```text
//! cargo bench --bench ipcq-bench                         # every workload, ipcq only
//! cargo bench --bench ipcq-bench -- --vs all --runs 5    # and Python, Redis, a raw relay
//! cargo bench --bench ipcq-bench -- --workload 1p1c --json
//! ```
//!
//! Workloads: `1p1c` (put/get one item at a time), `batch` (put_many/get_many of 64),
//! `4p4c`, `pingpong` (latency over two queues), `sizes` (1p1c with 4 KiB and 1 MiB
//! items), `rss` (broker memory with 1M queued 64 B items). Each figure is the median of
//! `--runs` runs, with min and max. `soak` (not run by default) moves a steady 20,000
//! items/s for `--soak-secs` and reports how the broker's memory and file descriptors
//! moved. `load` (not run by default) has `--connections` async clients (1,000) each do a
//! put and a get on 100 queues, with latency percentiles and the broker's memory.

#[cfg(unix)]
mod unix;

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    unix::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("ipcq-bench runs on Unix only: its peers (Redis, the raw relay) use Unix sockets");
}
