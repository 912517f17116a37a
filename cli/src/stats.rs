//! What `ipcq stats` shows: aligned tables for people, JSON for programs.

use ipcq::stats::{
    BarrierStats, EventStats, ObjectDetail, ObjectStats, PermitStats, PipeStats, QueueStats,
};

/// The previous refresh of `ipcq stats --watch`, for rates.
#[derive(Debug)]
pub struct Rates<'a> {
    /// Seconds since that refresh.
    pub seconds: f64,
    /// What it showed.
    pub before: &'a [ObjectStats],
}

impl Rates<'_> {
    /// Items put and taken per second on queue `name` since the previous refresh.
    fn of(&self, name: &str, now: &QueueStats) -> (f64, f64) {
        let before = self.before.iter().find_map(|object| match &object.detail {
            ObjectDetail::Queue(q) if object.name == name => Some(q.clone()),
            _ => None,
        });
        let Some(before) = before else {
            return (0.0, 0.0);
        };
        let per_second =
            |now: u64, then: u64| now.saturating_sub(then) as f64 / self.seconds.max(1e-3);
        (
            per_second(now.total_put, before.total_put),
            per_second(now.total_got, before.total_got),
        )
    }
}

/// The tables `ipcq stats` prints: one per kind of object, one line per object, with the
/// put and get rates since `rates` when watching.
pub fn render(stats: &[ObjectStats], rates: Option<&Rates<'_>>) -> String {
    if stats.is_empty() {
        return "no objects\n".into();
    }
    let limit = |capacity: u64| {
        if capacity == 0 {
            "-".to_string()
        } else {
            capacity.to_string()
        }
    };
    let mut tables = Vec::new();

    let queues: Vec<(&str, &QueueStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Queue(q) => Some((object.name.as_str(), q)),
            _ => None,
        })
        .collect();
    if !queues.is_empty() {
        let mut header = vec![
            "queue",
            "depth",
            "capacity",
            "in-flight",
            "reserved",
            "getters",
            "putters",
            "put",
            "got",
            "again",
            "dead",
            "bytes",
            "state",
            "held by",
        ];
        if rates.is_some() {
            header.extend(["put/s", "got/s"]);
        }
        let rows = queues
            .iter()
            .map(|(name, q)| {
                let mut row = vec![
                    name.to_string(),
                    q.ready.to_string(),
                    limit(q.capacity),
                    q.in_flight.to_string(),
                    q.reserved.to_string(),
                    q.getters.to_string(),
                    q.putters.to_string(),
                    q.total_put.to_string(),
                    q.total_got.to_string(),
                    q.redelivered.to_string(),
                    q.dead_lettered.to_string(),
                    q.bytes.to_string(),
                    format!(
                        "{}{}",
                        match (q.closed, q.auto_delete) {
                            (true, _) => "closed",
                            (false, true) => "open, auto-delete",
                            (false, false) => "open",
                        },
                        if q.shared_memory { ", shm" } else { "" }
                    ),
                    held_by(&q.holders),
                ];
                if let Some(rates) = rates {
                    let (put, got) = rates.of(name, q);
                    row.extend([format!("{put:.0}"), format!("{got:.0}")]);
                }
                row
            })
            .collect();
        tables.push(Table { header, rows });
    }

    let permits: Vec<(&str, &str, &PermitStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Lock(p) => Some((object.name.as_str(), "lock", p)),
            ObjectDetail::Semaphore(p) => Some((object.name.as_str(), "semaphore", p)),
            _ => None,
        })
        .collect();
    if !permits.is_empty() {
        let header = vec![
            "lock or semaphore",
            "kind",
            "permits",
            "free",
            "waiters",
            "holders (pid/connection)",
        ];
        let rows = permits
            .iter()
            .map(|(name, kind, p)| {
                let pids = p
                    .holder_pids
                    .iter()
                    .map(Some)
                    .chain(std::iter::repeat(None));
                let holders: Vec<String> = p
                    .holders
                    .iter()
                    .zip(pids)
                    .map(|(connection, pid)| match pid {
                        Some(&pid) if pid != 0 => format!("{pid}/{connection}"),
                        _ => format!("?/{connection}"),
                    })
                    .collect();
                vec![
                    name.to_string(),
                    kind.to_string(),
                    p.permits.to_string(),
                    p.free.to_string(),
                    p.waiters.to_string(),
                    if holders.is_empty() {
                        "-".to_string()
                    } else {
                        holders.join(" ")
                    },
                ]
            })
            .collect();
        tables.push(Table { header, rows });
    }

    let events: Vec<(&str, &EventStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Event(e) => Some((object.name.as_str(), e)),
            _ => None,
        })
        .collect();
    if !events.is_empty() {
        let rows = events
            .iter()
            .map(|(name, e)| {
                vec![
                    name.to_string(),
                    if e.set { "set" } else { "clear" }.to_string(),
                    e.waiters.to_string(),
                ]
            })
            .collect();
        tables.push(Table {
            header: vec!["event", "state", "waiters"],
            rows,
        });
    }

    let barriers: Vec<(&str, &BarrierStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Barrier(b) => Some((object.name.as_str(), b)),
            _ => None,
        })
        .collect();
    if !barriers.is_empty() {
        let rows = barriers
            .iter()
            .map(|(name, b)| {
                vec![
                    name.to_string(),
                    b.parties.to_string(),
                    b.waiting.to_string(),
                    if b.broken { "broken" } else { "ok" }.to_string(),
                ]
            })
            .collect();
        tables.push(Table {
            header: vec!["barrier", "parties", "waiting", "state"],
            rows,
        });
    }

    let pipes: Vec<(&str, &PipeStats)> = stats
        .iter()
        .filter_map(|object| match &object.detail {
            ObjectDetail::Pipe(p) => Some((object.name.as_str(), p)),
            _ => None,
        })
        .collect();
    if !pipes.is_empty() {
        let end = |held: bool, closed: bool| match (held, closed) {
            (_, true) => "closed",
            (true, false) => "held",
            (false, false) => "free",
        };
        let rows = pipes
            .iter()
            .map(|(name, p)| {
                vec![
                    name.to_string(),
                    if p.duplex { "duplex" } else { "simplex" }.to_string(),
                    limit(p.capacity),
                    p.buffered[0].to_string(),
                    p.buffered[1].to_string(),
                    end(p.held[0], p.closed[0]).to_string(),
                    end(p.held[1], p.closed[1]).to_string(),
                ]
            })
            .collect();
        tables.push(Table {
            header: vec![
                "pipe", "mode", "capacity", "to end 0", "to end 1", "end 0", "end 1",
            ],
            rows,
        });
    }

    let mut out = String::new();
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        table.render(&mut out);
    }
    out
}

/// Columns as wide as their widest cell, so that names of any length line up: the first
/// column (names) and words are left-aligned, numbers right-aligned, two spaces apart.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..widths.len())
            .map(|column| {
                column > 0
                    && self.rows.iter().all(|row| {
                        row.get(column)
                            .is_some_and(|cell| cell == "-" || cell.parse::<f64>().is_ok())
                    })
            })
            .collect();
        let mut line = |cells: Vec<&str>| {
            let last = cells.len() - 1;
            let text: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(column, cell)| match (numeric[column], column == last) {
                    (true, _) => format!("{cell:>width$}", width = widths[column]),
                    (false, true) => cell.to_string(),
                    (false, false) => format!("{cell:<width$}", width = widths[column]),
                })
                .collect();
            out.push_str(&text.join("  "));
            out.push('\n');
        };
        line(self.header.clone());
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

/// Who holds a queue's items in flight: `pid:count` per connection (`#connection` where
/// the process is not known), or `-`.
fn held_by(holders: &[ipcq::stats::Holder]) -> String {
    if holders.is_empty() {
        return "-".into();
    }
    holders
        .iter()
        .map(|h| match h.pid {
            0 => format!("#{}:{}", h.connection, h.in_flight),
            pid => format!("{pid}:{}", h.in_flight),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `ipcq stats --json` prints: `{"objects": [...]}`, one object per entry with its
/// `name`, `kind` and figures. Fields are only ever added.
pub fn json(stats: &[ObjectStats]) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = stats
        .iter()
        .map(|object| match &object.detail {
            ObjectDetail::Queue(q) => serde_json::json!({
                "name": object.name,
                "kind": "queue",
                "depth": q.ready,
                "in_flight": q.in_flight,
                "capacity": q.capacity,
                "bytes": q.bytes,
                "getters": q.getters,
                "putters": q.putters,
                "total_put": q.total_put,
                "total_got": q.total_got,
                "closed": q.closed,
                "auto_delete": q.auto_delete,
                "reserved": q.reserved,
                "redelivered": q.redelivered,
                "dead_lettered": q.dead_lettered,
                "shared_memory": q.shared_memory,
                "torn_writes": q.torn_writes,
                "holders": q.holders.iter().map(|h| serde_json::json!({
                    "pid": h.pid,
                    "connection": h.connection,
                    "in_flight": h.in_flight,
                })).collect::<Vec<_>>(),
            }),
            ObjectDetail::Pipe(p) => serde_json::json!({
                "name": object.name,
                "kind": "pipe",
                "duplex": p.duplex,
                "capacity": p.capacity,
                "buffered": p.buffered,
                "held": p.held,
                "closed": p.closed,
            }),
            ObjectDetail::Lock(p) | ObjectDetail::Semaphore(p) => serde_json::json!({
                "name": object.name,
                "kind": if matches!(object.detail, ObjectDetail::Lock(_)) { "lock" } else { "semaphore" },
                "permits": p.permits,
                "free": p.free,
                "holders": p.holders,
                "holder_pids": p.holder_pids,
                "waiters": p.waiters,
            }),
            ObjectDetail::Event(e) => serde_json::json!({
                "name": object.name,
                "kind": "event",
                "set": e.set,
                "waiters": e.waiters,
            }),
            ObjectDetail::Barrier(b) => serde_json::json!({
                "name": object.name,
                "kind": "barrier",
                "parties": b.parties,
                "waiting": b.waiting,
                "broken": b.broken,
            }),
        })
        .collect();
    serde_json::json!({ "objects": objects })
}
