//! Objects by name.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use ipcq_proto::{DeadLetter, ErrorCode, ErrorReply, Kind, ObjectDetail, ObjectStats};

use crate::budget::Budget;
use crate::config::MOST_SLOT_SIZE;
use crate::objects::{Barrier, Event, Extras, Object, Permits, Pipe, Queue};
use crate::Config;

#[derive(Debug)]
pub(crate) struct Registry {
    objects: DashMap<String, Object>,
    /// Counted apart from the map: `DashMap::len` locks every shard, which would deadlock
    /// while an entry guard is held.
    count: AtomicUsize,
    /// The names in order, for listing page by page without sorting every object each
    /// time. Locked after a map entry, never before one.
    names: Mutex<BTreeSet<String>>,
    max_objects: usize,
    max_queue_bytes: usize,
    max_waiters: usize,
    /// The slot size of queues' shared-memory rings, if they get one, and the budget of
    /// bytes they share.
    rings: Option<(usize, Arc<Budget>)>,
    budget: Arc<Budget>,
}

impl Registry {
    pub(crate) fn new(config: &Config) -> Self {
        Registry {
            objects: DashMap::new(),
            count: AtomicUsize::new(0),
            names: Mutex::new(BTreeSet::new()),
            max_objects: config.max_objects,
            max_queue_bytes: config.max_queue_bytes,
            max_waiters: config.max_waiters,
            rings: config
                .shared_slots
                .map(|size| (size, Arc::new(Budget::new(config.max_shared_bytes)))),
            budget: Arc::new(Budget::new(config.max_total_bytes)),
        }
    }

    /// The queue `name` as the dead-letter queue of `of`: an existing queue, whatever its
    /// parameters, or a new unbounded one.
    fn dead_letter_queue(&self, of: &str, name: &str) -> Result<Arc<Queue>, ErrorReply> {
        if name == of {
            return Err(ErrorReply::new(
                ErrorCode::InvalidArgument,
                format!("queue '{of}' cannot be its own dead-letter queue"),
            ));
        }
        let existing = self.objects.get(name).map(|entry| entry.value().clone());
        let object = match existing {
            Some(object) => object,
            None => self.open(
                name.to_owned(),
                Kind::Queue {
                    capacity: 0,
                    auto_delete: false,
                    dead_letter: None,
                    slot_size: 0,
                },
            )?,
        };
        match object {
            Object::Queue(queue) => Ok(queue),
            other => Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!(
                    "'{name}' exists as {}, so it cannot be a dead-letter queue",
                    other.kind_name()
                ),
            )),
        }
    }

    /// Opens `name`, creating it if it does not exist.
    pub(crate) fn open(&self, name: String, kind: Kind) -> Result<Object, ErrorReply> {
        ipcq_proto::check_name(&name)
            .map_err(|msg| ErrorReply::new(ErrorCode::InvalidName, msg))?;
        // A queue's dead-letter queue first: never while holding the queue's own entry.
        let dead_letter = match &kind {
            Kind::Queue {
                dead_letter: Some(dead_letter),
                ..
            } => Some((
                self.dead_letter_queue(&name, &dead_letter.queue)?,
                dead_letter.max_deliveries,
            )),
            _ => None,
        };
        match self.objects.entry(name) {
            Entry::Occupied(entry) => {
                let object = entry.get();
                let existing = match object {
                    Object::Queue(queue) => Kind::Queue {
                        capacity: queue.capacity,
                        auto_delete: queue.auto_delete,
                        dead_letter: queue
                            .dead_letter
                            .as_ref()
                            .map(|(target, limit)| DeadLetter {
                                queue: target.name.clone(),
                                max_deliveries: *limit,
                            }),
                        slot_size: 0,
                    },
                    Object::Pipe(pipe) => Kind::PipeEnd {
                        duplex: pipe.duplex,
                        capacity: pipe.capacity,
                        end: 0,
                    },
                    Object::Permits(permits) if permits.is_lock() => Kind::Lock,
                    Object::Permits(permits) => Kind::Semaphore {
                        permits: permits.permits,
                    },
                    Object::Event(_) => Kind::Event,
                    Object::Barrier(barrier) => Kind::Barrier {
                        parties: barrier.parties,
                    },
                };
                if same_parameters(&existing, &kind) {
                    opened(object);
                    Ok(object.clone())
                } else {
                    Err(ErrorReply::new(
                        ErrorCode::Conflict,
                        format!(
                            "'{}' exists as {}, not {}",
                            entry.key(),
                            describe(&existing),
                            describe(&kind)
                        ),
                    ))
                }
            }
            Entry::Vacant(entry) => {
                if self.count.load(Ordering::SeqCst) >= self.max_objects {
                    return Err(ErrorReply::new(
                        ErrorCode::LimitReached,
                        format!("the broker holds its limit of {} objects", self.max_objects),
                    ));
                }
                let name = entry.key().clone();
                let object = match kind {
                    Kind::Queue {
                        capacity,
                        auto_delete,
                        slot_size,
                        ..
                    } => Object::Queue(Queue::new(
                        name,
                        capacity,
                        self.max_queue_bytes,
                        Arc::clone(&self.budget),
                        self.max_waiters,
                        Extras {
                            auto_delete,
                            dead_letter,
                            // The open's slot size, if it gives one, within the largest.
                            rings: self.rings.clone().map(|(default, budget)| {
                                let size = match slot_size {
                                    0 => default,
                                    asked => (asked as usize).min(MOST_SLOT_SIZE),
                                };
                                (size, budget)
                            }),
                        },
                    )),
                    Kind::PipeEnd {
                        duplex, capacity, ..
                    } => Object::Pipe(Pipe::new(
                        name,
                        duplex,
                        capacity,
                        self.max_queue_bytes,
                        &self.budget,
                        self.max_waiters,
                    )),
                    Kind::Lock => Object::Permits(Permits::new(name, 1, true, self.max_waiters)),
                    Kind::Semaphore { permits } => {
                        if permits == 0 {
                            return Err(ErrorReply::new(
                                ErrorCode::InvalidArgument,
                                "a semaphore needs at least one permit",
                            ));
                        }
                        Object::Permits(Permits::new(name, permits, false, self.max_waiters))
                    }
                    Kind::Event => Object::Event(Event::new(name, self.max_waiters)),
                    Kind::Barrier { parties } => {
                        if parties == 0 {
                            return Err(ErrorReply::new(
                                ErrorCode::InvalidArgument,
                                "a barrier needs at least one party",
                            ));
                        }
                        Object::Barrier(Barrier::new(name, parties, self.max_waiters))
                    }
                };
                opened(&object);
                self.count.fetch_add(1, Ordering::SeqCst);
                self.names().insert(entry.key().clone());
                tracing::debug!(name = %entry.key(), kind = object.kind_name(), "object created");
                Ok(entry.insert(object).clone())
            }
        }
    }

    /// A connection that opened `queue` (each [`Registry::open`] counts one) is done with
    /// it: if it was the last of an auto-delete queue's, the queue is removed as by `rm`.
    pub(crate) fn let_go(&self, queue: &Arc<Queue>) {
        if !queue.auto_delete {
            return;
        }
        // Opens count under the same map lock, so nobody opens it between the last
        // let-go and the removal.
        let removed = self.objects.remove_if(&queue.name, |_, object| {
            matches!(object, Object::Queue(q) if Arc::ptr_eq(q, queue))
                && queue.openers.fetch_sub(1, Ordering::SeqCst) == 1
        });
        if let Some((name, object)) = removed {
            tracing::info!(%name, "auto-delete queue removed: the last connection that opened it closed");
            self.removed(&name, object);
        }
    }

    /// Removes `name`: its waiters get `Closed` and its items are dropped.
    pub(crate) fn remove(&self, name: &str) -> Result<(), ErrorReply> {
        let Some((_, object)) = self.objects.remove(name) else {
            return Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!("no object is named '{name}'"),
            ));
        };
        self.removed(name, object);
        Ok(())
    }

    /// Finishes the removal of `object`, just taken out of the map.
    fn removed(&self, name: &str, object: Object) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.names().remove(name);
        object.waits().remove();
        tracing::debug!(name, "object removed");
    }

    /// Every object's figures, sorted by name.
    pub(crate) fn stats(&self) -> Vec<ObjectStats> {
        let mut stats: Vec<ObjectStats> = self
            .snapshot()
            .into_iter()
            .map(|(name, object)| figures(name, &object))
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// The objects whose names sort after `after`, in name order, as many as fit in about
    /// `max_len` encoded bytes (at least one); and whether more follow.
    pub(crate) fn stats_page(&self, after: &str, max_len: usize) -> (Vec<ObjectStats>, bool) {
        use std::ops::Bound;
        // Names are at least one byte, so a page never holds more than this many.
        let most = max_len / 16 + 1;
        let (names, more_names): (Vec<String>, bool) = {
            let names = self.names();
            let from = if after.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(after)
            };
            let mut range = names.range::<str, _>((from, Bound::Unbounded));
            let taken = range.by_ref().take(most).cloned().collect();
            (taken, range.next().is_some())
        };
        let mut page: Vec<ObjectStats> = Vec::new();
        let mut used = 0;
        let mut cut = false;
        for name in names {
            // Removed since the names were read: not listed.
            let Some(object) = self.objects.get(&name).map(|entry| entry.value().clone()) else {
                continue;
            };
            let entry = figures(name, &object);
            let len = encoded_len(&entry);
            if !page.is_empty() && used + len > max_len {
                cut = true;
                break;
            }
            used += len;
            page.push(entry);
        }
        (page, cut || more_names)
    }

    /// The figures of one object.
    pub(crate) fn lookup(&self, name: &str) -> Option<ObjectStats> {
        let object = self.objects.get(name)?.value().clone();
        Some(figures(name.to_owned(), &object))
    }

    /// Wakes every parked request with `ShuttingDown`.
    pub(crate) fn shut_down(&self) {
        for (_, object) in self.snapshot() {
            object.waits().shut_down();
        }
    }

    pub(crate) fn bytes_used(&self) -> usize {
        self.budget.used()
    }

    /// Clones the objects out, so that no map guard is held while they are locked.
    /// The broker-wide byte budget.
    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn names(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // Single inserts and removals: a poisoned set is still coherent.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Vec<(String, Object)> {
        self.objects
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect()
    }
}

/// Counts one more opener of an auto-delete queue (called with its map entry locked).
fn opened(object: &Object) {
    if let Object::Queue(queue) = object {
        if queue.auto_delete {
            queue.openers.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An object's figures for [`Reply::Stats`](ipcq_proto::Reply::Stats).
fn figures(name: String, object: &Object) -> ObjectStats {
    ObjectStats {
        name,
        detail: match object {
            Object::Queue(queue) => ObjectDetail::Queue(queue.stats()),
            Object::Pipe(pipe) => ObjectDetail::Pipe(pipe.stats()),
            Object::Permits(permits) if permits.is_lock() => ObjectDetail::Lock(permits.stats()),
            Object::Permits(permits) => ObjectDetail::Semaphore(permits.stats()),
            Object::Event(event) => ObjectDetail::Event(event.stats()),
            Object::Barrier(barrier) => ObjectDetail::Barrier(barrier.stats()),
        },
    }
}

/// An entry's length in a stats answer.
fn encoded_len(entry: &ObjectStats) -> usize {
    ipcq_proto::encoded_len(entry)
}

/// Whether an existing object's kind and parameters match what an open asks for (a pipe's
/// end is not a parameter of the pipe).
fn same_parameters(existing: &Kind, wanted: &Kind) -> bool {
    match (existing, wanted) {
        // The slot size only shapes a queue's ring when the queue is made.
        (
            Kind::Queue {
                capacity: a,
                auto_delete: b,
                dead_letter: c,
                ..
            },
            Kind::Queue {
                capacity: x,
                auto_delete: y,
                dead_letter: z,
                ..
            },
        ) => (a, b, c) == (x, y, z),
        (Kind::Semaphore { permits: a }, Kind::Semaphore { permits: b }) => a == b,
        (Kind::Lock, Kind::Lock) | (Kind::Event, Kind::Event) => true,
        (Kind::Barrier { parties: a }, Kind::Barrier { parties: b }) => a == b,
        (
            Kind::PipeEnd {
                duplex: a,
                capacity: c,
                ..
            },
            Kind::PipeEnd {
                duplex: b,
                capacity: d,
                ..
            },
        ) => a == b && c == d,
        _ => false,
    }
}

fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Queue {
            capacity,
            auto_delete,
            dead_letter,
            ..
        } => format!(
            "{} of capacity {capacity}{}",
            if *auto_delete {
                "an auto-delete queue"
            } else {
                "a queue"
            },
            match dead_letter {
                Some(DeadLetter {
                    queue,
                    max_deliveries: 0,
                }) => format!(" with dead-letter queue '{queue}'"),
                Some(DeadLetter {
                    queue,
                    max_deliveries,
                }) =>
                    format!(" with dead-letter queue '{queue}' after {max_deliveries} deliveries"),
                None => String::new(),
            }
        ),
        Kind::PipeEnd {
            duplex, capacity, ..
        } => format!(
            "a {} pipe of capacity {capacity}",
            if *duplex { "duplex" } else { "simplex" }
        ),
        Kind::Lock => "a lock".into(),
        Kind::Semaphore { permits } => format!("a semaphore of {permits} permits"),
        Kind::Event => "an event".into(),
        Kind::Barrier { parties } => format!("a barrier of {parties} parties"),
    }
}
