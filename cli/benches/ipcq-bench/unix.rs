//! The benchmark proper: Unix only, since its peers (Redis, the raw relay) listen on Unix
//! sockets.

// Counts and sizes here are small numbers moved between integer types for arithmetic.
#![allow(clippy::cast_possible_truncation)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use ipcq::{Client, Error};

const BROKER: &str = env!("CARGO_BIN_EXE_ipcq-broker");

/// `--capacity` of the benchmark queue; children read it from `IPCQ_BENCH_CAPACITY`.
fn capacity() -> usize {
    std::env::var("IPCQ_BENCH_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The benchmark queue: `capacity()` items, and slots in shared memory for items of
/// `IPCQ_BENCH_SLOT` bytes (0: the broker's default), which the workloads of large items
/// set.
fn bench_queue() -> ipcq::QueueOptions {
    let slot = std::env::var("IPCQ_BENCH_SLOT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ipcq::QueueOptions::new()
        .capacity(capacity())
        .shared_slot_size(slot)
}

/// Runs `f` with the environment variable `name` set to `value` (for the children it
/// starts), then as it was.
fn with_env<T>(name: &str, value: &str, f: impl FnOnce() -> T) -> T {
    let before = std::env::var(name).ok();
    std::env::set_var(name, value);
    let out = f();
    match before {
        Some(before) => std::env::set_var(name, before),
        None => std::env::remove_var(name),
    }
    out
}

/// `--broker-threads`, for every broker the benchmark starts.
static BROKER_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(2);

#[derive(Debug, Parser, Clone)]
#[command(about = "ipcq's multi-process benchmark")]
struct Args {
    /// Workloads to run (default: all): 1p1c, batch, unbounded, 4p4c, pingpong, sizes,
    /// rss; also `acked` (1p1c with acknowledged deliveries), `async` (1p1c and batches on
    /// the tokio client), `load` and `soak`, not in the default set.
    #[arg(long = "workload", short = 'w')]
    workloads: Vec<String>,
    /// Peers to measure in the same run: python, redis, relay, zmq (ZeroMQ PUSH/PULL over
    /// ipc://, pyzmq), socket (ipcq itself with a `--no-shm` broker: its socket path), all,
    /// none.
    #[arg(long, default_value = "none")]
    vs: String,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Items per throughput run (64 B items; fewer for larger items).
    #[arg(long, default_value_t = 400_000)]
    items: u64,
    /// Round trips per ping-pong run.
    #[arg(long, default_value_t = 20_000)]
    round_trips: u64,
    /// Interleaved rounds: each round runs every workload once on every system (ipcq, the
    /// peers of `--vs`, the `--baseline` build), and the report gives, per workload and
    /// system, the median over the rounds of ipcq's per-round ratio to it, with min-max.
    /// On a noisy machine this is the figure to trust; `--runs` is ignored.
    #[arg(long)]
    rounds: Option<usize>,
    /// With `--rounds`: another build's benchmark program (`cargo bench --no-run` prints
    /// its path), run once per round and workload as the system `baseline`, so that two
    /// builds are compared in interleaved rounds.
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Client connections of the `load` workload (not in the default set).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Length of the `soak` workload (not in the default set), in seconds.
    #[arg(long, default_value_t = 600)]
    soak_secs: u64,
    /// Capacity of the benchmark queue (Python's peer uses `Queue(1000)`).
    #[arg(long, default_value_t = 1000)]
    capacity: usize,
    /// Runtime threads of the broker process.
    #[arg(long, default_value_t = 2)]
    broker_threads: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: the role of a child process, and its arguments.
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true)]
    role: Vec<String>,
}

pub(crate) fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.role.is_empty() {
        return child(&args.role);
    }
    BROKER_THREADS.store(args.broker_threads, std::sync::atomic::Ordering::Relaxed);
    // Children inherit the environment.
    std::env::set_var("IPCQ_BENCH_CAPACITY", args.capacity.to_string());
    let all = [
        "1p1c",
        "batch",
        "unbounded",
        "4p4c",
        "pingpong",
        "sizes",
        "rss",
    ];
    let workloads: Vec<String> = if args.workloads.is_empty() {
        all.iter().map(|w| w.to_string()).collect()
    } else {
        args.workloads.clone()
    };
    let peers: Vec<&str> = match args.vs.as_str() {
        "none" => vec![],
        "all" => vec!["python", "redis", "relay", "zmq", "socket"],
        list => list.split(',').collect(),
    };
    if let Some(rounds) = args.rounds {
        return run_rounds(&args, rounds, &workloads, &peers);
    }
    if args.baseline.is_some() {
        bail!("--baseline compares builds in interleaved rounds: give --rounds N too");
    }
    let mut figures = Vec::new();
    for workload in &workloads {
        figures.extend(run_workload(&args, workload, &peers)?);
    }
    report(&figures, args.json);
    Ok(())
}

/// `--rounds N`: every round runs each workload once on every system, in the same order;
/// the report is the median of per-round ratios, which a noisy machine moves far less than
/// the figures themselves.
fn run_rounds(
    args: &Args,
    rounds: usize,
    workloads: &[String],
    peers: &[&str],
) -> anyhow::Result<()> {
    if rounds == 0 {
        bail!("--rounds needs at least one round");
    }
    let once = Args {
        runs: 1,
        ..args.clone()
    };
    // Per round, every figure of every workload.
    let mut per_round: Vec<Vec<Figure>> = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        let mut figures = Vec::new();
        for workload in workloads {
            figures.extend(run_workload(&once, workload, peers)?);
            if let Some(baseline) = &args.baseline {
                figures.extend(run_baseline(baseline, &once, workload)?);
            }
        }
        per_round.push(figures);
    }
    report_rounds(&per_round, args.json);
    Ok(())
}

/// One run of `workload` by another build's benchmark program; its ipcq figures become the
/// system `baseline` (`baseline-tokio` for the tokio client).
fn run_baseline(
    program: &std::path::Path,
    args: &Args,
    workload: &str,
) -> anyhow::Result<Vec<Figure>> {
    let output = Command::new(program)
        .args([
            "--workload",
            workload,
            "--runs",
            "1",
            "--json",
            "--vs",
            "none",
        ])
        .args(["--items", &args.items.to_string()])
        .args(["--capacity", &args.capacity.to_string()])
        .args(["--broker-threads", &args.broker_threads.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running the baseline {}", program.display()))?;
    if !output.status.success() {
        bail!(
            "the baseline {} failed: {}",
            program.display(),
            output.status
        );
    }
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("the baseline's --json output")?;
    let mut figures = Vec::new();
    for row in rows {
        let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
        let Some(system) = text("system")
            .strip_prefix("ipcq")
            .map(|rest| format!("baseline{rest}"))
        else {
            continue;
        };
        let unit = match text("unit").as_str() {
            "items/s" => "items/s",
            "µs" => "µs",
            "B/item" => "B/item",
            _ => continue,
        };
        figures.push(Figure {
            workload: text("workload"),
            system,
            unit,
            higher_is_better: unit == "items/s",
            runs: vec![row["median"].as_f64().context("a median")?],
            detail: String::new(),
        });
    }
    Ok(figures)
}

/// The ipcq figure a figure is compared with: `ipcq-tokio` for the tokio client's
/// workloads and their baseline, `ipcq` otherwise.
fn reference_system(system: &str) -> &'static str {
    if system.ends_with("-tokio") {
        "ipcq-tokio"
    } else {
        "ipcq"
    }
}

/// One workload on one system, over the rounds.
struct RoundRow {
    workload: String,
    system: String,
    unit: &'static str,
    /// Its figure in each round.
    values: Vec<f64>,
    /// How many times better ipcq was in each round (none for ipcq itself).
    ratios: Vec<f64>,
}

fn report_rounds(per_round: &[Vec<Figure>], json: bool) {
    let mut rows: Vec<RoundRow> = Vec::new();
    for figures in per_round {
        for figure in figures {
            let reference = figures.iter().find(|f| {
                f.workload == figure.workload && f.system == reference_system(&figure.system)
            });
            let value = figure.median();
            let ratio = reference.map(|r| {
                let ipcq = r.median();
                if figure.higher_is_better {
                    ipcq / value
                } else {
                    value / ipcq
                }
            });
            let at = rows
                .iter()
                .position(|row| row.workload == figure.workload && row.system == figure.system);
            let row = match at {
                Some(at) => &mut rows[at],
                None => {
                    rows.push(RoundRow {
                        workload: figure.workload.clone(),
                        system: figure.system.clone(),
                        unit: figure.unit,
                        values: Vec::new(),
                        ratios: Vec::new(),
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.values.push(value);
            row.ratios.extend(ratio);
        }
    }
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let min = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |values: &[f64]| values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                serde_json::json!({
                    "workload": row.workload, "system": row.system, "unit": row.unit,
                    "rounds": row.values, "median": median(&row.values),
                    "ipcq_ratios": row.ratios, "ipcq_ratio_median": median(&row.ratios),
                    "ipcq_ratio_min": min(&row.ratios), "ipcq_ratio_max": max(&row.ratios),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return;
    }
    println!(
        "\n{} interleaved rounds; \"ipcq is\": the median of per-round ratios (ipcq's throughput to the\nsystem's, or the system's latency to ipcq's), min - max",
        per_round.len()
    );
    println!(
        "\n{:<14} {:<14} {:>12} {:>8} {:>10} {:>15}",
        "workload", "system", "median", "unit", "ipcq is", "min - max"
    );
    for row in &rows {
        let (ratio, range) = if row.ratios.is_empty() || row.system == reference_system(&row.system)
        {
            ("-".to_string(), String::new())
        } else {
            (
                format!("{:.2}x", median(&row.ratios)),
                format!("{:.2} - {:.2}", min(&row.ratios), max(&row.ratios)),
            )
        };
        println!(
            "{:<14} {:<14} {:>12.1} {:>8} {ratio:>10} {range:>15}",
            row.workload,
            row.system,
            median(&row.values),
            row.unit
        );
    }
}

/// One measured figure: a workload on one system, all runs.
#[derive(Debug, Clone)]
struct Figure {
    workload: String,
    system: String,
    unit: &'static str,
    /// Higher is better for throughput, lower for latency and memory.
    higher_is_better: bool,
    runs: Vec<f64>,
    /// Extra figures (latency percentiles).
    detail: String,
}

impl Figure {
    fn median(&self) -> f64 {
        let mut sorted = self.runs.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
    fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

fn run_workload(args: &Args, workload: &str, peers: &[&str]) -> anyhow::Result<Vec<Figure>> {
    let n = args.items;
    let mut figures = Vec::new();
    let mut measure = |system: &str,
                       label: &str,
                       unit,
                       higher,
                       f: &mut dyn FnMut() -> anyhow::Result<(f64, String)>|
     -> anyhow::Result<()> {
        let mut figure = Figure {
            workload: label.to_string(),
            system: system.to_string(),
            unit,
            higher_is_better: higher,
            runs: Vec::new(),
            detail: String::new(),
        };
        for run in 1..=args.runs {
            eprint!("\r{label:<14} {system:<14} run {run}/{}   ", args.runs);
            let (value, detail) = f()?;
            figure.runs.push(value);
            figure.detail = detail;
        }
        eprintln!(
            "\r{label:<14} {system:<14} median {:>12.0} {unit}        ",
            figure.median()
        );
        figures.push(figure);
        Ok(())
    };
    match workload {
        "1p1c" | "batch" | "4p4c" => {
            let (producers, consumers, batch) = match workload {
                "1p1c" => (1, 1, 1),
                "batch" => (1, 1, 64),
                _ => (4, 4, 1),
            };
            let label = match workload {
                "batch" => "1p1c-batch64",
                other => other,
            };
            measure("ipcq", label, "items/s", true, &mut || {
                ipcq_throughput(n, 64, producers, consumers, batch).map(|v| (v, String::new()))
            })?;
            for &peer in peers {
                match (peer, workload) {
                    ("python", "batch") => {}
                    ("python", _) => measure("python-mp", label, "items/s", true, &mut || {
                        python_throughput(n.min(200_000), 64, producers, consumers)
                            .map(|v| (v, String::new()))
                    })?,
                    ("redis", _) if which("redis-server") => {
                        // One round trip per item: fewer items keep the run short.
                        let items = if batch == 1 { n.min(50_000) } else { n };
                        measure("redis", label, "items/s", true, &mut || {
                            redis_throughput(items, 64, producers, consumers, batch)
                                .map(|v| (v, String::new()))
                        })?
                    }
                    ("socket", _) => measure("ipcq-socket", label, "items/s", true, &mut || {
                        without_rings(|| ipcq_throughput(n, 64, producers, consumers, batch))
                            .map(|v| (v, String::new()))
                    })?,
                    ("zmq", "1p1c") => measure("zmq", label, "items/s", true, &mut || {
                        zmq_throughput(n, 64).map(|v| (v, String::new()))
                    })?,
                    ("relay", "1p1c") => {
                        for mode in ["frame", "coalesce", "ack"] {
                            measure(
                                &format!("relay-{mode}"),
                                label,
                                "items/s",
                                true,
                                &mut || relay_throughput(n, 64, mode).map(|v| (v, String::new())),
                            )?;
                        }
                    }
                    _ => {}
                }
            }
        }
        "unbounded" => {
            // Batches through a queue with no item bound, as a Redis list has none: the
            // like-for-like comparison with Redis. The byte budget still bounds it.
            let label = "batch64-cap0";
            let bounded = capacity().to_string();
            std::env::set_var("IPCQ_BENCH_CAPACITY", "0");
            let measured = measure("ipcq", label, "items/s", true, &mut || {
                ipcq_throughput(n, 64, 1, 1, 64).map(|v| (v, String::new()))
            });
            std::env::set_var("IPCQ_BENCH_CAPACITY", bounded);
            measured?;
            if peers.contains(&"redis") && which("redis-server") {
                measure("redis", label, "items/s", true, &mut || {
                    redis_throughput(n, 64, 1, 1, 64).map(|v| (v, String::new()))
                })?;
            }
        }
        "sizes" => {
            for (size, items) in [(4096usize, (n / 8).max(1000)), (1 << 20, 2000)] {
                let label = format!("1p1c-{}", human(size));
                measure("ipcq", &label, "items/s", true, &mut || {
                    ipcq_throughput(items, size, 1, 1, 1)
                        .map(|v| (v, format!("{:.0} MB/s", v * size as f64 / 1e6)))
                })?;
                if peers.contains(&"python") {
                    measure("python-mp", &label, "items/s", true, &mut || {
                        python_throughput(items.min(100_000), size, 1, 1)
                            .map(|v| (v, String::new()))
                    })?;
                }
            }
            // 1 MiB items through a ring made for them: 64 slots of 1 MiB (64 MiB of
            // shared memory; 1000 would be over the rings' budget).
            let (size, items) = (1usize << 20, 4000);
            let label = "1p1c-1MiB-cap64";
            let sized = |f: &mut dyn FnMut() -> anyhow::Result<f64>| {
                with_env("IPCQ_BENCH_CAPACITY", "64", || {
                    with_env("IPCQ_BENCH_SLOT", &size.to_string(), f)
                })
                .map(|v| (v, format!("{:.0} MB/s", v * size as f64 / 1e6)))
            };
            measure("ipcq", label, "items/s", true, &mut || {
                sized(&mut || ipcq_throughput(items, size, 1, 1, 1))
            })?;
            if peers.contains(&"socket") {
                measure("ipcq-socket", label, "items/s", true, &mut || {
                    sized(&mut || without_rings(|| ipcq_throughput(items, size, 1, 1, 1)))
                })?;
            }
        }
        "pingpong" => {
            measure("ipcq", "pingpong-p50", "µs", false, &mut || {
                ipcq_pingpong(args.round_trips)
            })?;
            for &peer in peers {
                match peer {
                    "python" => measure("python-mp", "pingpong-p50", "µs", false, &mut || {
                        python_pingpong(args.round_trips)
                    })?,
                    "redis" if which("redis-server") => {
                        measure("redis", "pingpong-p50", "µs", false, &mut || {
                            redis_pingpong(args.round_trips)
                        })?
                    }
                    "relay" => measure("relay", "pingpong-p50", "µs", false, &mut || {
                        relay_pingpong(args.round_trips)
                    })?,
                    "socket" => measure("ipcq-socket", "pingpong-p50", "µs", false, &mut || {
                        without_rings(|| ipcq_pingpong(args.round_trips))
                    })?,
                    "zmq" => measure("zmq", "pingpong-p50", "µs", false, &mut || {
                        zmq_pingpong(args.round_trips)
                    })?,
                    _ => {}
                }
            }
        }
        "acked" => {
            // 1P1C where the consumer takes each item as a delivery and acknowledges it
            // after its "work": the jobs-survive-their-worker path, against a plain get in
            // the same round and the peers of 1p1c.
            let label = "1p1c-acked";
            measure("ipcq", label, "items/s", true, &mut || {
                ipcq_throughput_with("ipcq-ack", n, 64, 1, 1, 1).map(|v| (v, String::new()))
            })?;
            measure("ipcq-get", label, "items/s", true, &mut || {
                ipcq_throughput(n, 64, 1, 1, 1).map(|v| (v, String::new()))
            })?;
            for &peer in peers {
                match peer {
                    "python" => measure("python-mp", label, "items/s", true, &mut || {
                        python_throughput(n.min(200_000), 64, 1, 1).map(|v| (v, String::new()))
                    })?,
                    "relay" => measure("relay-coalesce", label, "items/s", true, &mut || {
                        relay_throughput(n, 64, "coalesce").map(|v| (v, String::new()))
                    })?,
                    _ => {}
                }
            }
        }
        "rss" => {
            measure("ipcq", "rss-overhead", "B/item", false, &mut || {
                ipcq_rss(1_000_000)
            })?;
        }
        "async" => {
            for (label, batch) in [("1p1c", 1), ("1p1c-batch64", 64)] {
                measure("ipcq-tokio", label, "items/s", true, &mut || {
                    ipcq_throughput_with("ipcq-tokio", n, 64, 1, 1, batch)
                        .map(|v| (v, String::new()))
                })?;
            }
        }
        "load" => {
            let (rate, detail) = ipcq_load(args.connections, 100)?;
            figures.push(Figure {
                workload: format!("load-{}conn", args.connections),
                system: "ipcq".into(),
                unit: "ops/s",
                higher_is_better: true,
                runs: vec![rate],
                detail,
            });
        }
        "soak" => {
            let soak = Figure {
                workload: "soak-rss-growth".into(),
                system: "ipcq".into(),
                unit: "KiB",
                higher_is_better: false,
                runs: Vec::new(),
                detail: String::new(),
            };
            let (growth, detail) = ipcq_soak(Duration::from_secs(args.soak_secs), 20_000)?;
            figures.push(Figure {
                runs: vec![growth],
                detail,
                ..soak
            });
        }
        other => bail!("unknown workload {other}"),
    }
    Ok(figures)
}

fn report(figures: &[Figure], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "workload": f.workload, "system": f.system, "unit": f.unit,
                    "median": f.median(), "min": f.min(), "max": f.max(), "runs": f.runs,
                    "detail": f.detail,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return;
    }
    let columns = [
        "workload",
        "system",
        "median",
        "min - max",
        "ipcq is",
        "detail",
    ];
    println!(
        "\n{:<14} {:<14} {:>12} {:>25} {:>9}  {}",
        columns[0], columns[1], columns[2], columns[3], columns[4], columns[5]
    );
    for f in figures {
        let ipcq = figures
            .iter()
            .find(|g| g.workload == f.workload && g.system == "ipcq")
            .map(Figure::median);
        let ratio = match ipcq {
            Some(ours) if f.system != "ipcq" => {
                let r = if f.higher_is_better {
                    ours / f.median()
                } else {
                    f.median() / ours
                };
                format!("{r:.2}x")
            }
            _ => String::new(),
        };
        println!(
            "{:<14} {:<14} {:>12} {:>25} {:>9}  {}",
            f.workload,
            f.system,
            format!("{:.0} {}", f.median(), f.unit),
            format!("{:.0} - {:.0}", f.min(), f.max()),
            ratio,
            f.detail
        );
    }
    println!("\n\"ipcq is\": ipcq's median relative to the peer's (above 1x: ipcq is better).");
}

fn human(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{}MiB", size >> 20)
    } else if size >= 1024 {
        format!("{}KiB", size >> 10)
    } else {
        format!("{size}B")
    }
}

fn which(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process that says "ready", waits for "go", and reports one line at the end.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn spawn_role(role: &[String]) -> anyhow::Result<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--role")
        .args(role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take().context("stdin")?;
    let stdout = BufReader::new(child.stdout.take().context("stdout")?);
    Ok(Worker {
        child,
        stdin,
        stdout,
    })
}

impl Worker {
    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.is_empty() {
            bail!("a benchmark process ended early: {:?}", self.child.wait()?);
        }
        Ok(line.trim().to_string())
    }
}

/// Starts workers, waits until all are ready, releases them together, and returns the
/// start time and each worker's last line.
fn run_workers(roles: Vec<Vec<String>>) -> anyhow::Result<(u128, Vec<String>)> {
    let mut workers = roles
        .iter()
        .map(|r| spawn_role(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for worker in &mut workers {
        let line = worker.line()?;
        anyhow::ensure!(line == "ready", "unexpected {line:?}");
    }
    let start = now_ns();
    for worker in &mut workers {
        worker.stdin.write_all(b"go\n")?;
        worker.stdin.flush()?;
    }
    let mut lines = Vec::new();
    for worker in &mut workers {
        lines.push(worker.line()?);
        let status = worker.child.wait()?;
        anyhow::ensure!(status.success(), "a benchmark process failed: {status}");
    }
    Ok((start, lines))
}

fn wait_for_go() -> anyhow::Result<()> {
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

/// The end time reported by consumers, as items/s from `start`.
fn rate(items: u64, start: u128, lines: &[String]) -> anyhow::Result<f64> {
    let mut end = 0u128;
    for line in lines {
        if let Some(rest) = line.strip_prefix("end ") {
            let t = rest.split_whitespace().next().context("end time")?;
            end = end.max(t.parse()?);
        }
    }
    anyhow::ensure!(end > start, "no consumer reported an end time");
    Ok(items as f64 / ((end - start) as f64 / 1e9))
}

struct Broker {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

/// Set while the `socket` peer runs: brokers start with `--no-shm`.
static NO_RINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs `f` with brokers that serve every queue over the socket.
fn without_rings<T>(f: impl FnOnce() -> T) -> T {
    NO_RINGS.store(true, std::sync::atomic::Ordering::Relaxed);
    let out = f();
    NO_RINGS.store(false, std::sync::atomic::Ordering::Relaxed);
    out
}

impl Broker {
    fn start() -> anyhow::Result<Broker> {
        let dir = tempfile::tempdir()?;
        let addr = dir.path().join("bench.sock").to_string_lossy().into_owned();
        let mut child = Command::new(BROKER)
            .args(["--addr", &addr, "--log", "warn,ipcq_broker::server=info"])
            .arg("--threads")
            .arg(
                BROKER_THREADS
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            )
            .args(
                NO_RINGS
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .then_some("--no-shm"),
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(line) => {
                    if line?.contains("broker listening") {
                        break;
                    }
                }
                None => bail!("the broker did not start"),
            }
        }
        // Keep draining the broker's log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Broker {
            child,
            addr,
            _dir: dir,
        })
    }

    fn fd_count(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))?.count())
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()?)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// ipcq

fn ipcq_throughput(
    items: u64,
    size: usize,
    producers: u64,
    consumers: u64,
    batch: usize,
) -> anyhow::Result<f64> {
    ipcq_throughput_with("ipcq", items, size, producers, consumers, batch)
}

/// The throughput workload with the clients of `kind`: `ipcq` (blocking) or `ipcq-tokio`.
fn ipcq_throughput_with(
    kind: &str,
    items: u64,
    size: usize,
    producers: u64,
    consumers: u64,
    batch: usize,
) -> anyhow::Result<f64> {
    let broker = Broker::start()?;
    let per_producer = items / producers;
    let items = per_producer * producers;
    let mut roles = Vec::new();
    for _ in 0..producers {
        roles.push(vec![
            format!("{kind}-produce"),
            broker.addr.clone(),
            per_producer.to_string(),
            size.to_string(),
            batch.to_string(),
        ]);
    }
    for _ in 0..consumers {
        roles.push(vec![
            format!("{kind}-consume"),
            broker.addr.clone(),
            batch.to_string(),
        ]);
    }
    // Consumers stop at `Closed`: the queue is closed once every producer has finished.
    let closer = std::thread::spawn({
        let addr = broker.addr.clone();
        move || -> anyhow::Result<()> {
            let client = Client::connect(&addr)?;
            let done = client.queue::<u64>("bench.done", 0)?;
            for _ in 0..producers {
                done.get()?;
            }
            client.raw_queue_with("bench", bench_queue())?.close()?;
            Ok(())
        }
    });
    let (start, lines) = run_workers(roles)?;
    closer
        .join()
        .map_err(|_| anyhow::anyhow!("closer panicked"))??;
    let received: u64 = lines
        .iter()
        .filter(|l| l.starts_with("end "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    anyhow::ensure!(received == items, "received {received} of {items} items");
    rate(items, start, &lines)
}

fn ipcq_pingpong(rounds: u64) -> anyhow::Result<(f64, String)> {
    let broker = Broker::start()?;
    let roles = vec![
        vec!["ipcq-echo".into(), broker.addr.clone(), rounds.to_string()],
        vec!["ipcq-ping".into(), broker.addr.clone(), rounds.to_string()],
    ];
    let (_, lines) = run_workers(roles)?;
    latency(&lines)
}

/// `connections` async clients at once, each opening `queues` queues and doing a put and
/// a get on every one of them; returns operations per second, with the latency
/// percentiles and the broker's memory and descriptors in the detail. Any connection
/// refused fails the run.
fn ipcq_load(connections: usize, queues: usize) -> anyhow::Result<(f64, String)> {
    let broker = Broker::start()?;
    let rss_before = broker.rss_kib()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let addr = broker.addr.clone();
    let connected = Instant::now();
    let clients = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move { ipcq::tokio::Client::connect(&addr).await })
            })
            .collect();
        let mut clients = Vec::with_capacity(connections);
        for task in tasks {
            clients.push(task.await??);
        }
        anyhow::Ok(clients)
    })?;
    let connect_secs = connected.elapsed().as_secs_f64();
    let fds_open = broker.fd_count()?;
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut handles = Vec::with_capacity(queues);
                    for q in 0..queues {
                        handles.push(client.raw_queue(&format!("load-{q}"), 0).await?);
                    }
                    let mut latencies = Vec::with_capacity(2 * queues);
                    let item = [7u8; 16];
                    for k in 0..queues {
                        let queue = &handles[(i + k) % queues];
                        let t = Instant::now();
                        queue.put(&item).await?;
                        latencies.push(t.elapsed());
                        let t = Instant::now();
                        queue.get().await?;
                        latencies.push(t.elapsed());
                    }
                    anyhow::Ok(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let rss_after = broker.rss_kib()?;
    drop(clients);
    drop(runtime);
    let mut latencies = latencies;
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q) as usize;
        latencies[i].as_secs_f64() * 1e6
    };
    let ops = latencies.len() as f64;
    Ok((
        ops / secs,
        format!(
            "{connections} connections (all admitted, {connect_secs:.2} s to connect), \
             {queues} queues, {ops} ops in {secs:.2} s; latency p50 {:.0} µs, p99 {:.0} µs, \
             max {:.0} µs; broker RSS {rss_before} -> {rss_after} KiB, {fds_open} fds",
            at(0.5),
            at(0.99),
            at(1.0)
        ),
    ))
}

/// A steady flow for `duration`: the broker's RSS and open file descriptors are sampled
/// every 10 s after a warm-up; returns the RSS growth from the first sample to the last.
fn ipcq_soak(duration: Duration, rate: u64) -> anyhow::Result<(f64, String)> {
    let broker = Broker::start()?;
    let seconds = duration.as_secs().max(20);
    let roles = vec![
        vec![
            "ipcq-paced".into(),
            broker.addr.clone(),
            rate.to_string(),
            seconds.to_string(),
        ],
        vec!["ipcq-consume".into(), broker.addr.clone(), "1".into()],
    ];
    let addr = broker.addr.clone();
    let pid = broker.child.id();
    let sampler = std::thread::spawn(move || -> anyhow::Result<Vec<(u64, u64, usize)>> {
        let mut samples = Vec::new();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(10));
        while start.elapsed() < Duration::from_secs(seconds) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0);
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
            samples.push((start.elapsed().as_secs(), rss, fds));
            eprint!(
                "\rsoak {:>4} s: broker RSS {rss} KiB, {fds} fds   ",
                start.elapsed().as_secs()
            );
            std::thread::sleep(Duration::from_secs(10));
        }
        // Consumers stop at `Closed`.
        Client::connect(&addr)?
            .raw_queue_with("bench", bench_queue())?
            .close()?;
        Ok(samples)
    });
    let (_, lines) = run_workers(roles)?;
    let samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler panicked"))??;
    let received: u64 = lines
        .iter()
        .filter(|l| l.starts_with("end "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    let (first, last) = (
        samples.first().context("no samples")?,
        samples.last().context("no samples")?,
    );
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    Ok((
        last.1 as f64 - first.1 as f64,
        format!(
            "{received} items in {seconds} s; RSS {} -> {} KiB (max {max}), fds {} -> {}",
            first.1, last.1, first.2, last.2
        ),
    ))
}

fn ipcq_rss(items: u64) -> anyhow::Result<(f64, String)> {
    let broker = Broker::start()?;
    let client = Client::connect(&broker.addr)?;
    let queue = client.raw_queue("rss", 0)?;
    let before = broker.rss_kib()?;
    let item = [7u8; 64];
    let batch: Vec<&[u8]> = vec![&item[..]; 1000];
    for _ in 0..items / 1000 {
        queue.put_many(&batch)?;
    }
    anyhow::ensure!(
        queue.len()? as u64 == items,
        "queue holds {} items",
        queue.len()?
    );
    let after = broker.rss_kib()?;
    let per_item = (after.saturating_sub(before) * 1024) as f64 / items as f64;
    Ok((
        per_item - 64.0,
        format!("{} MiB for {items} items", (after - before) / 1024),
    ))
}

fn latency(lines: &[String]) -> anyhow::Result<(f64, String)> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("latency"))
        .context("no latency line")?;
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok((
        values[0],
        format!("p99 {:.0} µs, p99.9 {:.0} µs", values[1], values[2]),
    ))
}

fn percentiles(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)];
    format!(
        "latency {:.1} {:.1} {:.1}",
        pick(0.5),
        pick(0.99),
        pick(0.999)
    )
}

// ---------------------------------------------------------------------------------------
// Child roles

/// The throughput roles on the tokio client, as the blocking ones.
async fn tokio_child(role: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| {
        role.get(i)
            .map(String::as_str)
            .context("missing role argument")
    };
    let num = |i: usize| -> anyhow::Result<u64> { Ok(arg(i)?.parse()?) };
    let client = ipcq::tokio::Client::connect(arg(1)?).await?;
    let queue = client.raw_queue_with("bench", bench_queue()).await?;
    if arg(0)? == "ipcq-tokio-produce" {
        let (count, size, batch) = (num(2)?, num(3)? as usize, num(4)? as usize);
        let item = vec![b'x'; size];
        wait_for_go()?;
        if batch <= 1 {
            for _ in 0..count {
                queue.put(&item).await?;
            }
        } else {
            let items: Vec<&[u8]> = vec![&item[..]; batch];
            let mut left = count as usize;
            while left > 0 {
                let n = left.min(batch);
                queue.put_many(&items[..n]).await?;
                left -= n;
            }
        }
        client
            .queue::<u64>("bench.done", 0)
            .await?
            .put(&count)
            .await?;
        client.flush().await?;
        println!("sent {} {count}", now_ns());
    } else {
        let batch = num(2)? as usize;
        wait_for_go()?;
        let mut count = 0u64;
        loop {
            let got = if batch <= 1 {
                queue.get().await.map(|_| 1)
            } else {
                queue.get_many(batch).await.map(|v| v.len() as u64)
            };
            match got {
                Ok(n) => count += n,
                Err(Error::Closed) => break,
                Err(err) => return Err(err.into()),
            }
        }
        println!("end {} {count}", now_ns());
    }
    Ok(())
}

fn child(role: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| {
        role.get(i)
            .map(String::as_str)
            .context("missing role argument")
    };
    let num = |i: usize| -> anyhow::Result<u64> { Ok(arg(i)?.parse()?) };
    match arg(0)? {
        "ipcq-produce" | "ipcq-ack-produce" => {
            let client = Client::connect(arg(1)?)?;
            let queue = client.raw_queue_with("bench", bench_queue())?;
            let (count, size, batch) = (num(2)?, num(3)? as usize, num(4)? as usize);
            let item = vec![b'x'; size];
            wait_for_go()?;
            if batch <= 1 {
                for _ in 0..count {
                    queue.put(&item)?;
                }
            } else {
                let items: Vec<&[u8]> = vec![&item[..]; batch];
                let mut left = count as usize;
                while left > 0 {
                    let n = left.min(batch);
                    queue.put_many(&items[..n])?;
                    left -= n;
                }
            }
            client.queue::<u64>("bench.done", 0)?.put(&count)?;
            println!("sent {} {count}", now_ns());
        }
        "ipcq-consume" => {
            let client = Client::connect(arg(1)?)?;
            let queue = client.raw_queue_with("bench", bench_queue())?;
            let batch = num(2)? as usize;
            wait_for_go()?;
            let mut count = 0u64;
            loop {
                let got = if batch <= 1 {
                    queue.get().map(|_| 1)
                } else {
                    queue.get_many(batch).map(|v| v.len() as u64)
                };
                match got {
                    Ok(n) => count += n,
                    Err(Error::Closed) => break,
                    Err(err) => return Err(err.into()),
                }
            }
            println!("end {} {count}", now_ns());
        }
        "ipcq-ack-consume" => {
            let client = Client::connect(arg(1)?)?;
            let queue = client.raw_queue_with("bench", bench_queue())?;
            wait_for_go()?;
            let mut count = 0u64;
            loop {
                match queue.get_delivery() {
                    Ok(delivery) => {
                        count += 1;
                        delivery.ack()?;
                    }
                    Err(Error::Closed) => break,
                    Err(err) => return Err(err.into()),
                }
            }
            println!("end {} {count}", now_ns());
        }
        "ipcq-tokio-produce" | "ipcq-tokio-consume" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(tokio_child(role))?;
        }
        "ipcq-echo" => {
            let client = Client::connect(arg(1)?)?;
            let (ping, pong) = (
                client.raw_queue("ping", capacity())?,
                client.raw_queue("pong", capacity())?,
            );
            wait_for_go()?;
            for _ in 0..num(2)? {
                pong.put(&ping.get()?)?;
            }
            println!("done");
        }
        "ipcq-paced" => {
            let client = Client::connect(arg(1)?)?;
            let queue = client.raw_queue_with("bench", bench_queue())?;
            let (rate, seconds) = (num(2)?, num(3)?);
            let item = [b'x'; 64];
            wait_for_go()?;
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(seconds) {
                // Catch up with the schedule in bursts of at most 100 items.
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                for _ in 0..due.saturating_sub(sent).min(100) {
                    queue.put(&item)?;
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("sent {} {sent}", now_ns());
        }
        "ipcq-ping" => {
            let client = Client::connect(arg(1)?)?;
            let (ping, pong) = (
                client.raw_queue("ping", capacity())?,
                client.raw_queue("pong", capacity())?,
            );
            wait_for_go()?;
            let item = [b'x'; 64];
            let mut samples = Vec::new();
            for _ in 0..num(2)? {
                let t = Instant::now();
                ping.put(&item)?;
                pong.get()?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            println!("{}", percentiles(samples));
        }
        "relay" => relay(Path::new(arg(1)?), arg(2)?)?,
        "relay-produce" => {
            let mut stream = UnixStream::connect(arg(1)?)?;
            let count = num(2)?;
            let mut frame = vec![0u8; 68];
            frame[..4].copy_from_slice(&64u32.to_le_bytes());
            wait_for_go()?;
            for _ in 0..count {
                stream.write_all(&frame)?;
            }
            println!("sent {} {count}", now_ns());
        }
        "relay-consume" => {
            let mut stream = UnixStream::connect(arg(1)?)?;
            let count = num(2)?;
            wait_for_go()?;
            let mut reader = BufReader::with_capacity(64 * 1024, &mut stream);
            let mut frame = [0u8; 68];
            for _ in 0..count {
                reader.read_exact(&mut frame)?;
            }
            println!("end {} {count}", now_ns());
        }
        "relay-consume-ack" => {
            // Writes an acknowledgement per item, as a broker's consumer must before it
            // hands the item out: the relay reads and drops them.
            let mut stream = UnixStream::connect(arg(1)?)?;
            let count = num(2)?;
            wait_for_go()?;
            let mut writer = stream.try_clone()?;
            let mut reader = BufReader::with_capacity(64 * 1024, &mut stream);
            let mut frame = [0u8; 68];
            let mut ack = [0u8; 12];
            ack[..4].copy_from_slice(&8u32.to_le_bytes());
            for tag in 0..count {
                reader.read_exact(&mut frame)?;
                ack[4..].copy_from_slice(&tag.to_le_bytes());
                writer.write_all(&ack)?;
            }
            println!("end {} {count}", now_ns());
        }
        "relay-echo" => {
            let mut stream = UnixStream::connect(arg(1)?)?;
            wait_for_go()?;
            let mut frame = [0u8; 68];
            for _ in 0..num(2)? {
                stream.read_exact(&mut frame)?;
                stream.write_all(&frame)?;
            }
            println!("done");
        }
        "relay-ping" => {
            let mut stream = UnixStream::connect(arg(1)?)?;
            wait_for_go()?;
            let mut frame = [0u8; 68];
            frame[..4].copy_from_slice(&64u32.to_le_bytes());
            let mut samples = Vec::new();
            for _ in 0..num(2)? {
                let t = Instant::now();
                stream.write_all(&frame)?;
                stream.read_exact(&mut frame)?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            println!("{}", percentiles(samples));
        }
        "redis-produce" => {
            let mut redis = Resp::connect(arg(1)?)?;
            let (count, batch) = (num(2)?, num(3)? as usize);
            let item = [b'x'; 64];
            wait_for_go()?;
            let mut left = count as usize;
            while left > 0 {
                let n = left.min(batch.max(1));
                let mut cmd: Vec<&[u8]> = vec![b"RPUSH", b"bench"];
                cmd.extend(std::iter::repeat_n(&item[..], n));
                redis.call(&cmd)?;
                left -= n;
            }
            println!("sent {} {count}", now_ns());
        }
        "redis-consume" => {
            let mut redis = Resp::connect(arg(1)?)?;
            let (count, batch) = (num(2)?, num(3)? as usize);
            wait_for_go()?;
            let mut got = 0u64;
            while got < count {
                if batch <= 1 {
                    redis.call(&[b"BLPOP", b"bench", b"0"])?;
                    got += 1;
                } else {
                    let n = redis.call(&[b"LPOP", b"bench", batch.to_string().as_bytes()])?;
                    got += n;
                }
            }
            println!("end {} {got}", now_ns());
        }
        "redis-echo" => {
            let mut redis = Resp::connect(arg(1)?)?;
            let item = vec![b'x'; 64];
            wait_for_go()?;
            for _ in 0..num(2)? {
                redis.call(&[b"BLPOP", b"ping", b"0"])?;
                redis.call(&[b"RPUSH", b"pong", &item])?;
            }
            println!("done");
        }
        "redis-ping" => {
            let mut redis = Resp::connect(arg(1)?)?;
            let item = vec![b'x'; 64];
            wait_for_go()?;
            let mut samples = Vec::new();
            for _ in 0..num(2)? {
                let t = Instant::now();
                redis.call(&[b"RPUSH", b"ping", &item])?;
                redis.call(&[b"BLPOP", b"pong", b"0"])?;
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            println!("{}", percentiles(samples));
        }
        other => bail!("unknown role {other}"),
    }
    std::io::stdout().flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Python multiprocessing.Queue

fn python_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/mp_queue.py")
}

fn python(args: &[String]) -> anyhow::Result<serde_json::Value> {
    python_peer(&python_script(), args)
}

/// Runs a Python peer script; its answer is one JSON object on stdout.
fn python_peer(script: &Path, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let output = Command::new("python3").arg(script).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn python_throughput(
    items: u64,
    size: usize,
    producers: u64,
    consumers: u64,
) -> anyhow::Result<f64> {
    let items = items / (producers * consumers) * producers * consumers;
    let value = python(&[
        "throughput".into(),
        items.to_string(),
        size.to_string(),
        producers.to_string(),
        consumers.to_string(),
    ])?;
    value["items_per_sec"].as_f64().context("items_per_sec")
}

fn python_pingpong(rounds: u64) -> anyhow::Result<(f64, String)> {
    pingpong_figures(&python(&[
        "pingpong".into(),
        rounds.to_string(),
        "64".into(),
    ])?)
}

// ---------------------------------------------------------------------------------------
// ZeroMQ PUSH/PULL over ipc:// (pyzmq)

fn zmq_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/zmq_pushpull.py")
}

fn zmq_throughput(items: u64, size: usize) -> anyhow::Result<f64> {
    let args = ["throughput".into(), items.to_string(), size.to_string()];
    let value = python_peer(&zmq_script(), &args)?;
    value["items_per_sec"].as_f64().context("items_per_sec")
}

fn zmq_pingpong(rounds: u64) -> anyhow::Result<(f64, String)> {
    let args = ["pingpong".into(), rounds.to_string(), "64".into()];
    pingpong_figures(&python_peer(&zmq_script(), &args)?)
}

/// The p50 of a Python peer's ping-pong, with its tail in the detail.
fn pingpong_figures(value: &serde_json::Value) -> anyhow::Result<(f64, String)> {
    let get = |k: &str| value[k].as_f64().unwrap_or(f64::NAN);
    Ok((
        get("p50_us"),
        format!(
            "p99 {:.0} µs, p99.9 {:.0} µs",
            get("p99_us"),
            get("p999_us")
        ),
    ))
}

// ---------------------------------------------------------------------------------------
// Redis over a Unix socket

struct RedisServer {
    child: Child,
    socket: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> anyhow::Result<RedisServer> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("redis.sock").to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--unixsocket",
                &socket,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(RedisServer {
            child,
            socket,
            _dir: dir,
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_throughput(
    items: u64,
    size: usize,
    producers: u64,
    consumers: u64,
    batch: usize,
) -> anyhow::Result<f64> {
    anyhow::ensure!(size == 64, "redis runs use 64 B items");
    let server = RedisServer::start()?;
    let per_producer = items / producers;
    let per_consumer = items / consumers;
    let mut roles = Vec::new();
    for _ in 0..producers {
        roles.push(vec![
            "redis-produce".into(),
            server.socket.clone(),
            per_producer.to_string(),
            batch.to_string(),
        ]);
    }
    for _ in 0..consumers {
        roles.push(vec![
            "redis-consume".into(),
            server.socket.clone(),
            per_consumer.to_string(),
            batch.to_string(),
        ]);
    }
    let (start, lines) = run_workers(roles)?;
    rate(per_consumer * consumers, start, &lines)
}

fn redis_pingpong(rounds: u64) -> anyhow::Result<(f64, String)> {
    let server = RedisServer::start()?;
    let roles = vec![
        vec![
            "redis-echo".into(),
            server.socket.clone(),
            rounds.to_string(),
        ],
        vec![
            "redis-ping".into(),
            server.socket.clone(),
            rounds.to_string(),
        ],
    ];
    let (_, lines) = run_workers(roles)?;
    latency(&lines)
}

/// Just enough of RESP for RPUSH, LPOP and BLPOP. Returns the number of elements of an
/// array reply (items popped), or 1 for any other reply.
struct Resp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    out: Vec<u8>,
}

impl Resp {
    fn connect(path: &str) -> anyhow::Result<Resp> {
        let stream = UnixStream::connect(path)?;
        Ok(Resp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            out: Vec::new(),
        })
    }

    fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<u64> {
        self.out.clear();
        write!(self.out, "*{}\r\n", args.len())?;
        for arg in args {
            write!(self.out, "${}\r\n", arg.len())?;
            self.out.extend_from_slice(arg);
            self.out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&self.out)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> anyhow::Result<u64> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let (kind, rest) = line.split_at(1);
        let rest = rest.trim_end();
        match kind {
            "+" | ":" => Ok(1),
            "-" => bail!("redis: {rest}"),
            "$" => {
                let len: i64 = rest.parse()?;
                if len >= 0 {
                    let mut buf = vec![0u8; len as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                }
                Ok(1)
            }
            "*" => {
                let n: i64 = rest.parse()?;
                for _ in 0..n.max(0) {
                    self.read_reply()?;
                }
                Ok(n.max(0) as u64)
            }
            other => bail!("unexpected redis reply {other}{rest}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A raw Unix-socket relay: the limit for any broker

fn relay(path: &Path, mode: &str) -> anyhow::Result<()> {
    let listener = UnixListener::bind(path)?;
    println!("listening");
    std::io::stdout().flush()?;
    let (mut a, _) = listener.accept()?;
    let (mut b, _) = listener.accept()?;
    // Ping-pong needs both directions; throughput only a to b, and in `ack` mode the
    // consumer's acknowledgements, read and dropped.
    let mut b2 = b.try_clone()?;
    let mut a2 = a.try_clone()?;
    let back = if mode == "ack" {
        std::thread::spawn(move || drain(&mut b2))
    } else {
        std::thread::spawn(move || pump(&mut b2, &mut a2, "coalesce"))
    };
    pump(&mut a, &mut b, mode)?;
    let _ = back.join();
    Ok(())
}

fn pump(from: &mut UnixStream, to: &mut UnixStream, mode: &str) -> anyhow::Result<()> {
    if mode == "frame" {
        let mut frame = [0u8; 68];
        loop {
            if from.read_exact(&mut frame).is_err() {
                return Ok(());
            }
            to.write_all(&frame)?;
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

fn drain(from: &mut UnixStream) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    while from.read(&mut buf)? > 0 {}
    Ok(())
}

fn start_relay(mode: &str) -> anyhow::Result<(Child, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("relay.sock").to_string_lossy().into_owned();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--role", "relay", &path, mode])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "listening", "relay did not start");
    Ok((child, path, dir))
}

fn relay_throughput(items: u64, size: usize, mode: &str) -> anyhow::Result<f64> {
    anyhow::ensure!(size == 64, "relay runs use 64 B items");
    let (mut relay, path, _dir) = start_relay(mode)?;
    // The relay takes its first connection as the producer: start that one first.
    let mut producer = spawn_role(&["relay-produce".into(), path.clone(), items.to_string()])?;
    anyhow::ensure!(producer.line()? == "ready");
    let consume = if mode == "ack" {
        "relay-consume-ack"
    } else {
        "relay-consume"
    };
    let mut consumer = spawn_role(&[consume.into(), path.clone(), items.to_string()])?;
    anyhow::ensure!(consumer.line()? == "ready");
    let start = now_ns();
    for worker in [&mut producer, &mut consumer] {
        worker.stdin.write_all(b"go\n")?;
        worker.stdin.flush()?;
    }
    let lines = [producer.line()?, consumer.line()?];
    producer.child.wait()?;
    consumer.child.wait()?;
    let _ = relay.kill();
    let _ = relay.wait();
    // Only the consumer's end counts.
    rate(items, start, &lines[1..])
}

fn relay_pingpong(rounds: u64) -> anyhow::Result<(f64, String)> {
    let (mut relay, path, _dir) = start_relay("frame")?;
    let mut ping = spawn_role(&["relay-ping".into(), path.clone(), rounds.to_string()])?;
    anyhow::ensure!(ping.line()? == "ready");
    let mut echo = spawn_role(&["relay-echo".into(), path.clone(), rounds.to_string()])?;
    anyhow::ensure!(echo.line()? == "ready");
    for worker in [&mut echo, &mut ping] {
        worker.stdin.write_all(b"go\n")?;
        worker.stdin.flush()?;
    }
    let line = ping.line()?;
    echo.line()?;
    ping.child.wait()?;
    echo.child.wait()?;
    let _ = relay.kill();
    let _ = relay.wait();
    latency(&[line])
}
