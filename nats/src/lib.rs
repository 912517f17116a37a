//! ipcq's bounded FIFO queues on NATS JetStream: the same put / get / acknowledge contract as
//! the local broker's, for work that outgrows one machine.
//!
//! How a queue maps onto JetStream (each choice is the one that keeps ipcq's contract):
//!
//! | ipcq | JetStream |
//! |---|---|
//! | queue `name` | stream `IPCQ_<name>` on subject `ipcq.q.<name>`, work-queue retention, file storage |
//! | capacity (0 = unbounded) | `max_messages` with discard-new: the bound counts every item the stream holds, ready or in a consumer's hands until acknowledged, as ipcq's does |
//! | `put_nowait` on a full queue | the publish is refused ("maximum messages exceeded"): [`Error::Full`] |
//! | `put` / `put_timeout` | the publish is retried with backoff (1 ms doubling to 50 ms) until there is room or the time is up |
//! | every consumer of a queue | one durable pull consumer, `ipcq`, shared: each item goes to one of them |
//! | `get` / `get_timeout` / `get_nowait` | a pull of one message that expires with the time left |
//! | plain `get` | acknowledged when handed over, and confirmed by the server (double ack) before `get` returns |
//! | acknowledging get | [`Delivery`]: `ack` after the work (double ack), `reject` (or drop) = nak: delivered again at once |
//! | a worker that lives | its deliveries are kept by an in-progress heartbeat every [`HEARTBEAT`], however long the work takes |
//! | a worker that dies holding an item | the heartbeats stop: the item goes to another after the consumer's ack wait ([`ACK_WAIT`]) |
//! | `len` | the stream's message count: ready items and items held but not yet acknowledged |
//! | dead letters, delivery limit | set per queue in the stream's metadata (every opener must ask for the same, else [`Error::Conflict`]); a delivery past the limit, or one sent there with [`Delivery::dead_letter`], is published to the dead-letter queue (an ordinary queue) and then acknowledged |
//! | `close` | the stream's subject is changed to `ipcq.closed.<name>`: every publish finds no stream ([`Error::Closed`]); gets drain what is left — including items workers hold, which come back if they die — then fail with [`Error::Closed`] (a waiting get learns it within [`LONGEST_PULL`] of the last item's acknowledgement) |
//! | `task_done` / `join` | put items are the stream's last sequence number; done items are the marks in a second stream (`tasks` module), an acknowledgement's mark published before the acknowledgement under the item's sequence as message id, so that it counts once however its worker dies |
//!
//! FIFO: one stream keeps publish order and hands items out in that order; with several
//! consumers each gets the next ones in order. An item given back (rejected, or a dead
//! worker's) is delivered again soon but not necessarily first (the local broker puts it
//! back at the head): a rejected first item of four came back second or third when tried
//! here.
//!
//! Locks ([`Lock`]), semaphores ([`Semaphore`]), events ([`Event`]) and the counts of
//! `task_done`/`join` live in key-value buckets; their modules say how. `ipcq::Client`
//! uses this crate for `nats://` addresses (its feature `nats`).

use std::sync::Arc;
use std::time::{Duration, Instant};

mod event;
mod lock;
mod tasks;

pub use event::Event;
pub use lock::{Lock, LockGuard, Semaphore, LOCK_TTL};
pub use tasks::DUPLICATE_WINDOW;

/// The NATS client crate, for [`Connection::connect_with`]'s options (credentials, TLS).
pub use async_nats;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;

/// How long an item may stay in a consumer's hands unacknowledged before JetStream gives it
/// to another: the time after which a dead worker's item is redelivered.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// How often a live worker tells JetStream it is still working on a delivery (an
/// in-progress acknowledgement, which restarts the ack wait).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest single pull: a `get` with no time limit pulls again after this, and a get
/// waiting on a queue that is closed meanwhile learns it within this long.
pub const LONGEST_PULL: Duration = Duration::from_secs(1);

/// The durable consumer that every consumer of a queue shares.
const CONSUMER: &str = "ipcq";

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue is full (`put_nowait`, or `put_timeout` ran out of time).
    #[error("queue '{0}' is full")]
    Full(String),
    /// Nothing came in time (`get_nowait`, `get_timeout`).
    #[error("queue '{0}' is empty")]
    Empty(String),
    /// The queue exists with other options than those asked for.
    #[error("conflict: {0}")]
    Conflict(String),
    /// There is no queue of that name.
    #[error("no queue is named '{0}'")]
    NotFound(String),
    /// The queue is closed: no more puts; gets fail once it is empty.
    #[error("queue '{0}' is closed")]
    Closed(String),
    /// The name cannot be a queue's on NATS.
    #[error("bad name: {0}")]
    BadName(String),
    /// The request makes no sense (`task_done` more often than items were put, a
    /// semaphore of 0 permits).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The NATS server refused, or could not be reached.
    #[error("NATS: {0}")]
    Nats(String),
}

/// A result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

fn nats(err: impl std::fmt::Display) -> Error {
    Error::Nats(err.to_string())
}

/// A connection to a NATS server with JetStream.
#[derive(Debug, Clone)]
pub struct Connection {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl Connection {
    /// Connects to the NATS server at `addr` (`nats://host:port`).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when no server answers there.
    pub async fn connect(addr: &str) -> Result<Connection> {
        Self::connect_with(addr, async_nats::ConnectOptions::new()).await
    }

    /// Connects to the NATS server(s) at `addr` (`nats://host:port`, `tls://host:port`,
    /// several separated by commas) with `options`: credentials, TLS, names, as the
    /// `async-nats` crate takes them.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when no server answers there.
    pub async fn connect_with(
        addr: &str,
        options: async_nats::ConnectOptions,
    ) -> Result<Connection> {
        let servers: Vec<&str> = addr.split(',').map(str::trim).collect();
        let client = options.connect(servers).await.map_err(nats)?;
        Ok(Connection {
            jetstream: jetstream::new(client.clone()),
            client,
        })
    }

    /// The largest message the server takes.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    /// Checks that the server answers and has JetStream (one round trip).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        self.jetstream.query_account().await.map(drop).map_err(nats)
    }

    /// Opens the queue `name`, creating it with `capacity` (0: unbounded) if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// [`Error::BadName`] for a name NATS cannot carry (letters, digits, `-` and `_` only),
    /// [`Error::Conflict`] when the queue exists with another capacity.
    pub async fn queue(&self, name: &str, capacity: usize) -> Result<Queue> {
        self.queue_with(name, &QueueOptions::new().capacity(capacity))
            .await
    }

    /// Opens the queue `name` with `options`, creating it if it does not exist (and its
    /// dead-letter queue, unbounded, if it names one).
    ///
    /// # Errors
    ///
    /// As [`Connection::queue`]; [`Error::Conflict`] also when the queue exists with
    /// another dead-letter queue or delivery limit.
    pub async fn queue_with(&self, name: &str, options: &QueueOptions) -> Result<Queue> {
        check_name(name)?;
        let capacity = options.capacity;
        let mut metadata = std::collections::HashMap::new();
        if let Some(dead_letter) = &options.dead_letter {
            check_name(dead_letter)?;
            metadata.insert(DEAD_LETTER_KEY.to_owned(), dead_letter.clone());
        }
        if let Some(max) = options.max_deliveries {
            metadata.insert(MAX_DELIVERIES_KEY.to_owned(), max.to_string());
        }
        let subject = format!("ipcq.q.{name}");
        let max_messages = if capacity == 0 {
            -1
        } else {
            i64::try_from(capacity).map_err(|_| Error::BadName("capacity too large".into()))?
        };
        let mut stream = self
            .jetstream
            .get_or_create_stream(stream::Config {
                name: format!("IPCQ_{name}"),
                subjects: vec![subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                max_messages,
                discard: stream::DiscardPolicy::New,
                storage: stream::StorageType::File,
                metadata: metadata.clone(),
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let existing = stream.info().await.map_err(nats)?.config.clone();
        if existing.max_messages != max_messages {
            return Err(Error::Conflict(format!(
                "queue '{name}' exists with capacity {}, not {capacity}",
                existing.max_messages.max(0)
            )));
        }
        let ours = |key: &str| existing.metadata.get(key) == metadata.get(key);
        if !ours(DEAD_LETTER_KEY) || !ours(MAX_DELIVERIES_KEY) {
            return Err(Error::Conflict(format!(
                "queue '{name}' exists with another dead-letter queue or delivery limit"
            )));
        }
        let dead_letter = match &options.dead_letter {
            Some(dead_letter) => {
                // Created if need be: an ordinary, unbounded queue anyone may read.
                Box::pin(self.queue(dead_letter, 0)).await?;
                Some(Arc::new(DeadLetter {
                    jetstream: self.jetstream.clone(),
                    subject: format!("ipcq.q.{dead_letter}"),
                    max_deliveries: options.max_deliveries,
                }))
            }
            None => None,
        };
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats)?;
        let tasks = Arc::new(tasks::Tasks::new(self, name, stream.clone()).await?);
        Ok(Queue {
            name: name.to_owned(),
            subject,
            jetstream: self.jetstream.clone(),
            stream,
            consumer,
            dead_letter,
            tasks,
            capacity,
        })
    }
}

/// The stream metadata keys that hold a queue's dead-letter settings.
const DEAD_LETTER_KEY: &str = "ipcq.dead_letter";
const MAX_DELIVERIES_KEY: &str = "ipcq.max_deliveries";

/// How a queue is made: its capacity, and where items go that cannot be processed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    capacity: usize,
    dead_letter: Option<String>,
    max_deliveries: Option<u32>,
}

impl QueueOptions {
    /// Unbounded, no dead-letter queue.
    pub fn new() -> QueueOptions {
        QueueOptions::default()
    }

    /// Most items the queue holds; 0 for unbounded.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> QueueOptions {
        self.capacity = capacity;
        self
    }

    /// The queue that items sent with [`Delivery::dead_letter`], or delivered more than
    /// [`max_deliveries`](QueueOptions::max_deliveries) times, go to.
    #[must_use]
    pub fn dead_letter(mut self, queue: &str) -> QueueOptions {
        self.dead_letter = Some(queue.to_owned());
        self
    }

    /// How many times an item may be delivered; the next delivery goes to the dead-letter
    /// queue instead (with one set).
    #[must_use]
    pub fn max_deliveries(mut self, max: u32) -> QueueOptions {
        self.max_deliveries = Some(max.max(1));
        self
    }
}

/// Where a queue's dead letters go.
#[derive(Debug)]
struct DeadLetter {
    jetstream: jetstream::Context,
    subject: String,
    max_deliveries: Option<u32>,
}

impl DeadLetter {
    /// Publishes `message`'s item to the dead-letter queue, then acknowledges it on its
    /// own queue. A crash between the two leaves it in both (delivered again, and dead
    /// lettered again): never in neither.
    async fn take(&self, message: &jetstream::Message) -> Result<()> {
        self.jetstream
            .publish(self.subject.clone(), message.payload.clone())
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        message.double_ack().await.map_err(nats)
    }
}

impl Connection {
    /// The key-value bucket `name`, made if it does not exist, whose keys expire `max_age`
    /// after their last write (`Duration::ZERO`: never).
    async fn bucket(
        &self,
        name: &str,
        max_age: Duration,
    ) -> Result<async_nats::jetstream::kv::Store> {
        match self.jetstream.get_key_value(name).await {
            Ok(store) => Ok(store),
            Err(_) => self
                .jetstream
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: name.into(),
                    history: 1,
                    max_age,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(nats),
        }
    }
}

/// The subject a closed queue's stream listens on: no one publishes there.
fn closed_subject(name: &str) -> String {
    format!("ipcq.closed.{name}")
}

/// A queue's figures, as `ipcq stats` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Most items it holds; 0 for unbounded.
    pub capacity: usize,
    /// Items in it: ready ones and those handed out but not yet acknowledged.
    pub len: usize,
    /// Items handed out and not yet acknowledged.
    pub in_flight: usize,
    /// Payload bytes in it.
    pub bytes: u64,
    /// Items put since it was made.
    pub total_put: u64,
    /// Whether it is closed.
    pub closed: bool,
}

impl Connection {
    /// The figures of queue `name`, or `None` if there is no such queue. Creates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::BadName`], or [`Error::Nats`] when the server does not answer.
    pub async fn lookup(&self, name: &str) -> Result<Option<QueueInfo>> {
        check_name(name)?;
        match self.jetstream.get_stream(format!("IPCQ_{name}")).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(nats)?.clone();
                Ok(Some(self.figures(name, info).await?))
            }
            Err(err) if is_stream_not_found(&err) => Ok(None),
            Err(err) => Err(nats(err)),
        }
    }

    /// Every queue on the server, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server does not answer.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        let mut streams = self.jetstream.streams();
        let mut queues = Vec::new();
        while let Some(info) = streams.next().await {
            let info = info.map_err(nats)?;
            if let Some(name) = info.config.name.strip_prefix("IPCQ_").map(str::to_owned) {
                queues.push(self.figures(&name, info).await?);
            }
        }
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(queues)
    }

    /// Removes queue `name` and its items.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such queue.
    pub async fn remove(&self, name: &str) -> Result<()> {
        check_name(name)?;
        match self.jetstream.delete_stream(format!("IPCQ_{name}")).await {
            Ok(_) => tasks::Tasks::forget(self, name).await,
            Err(err) if err.to_string().contains("stream not found") => {
                Err(Error::NotFound(name.to_owned()))
            }
            Err(err) => Err(nats(err)),
        }
    }

    async fn figures(&self, name: &str, info: stream::Info) -> Result<QueueInfo> {
        let in_flight = match self
            .jetstream
            .get_consumer_from_stream::<consumer::pull::Config, _, _>(CONSUMER, &info.config.name)
            .await
        {
            Ok(mut consumer) => consumer.info().await.map_err(nats)?.num_ack_pending,
            Err(_) => 0,
        };
        Ok(QueueInfo {
            name: name.to_owned(),
            capacity: usize::try_from(info.config.max_messages).unwrap_or(0),
            len: usize::try_from(info.state.messages).unwrap_or(usize::MAX),
            in_flight,
            bytes: info.state.bytes,
            total_put: info.state.last_sequence,
            closed: info.config.subjects == [closed_subject(name)],
        })
    }
}

fn is_stream_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(err)
            if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Names become parts of stream names and subjects: no dots, wildcards or spaces.
fn check_name(name: &str) -> Result<()> {
    let fits = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        Ok(())
    } else {
        Err(Error::BadName(format!(
            "{name:?}: a queue on NATS is named with letters, digits, '-' and '_' (at most 200)"
        )))
    }
}

/// A bounded FIFO queue on JetStream.
#[derive(Debug)]
pub struct Queue {
    name: String,
    subject: String,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    consumer: consumer::PullConsumer,
    dead_letter: Option<Arc<DeadLetter>>,
    tasks: Arc<tasks::Tasks>,
    capacity: usize,
}

impl Queue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Most items it holds; 0 for unbounded.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the queue holds its capacity.
    pub async fn put_nowait(&self, item: Bytes) -> Result<()> {
        let ack = self
            .jetstream
            .publish(self.subject.clone(), item)
            .await
            .map_err(nats)?;
        match ack.await {
            Ok(_) => Ok(()),
            Err(err) if is_full(&err) => Err(Error::Full(self.name.clone())),
            // A closed queue's stream no longer listens on the subject (see `close`).
            Err(err) if err.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                Err(Error::Closed(self.name.clone()))
            }
            Err(err) => Err(nats(err)),
        }
    }

    /// Closes the queue for everyone: puts fail from now on, gets take what is left and
    /// then fail, all with [`Error::Closed`]. Closing a closed queue does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server refuses.
    pub async fn close(&self) -> Result<()> {
        let mut config = self.stream.get_info().await.map_err(nats)?.config;
        let closed = vec![closed_subject(&self.name)];
        if config.subjects == closed {
            return Ok(());
        }
        config.subjects = closed;
        self.jetstream
            .update_stream(config)
            .await
            .map(drop)
            .map_err(nats)
    }

    /// Whether the queue is closed.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server does not answer.
    pub async fn is_closed(&self) -> Result<bool> {
        let info = self.stream.get_info().await.map_err(nats)?;
        Ok(info.config.subjects == [closed_subject(&self.name)])
    }

    /// Puts `item`, waiting for room for at most `timeout` (`None`: as long as it takes).
    /// Returns once the server has stored it.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when there was no room in time.
    pub async fn put_timeout(&self, item: Bytes, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut pause = Duration::from_millis(1);
        loop {
            match self.put_nowait(item.clone()).await {
                Err(Error::Full(name)) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        return Err(Error::Full(name));
                    }
                    tokio::time::sleep(left.map_or(pause, |left| left.min(pause))).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Takes the next item, waiting for at most `timeout` (`None`: as long as it takes);
    /// it is acknowledged, and the server has recorded that, before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] when nothing came in time.
    pub async fn get_timeout(&self, timeout: Option<Duration>) -> Result<Bytes> {
        let message = self.pull(timeout).await?;
        message.double_ack().await.map_err(nats)?;
        Ok(message.payload.clone())
    }

    /// Takes the next item as a [`Delivery`], to be acknowledged after the work; waits for
    /// at most `timeout` (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] when nothing came in time.
    pub async fn get_delivery_timeout(&self, timeout: Option<Duration>) -> Result<Delivery> {
        Ok(Delivery::new(
            self.pull(timeout).await?,
            self.dead_letter.clone(),
            Arc::clone(&self.tasks),
            &self.name,
        ))
    }

    /// Items in the queue: ready ones and those handed out but not yet acknowledged.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server does not answer.
    pub async fn len(&self) -> Result<usize> {
        let info = self.stream.get_info().await.map_err(nats)?;
        usize::try_from(info.state.messages).map_err(nats)
    }

    /// Whether the queue holds no item.
    ///
    /// # Errors
    ///
    /// As [`Queue::len`].
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Marks one item as processed, as `JoinableQueue.task_done`; [`Delivery::ack`] marks
    /// its item too.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when every item put is marked already.
    pub async fn task_done(&self) -> Result<()> {
        self.tasks.task_done().await
    }

    /// Waits until every item put has been marked done, for at most `timeout` (`None`: as
    /// long as it takes); whether they were.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server does not answer.
    pub async fn join_timeout(&self, timeout: Option<Duration>) -> Result<bool> {
        self.tasks.join(timeout).await
    }

    /// One message from the shared consumer, pulling until `timeout` is over.
    async fn pull(&self, timeout: Option<Duration>) -> Result<jetstream::Message> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let expires = left.map_or(LONGEST_PULL, |left| left.min(LONGEST_PULL));
            let mut batch = if expires < Duration::from_millis(1) {
                // No time to wait: only what is there now.
                self.consumer
                    .fetch()
                    .max_messages(1)
                    .messages()
                    .await
                    .map_err(nats)?
            } else {
                self.consumer
                    .batch()
                    .max_messages(1)
                    .expires(expires)
                    .messages()
                    .await
                    .map_err(nats)?
            };
            if let Some(message) = batch.next().await {
                let message = message.map_err(nats)?;
                // Past the delivery limit: to the dead letters, and pull again.
                if let Some(dead_letter) = &self.dead_letter {
                    if let Some(max) = dead_letter.max_deliveries {
                        let delivered = message.info().map_err(nats)?.delivered;
                        if delivered > i64::from(max) {
                            let sequence = message.info().map_err(nats)?.stream_sequence;
                            self.tasks.item_done(sequence).await?;
                            dead_letter.take(&message).await?;
                            continue;
                        }
                    }
                }
                return Ok(message);
            }
            // Nothing came. A closed queue is drained once it holds nothing, not even an
            // item that a worker holds (if that worker dies, it comes back after the ack
            // wait, for this getter).
            let info = self.stream.get_info().await.map_err(nats)?;
            if info.config.subjects == [closed_subject(&self.name)] && info.state.messages == 0 {
                return Err(Error::Closed(self.name.clone()));
            }
            if left.is_some_and(|left| left < Duration::from_millis(1)) {
                return Err(Error::Empty(self.name.clone()));
            }
        }
    }
}

/// Whether a publish was refused because the stream holds its `max_messages`.
fn is_full(err: &jetstream::context::PublishError) -> bool {
    err.to_string().contains("maximum messages")
        || std::error::Error::source(err)
            .is_some_and(|source| source.to_string().contains("maximum messages"))
}

/// An item taken with [`Queue::get_delivery_timeout`]: it stays in the queue (counted by
/// `len` and towards the capacity) until it is settled. While it lives, a task tells
/// JetStream every [`HEARTBEAT`] that the work goes on; dropped unsettled, it is rejected
/// (delivered again at once). Made and dropped inside a tokio runtime.
#[derive(Debug)]
pub struct Delivery {
    message: jetstream::Message,
    heartbeat: tokio::task::JoinHandle<()>,
    settled: bool,
    dead_letter: Option<Arc<DeadLetter>>,
    tasks: Arc<tasks::Tasks>,
    queue: String,
}

impl Delivery {
    fn new(
        message: jetstream::Message,
        dead_letter: Option<Arc<DeadLetter>>,
        tasks: Arc<tasks::Tasks>,
        queue: &str,
    ) -> Delivery {
        let beating = message.clone();
        let heartbeat = tokio::spawn(async move {
            let mut every = tokio::time::interval(HEARTBEAT);
            every.tick().await;
            loop {
                every.tick().await;
                // A lost heartbeat costs at most a redelivery, which the caller's ack
                // (or the next beat) puts right.
                let _ = beating.ack_with(jetstream::AckKind::Progress).await;
            }
        });
        Delivery {
            message,
            heartbeat,
            settled: false,
            dead_letter,
            tasks,
            queue: queue.to_owned(),
        }
    }

    /// Stops the heartbeats: the delivery is being settled.
    fn settle(mut self) -> jetstream::Message {
        self.heartbeat.abort();
        self.settled = true;
        self.message.clone()
    }

    /// The item.
    pub fn item(&self) -> &Bytes {
        &self.message.payload
    }

    /// Whether JetStream delivered this item before (to a worker that died or rejected it).
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] if the message carries no delivery information.
    pub fn is_redelivered(&self) -> Result<bool> {
        Ok(self.deliveries()? > 1)
    }

    /// How many times JetStream delivered this item, this time included.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] if the message carries no delivery information.
    pub fn deliveries(&self) -> Result<u32> {
        let delivered = self.message.info().map_err(nats)?.delivered;
        Ok(u32::try_from(delivered.max(1)).unwrap_or(u32::MAX))
    }

    /// The work is done: the item leaves the queue, and counts as its `task_done`.
    /// Returns once the server recorded both.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server does not confirm (the item may then come again).
    pub async fn ack(self) -> Result<()> {
        let (tasks, sequence) = (Arc::clone(&self.tasks), self.sequence()?);
        let message = self.settle();
        // Counted first: a worker killed between the two leaves the item to be delivered
        // again, and its second mark is dropped as a duplicate (see `tasks`).
        tasks.item_done(sequence).await?;
        message.double_ack().await.map_err(nats)
    }

    /// The item's sequence number in its queue's stream.
    fn sequence(&self) -> Result<u64> {
        Ok(self.message.info().map_err(nats)?.stream_sequence)
    }

    /// Sends the item to the queue's dead-letter queue.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when the queue has none (the item is then rejected, as a
    /// dropped delivery is); [`Error::Nats`] when the server cannot be told.
    pub async fn dead_letter(self) -> Result<()> {
        let Some(dead_letter) = self.dead_letter.clone() else {
            return Err(Error::Conflict(format!(
                "queue '{}' has no dead-letter queue",
                self.queue
            )));
        };
        let (tasks, sequence) = (Arc::clone(&self.tasks), self.sequence()?);
        let message = self.settle();
        tasks.item_done(sequence).await?;
        dead_letter.take(&message).await
    }

    /// Gives the item back to be delivered again.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`] when the server cannot be told.
    pub async fn reject(self) -> Result<()> {
        self.settle()
            .ack_with(jetstream::AckKind::Nak(None))
            .await
            .map_err(nats)
    }
}

impl Drop for Delivery {
    /// Unsettled: stops the heartbeats and rejects the item, so that it is delivered again
    /// at once rather than after the ack wait.
    fn drop(&mut self) {
        self.heartbeat.abort();
        if self.settled {
            return;
        }
        let message = self.message.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
            });
        }
    }
}
