//! Waiting on several queues at once from one thread.

use std::fmt;
use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipcq_proto::{Reply, Wait};

use crate::client::{Hold, Link};
use crate::common::remaining;
use crate::core::{Fetch, Progress};
use crate::delivery::Settle;
use crate::inbox::Delivered;
use crate::queue::RawQueue;
use crate::{Delivery, Error, Result};

/// Takes the first item from any of several queues, as crossbeam-channel's `Select` does
/// for channels: the blocking client's answer to `tokio::select!`.
///
/// Queues are added in priority order: when several have an item, the one added first
/// gives it. Waiting, the select asks every queue at once (one write) and takes from the
/// first that answers; the requests of the others are withdrawn at the broker. Nothing is
/// taken from a queue whose item is not handed out: an item that was already on its way
/// when the request was withdrawn stays in this client, in order, for the next get or
/// select on that queue (as prefetched items do: it counts in `len`, and goes back to the
/// head of its queue if the process exits). A queue that is closed and drained is passed
/// over; when all are, the select fails with [`Error::Closed`].
///
/// All the queues must come from the same [`Client`]. Typed queues take part through
/// [`Queue::raw`](crate::Queue::raw), and decode what they give with
/// [`Queue::decode`](crate::Queue::decode) (or [`Delivery::decode`]).
///
/// # Examples
///
/// ```no_run
/// let client = ipcq_client::Client::connect_default()?;
/// let urgent = client.queue::<String>("urgent", 100)?;
/// let routine = client.queue::<String>("routine", 100)?;
/// let mut select = ipcq_client::Select::new();
/// select.add(urgent.raw());
/// select.add(routine.raw());
/// let (index, item) = select.get()?;
/// let job = if index == 0 { urgent.decode(&item)? } else { routine.decode(&item)? };
/// println!("{job}");
/// # Ok::<(), ipcq_client::Error>(())
/// ```
#[derive(Default)]
pub struct Select<'a> {
    queues: Vec<&'a RawQueue>,
}

impl<'a> Select<'a> {
    /// A select over no queue yet.
    pub fn new() -> Self {
        Select { queues: Vec::new() }
    }

    /// Adds `queue`, after those already added; returns its index in what the select
    /// returns.
    pub fn add(&mut self, queue: &'a RawQueue) -> usize {
        self.queues.push(queue);
        self.queues.len() - 1
    }

    /// The first item of any queue, waiting while all are empty; with the index of its
    /// queue.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once every queue is closed and drained; [`Error::Invalid`] with no
    /// queue, or queues of several clients; [`Error::BrokerGone`].
    pub fn get(&self) -> Result<(usize, Bytes)> {
        self.select(Wait::Block, true).map(|(i, d)| (i, d.item))
    }

    /// Like [`get`](Select::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if no queue had an item in time; otherwise as [`Select::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<(usize, Bytes)> {
        self.select(Wait::timeout(timeout), true)
            .map(|(i, d)| (i, d.item))
    }

    /// Like [`get`](Select::get), if a queue has an item now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] if none has; otherwise as [`Select::get`].
    pub fn get_nowait(&self) -> Result<(usize, Bytes)> {
        self.select(Wait::NoWait, true).map(|(i, d)| (i, d.item))
    }

    /// The first item of any queue as a [`Delivery`], acknowledged when its work is done
    /// (see [`RawQueue::get_delivery`]); with the index of its queue.
    ///
    /// # Errors
    ///
    /// As [`Select::get`].
    pub fn get_delivery(&self) -> Result<(usize, Delivery)> {
        self.select_delivery(Wait::Block)
    }

    /// Like [`get_delivery`](Select::get_delivery), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Select::get_timeout`].
    pub fn get_delivery_timeout(&self, timeout: Duration) -> Result<(usize, Delivery)> {
        self.select_delivery(Wait::timeout(timeout))
    }

    /// Like [`get_delivery`](Select::get_delivery), if a queue has an item now.
    ///
    /// # Errors
    ///
    /// As [`Select::get_nowait`].
    pub fn get_delivery_nowait(&self) -> Result<(usize, Delivery)> {
        self.select_delivery(Wait::NoWait)
    }

    fn select_delivery(&self, wait: Wait) -> Result<(usize, Delivery)> {
        let (index, d) = self.select(wait, false)?;
        let owner: Arc<dyn Settle> = self.holds()?[index].clone();
        Ok((index, Delivery::new(d.item, d.tag, d.earlier, owner)))
    }

    /// Takes one item: from the first queue with one fetched already, else after asking
    /// every open queue and waiting for the first answer with items.
    fn select(&self, wait: Wait, ack: bool) -> Result<(usize, Delivered)> {
        let holds = self.holds()?;
        let client = &holds[0].client;
        let start = Instant::now();
        let mut closed = vec![false; self.queues.len()];
        loop {
            let ready = client
                .with_core(|core| (0..holds.len()).find(|&i| core.has_items(holds[i].handle)));
            if let Some(i) = ready {
                let mut taken = holds[i].fetch(1, Wait::NoWait, ack)?;
                return Ok((i, taken.swap_remove(0)));
            }
            if closed.iter().all(|&c| c) {
                return Err(Error::Closed);
            }
            let left = remaining(wait, start);
            match Self::wait_any(&holds, left, &closed)? {
                Round::Items => {}
                Round::Answers(answers) => {
                    let mut all_empty = true;
                    for (i, answer) in answers.into_iter().enumerate() {
                        match answer {
                            None | Some(Ok(_)) => all_empty = false,
                            Some(Err(Error::Closed)) => closed[i] = true,
                            Some(Err(Error::Empty)) => {}
                            Some(Err(err)) => return Err(err),
                        }
                    }
                    if all_empty && !closed.iter().all(|&c| c) {
                        return Err(Error::Empty);
                    }
                }
            }
        }
    }

    /// Asks every open queue for items in one write, waits until one has some or all have
    /// answered, and withdraws the requests still waiting.
    fn wait_any(holds: &[&Arc<Hold>], wait: Wait, closed: &[bool]) -> Result<Round> {
        let client = &holds[0].client;
        let fetches: Vec<Option<Fetch>> = client.with_core(|core| {
            holds
                .iter()
                .zip(closed)
                .map(|(hold, &closed)| {
                    let handle = hold.handle;
                    (!closed)
                        .then(|| core.fetch(handle, core.window(handle), wait))
                        .transpose()
                })
                .collect::<Result<_>>()
        })?;
        let _ = client.flush_all();
        let waker = Arc::new(Condvar::new());
        let mut answers: Vec<Option<Result<Progress>>> = holds.iter().map(|_| None).collect();
        let outcome = client.wait(&waker, |core| {
            for (i, fetch) in fetches.iter().enumerate() {
                let Some(fetch) = fetch else { continue };
                if answers[i].is_none() {
                    answers[i] = core.poll_fetch(*fetch, holds[i].handle, Some(&waker));
                }
            }
            let items = holds.iter().any(|hold| core.has_items(hold.handle));
            let answered = fetches
                .iter()
                .zip(&answers)
                .all(|(fetch, answer)| fetch.is_none() || answer.is_some());
            (items || answered).then_some(Ok(items))
        });
        // The losers' requests leave the broker; what they brought stays fetched.
        client.with_core(|core| {
            for (fetch, answer) in fetches.iter().zip(&answers) {
                if let (Some(Fetch::Own(id)), None) = (fetch, answer) {
                    core.abandon(*id);
                }
            }
        });
        let _ = client.flush_all();
        if outcome? {
            return Ok(Round::Items);
        }
        Ok(Round::Answers(
            answers
                .into_iter()
                .map(|answer| {
                    answer.map(|answer| match answer? {
                        Progress::Answer(Reply::Items { .. }) | Progress::Moved => Ok(()),
                        Progress::Answer(other) => Err(crate::ops::unexpected(&other)),
                    })
                })
                .collect(),
        ))
    }

    /// The queues' shares in their client's connection to a local broker (one client,
    /// at least one queue).
    fn holds(&self) -> Result<Vec<&Arc<Hold>>> {
        let holds = self
            .queues
            .iter()
            .map(|queue| queue.hold("waiting on several queues"))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = holds.first() else {
            return Err(Error::Invalid("a select needs at least one queue".into()));
        };
        let client: &Link = &first.client;
        if holds.iter().any(|hold| !hold.client.same(client)) {
            return Err(Error::Invalid(
                "a select waits on queues of one client only".into(),
            ));
        }
        Ok(holds)
    }
}

/// What a round of waiting brought.
enum Round {
    /// Items are fetched for at least one queue.
    Items,
    /// Every queue answered without items: how (`None`: not asked, it is closed).
    Answers(Vec<Option<Result<()>>>),
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.queues.iter().map(|queue| queue.name()))
            .finish()
    }
}
