//! The handles' public methods, written once for both clients.
//!
//! Most of a handle's API is a thin layer: a typed queue encodes and calls its raw queue, a
//! pipe end calls the queue under it, a lock runs one request. Each macro here writes such a
//! layer once; the blocking client expands it with plain `fn`s and the tokio client with
//! `async fn`s (`[async] [.await]`). What differs between the two (how a request is sent
//! and waited for, how a guard releases when dropped) stays in the clients' own modules.

/// The public `Client`: a connection to a local broker, or (feature `nats`) to NATS
/// JetStream, as its address says; the methods that do not open objects. The invoking
/// module provides `Link` (its connection to a local broker) and, with the `nats` feature,
/// `remote!` (runs a future of the NATS backend: blocks on it, or awaits it); `driver`
/// names the client (`Blocking` or `Tokio`); `connect: { .. }` holds the docs of
/// `Client::connect`.
macro_rules! client_surface {
    (
        [$($async:ident)?] [$($await:tt)*],
        driver: $driver:ident,
        client: { $(#[$client:meta])* },
        connect: { $(#[$connect:meta])* },
    ) => {
        $(#[$client])*
        #[derive(Clone)]
        pub struct Client {
            pub(crate) backend: Backend,
        }

        /// Where a client's objects live.
        #[derive(Clone)]
        pub(crate) enum Backend {
            /// An ipcq broker on this machine.
            Local(Link),
            /// NATS JetStream (`nats://` addresses).
            #[cfg(feature = "nats")]
            Nats(crate::nats::Remote),
        }

        impl Client {
            $(#[$connect])*
            pub $($async)? fn connect(addr: &str) -> Result<Client> {
                Self::connect_with(addr, &ConnectOptions::default())$($await)*
            }

            /// Connects to `addr` with `options` (time limit, trusted users; for NATS,
            /// what [`ConnectOptions::nats`](crate::ConnectOptions) sets).
            ///
            /// # Errors
            ///
            /// As [`Client::connect`].
            pub $($async)? fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client> {
                let backend = if crate::connect::is_nats(addr) {
                    #[cfg(feature = "nats")]
                    {
                        let driver = crate::nats::Driver::$driver;
                        Backend::Nats(remote!(crate::nats::Remote::connect(addr, options, driver))?)
                    }
                    #[cfg(not(feature = "nats"))]
                    {
                        return Err(crate::connect::nats_not_built(addr));
                    }
                } else {
                    Backend::Local(Link::connect_with(addr, options)$($await)*?)
                };
                Ok(Client { backend })
            }

            /// Connects to `IPCQ_ADDR`, else to where `ipcq-broker` listens by default
            /// (`$XDG_RUNTIME_DIR/ipcq.sock`, else `/tmp/ipcq-<uid>/ipcq.sock`; the pipe
            /// `ipcq` on Windows). `IPCQ_ADDR` may be a `nats://` address.
            ///
            /// # Errors
            ///
            /// As [`Client::connect`].
            pub $($async)? fn connect_default() -> Result<Client> {
                Self::connect(&ipcq_proto::default_addr())$($await)*
            }

            /// The address this client is connected to.
            pub fn addr(&self) -> &str {
                match &self.backend {
                    Backend::Local(link) => link.addr(),
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => remote.addr(),
                }
            }

            /// The largest frame the broker accepts (for NATS, the server's largest
            /// message); an item must fit in one with a few bytes to spare.
            pub fn max_frame_len(&self) -> usize {
                match &self.backend {
                    Backend::Local(link) => link.max_frame_len(),
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => remote.max_frame_len(),
                }
            }

            /// Checks that the broker answers.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`] if it does not.
            pub $($async)? fn ping(&self) -> Result<()> {
                match &self.backend {
                    Backend::Local(link) => link.ping()$($await)*,
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => remote!(remote.ping()),
                }
            }

            /// Every object in the broker with its figures, sorted by name (on NATS, the
            /// queues).
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`] if the broker does not answer.
            pub $($async)? fn stats(&self) -> Result<Vec<crate::stats::ObjectStats>> {
                match &self.backend {
                    Backend::Local(link) => link.stats()$($await)*,
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => remote!(remote.stats()),
                }
            }

            /// The figures of the object `name` alone, as [`Client::stats`] lists them.
            /// Creates nothing.
            ///
            /// # Errors
            ///
            /// [`Error::NotFound`] when there is no such object.
            pub $($async)? fn lookup(&self, name: &str) -> Result<crate::stats::ObjectStats> {
                match &self.backend {
                    Backend::Local(link) => link.lookup(name)$($await)*,
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => remote!(remote.lookup(name)),
                }
            }

            /// Removes the object `name`: its items are dropped, its waiters get
            /// [`Error::Closed`], and the name is free for a new object.
            ///
            /// # Errors
            ///
            /// [`Error::NotFound`] when there is no such object.
            pub $($async)? fn remove(&self, name: &str) -> Result<()> {
                match &self.backend {
                    Backend::Local(link) => link.remove(name)$($await)*,
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => remote!(remote.remove(name)),
                }
            }

            /// The connection to a local broker; [`Error::Unsupported`] for `what` on
            /// another backend.
            pub(crate) fn local(&self, what: &str) -> Result<&Link> {
                #[cfg(not(feature = "nats"))]
                let _ = what;
                match &self.backend {
                    Backend::Local(link) => Ok(link),
                    #[cfg(feature = "nats")]
                    Backend::Nats(_) => Err(crate::nats::unsupported(what)),
                }
            }
        }

        impl fmt::Debug for Client {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Client")
                    .field("addr", &self.addr())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use client_surface;

/// Locks, semaphores, their guards, events and barriers, and the client's methods that
/// open them. The invoking module provides `Link::run(Request)`, `Link::open`,
/// `Acquired`, and `Permits::release_on_drop` (what a dropped guard does); the client's
/// `Client` comes from `client_surface`. Each `{ .. }`
/// holds the attributes (docs) of one type, in the order of the arguments.
macro_rules! sync_surface {
    (
        [$($async:ident)?] [$($await:tt)*],
        lock: { $(#[$lock:meta])* },
        lock_guard: { $(#[$lock_guard:meta])* },
        semaphore: { $(#[$semaphore:meta])* },
        semaphore_guard: { $(#[$semaphore_guard:meta])* },
        event: { $(#[$event:meta])* },
        barrier: { $(#[$barrier:meta])* },
    ) => {
        /// What locks and semaphores share: permits held by this client.
        #[derive(Clone)]
        struct Permits {
            at: PermitsAt,
            name: ::std::sync::Arc<str>,
        }

        /// Where permits are held.
        #[derive(Clone)]
        enum PermitsAt {
            /// By this client's connection to a local broker, as object `handle`.
            Local { client: Link, handle: u32 },
            /// On NATS, by this client.
            #[cfg(feature = "nats")]
            Nats(crate::nats::RemotePermits),
        }

        impl Permits {
            $($async)? fn acquire(&self, wait: Wait) -> Result<Option<Acquired>> {
                match &self.at {
                    PermitsAt::Local { client, handle } => {
                        let acquired = client.run(ops::acquire(*handle, wait))$($await)*?;
                        Ok(acquired.map(Acquired::new))
                    }
                    #[cfg(feature = "nats")]
                    PermitsAt::Nats(permits) => {
                        let owner_died = remote!(permits.acquire(wait))?;
                        Ok(owner_died.map(Acquired::new))
                    }
                }
            }

            $($async)? fn release(&self) -> Result<()> {
                match &self.at {
                    PermitsAt::Local { client, handle } => {
                        client.run(ops::release_permit(*handle))$($await)*
                    }
                    #[cfg(feature = "nats")]
                    PermitsAt::Nats(permits) => remote!(permits.release()),
                }
            }
        }

        /// The acquiring methods of a lock (`$what` is its name in the docs).
        macro_rules! permit_methods {
            ($what:literal) => {
                #[doc = concat!("Acquires ", $what, ", waiting as long as it takes (FIFO among waiters).")]
                ///
                /// # Errors
                ///
                #[doc = concat!("[`Error::BrokerGone`]; [`Error::Closed`] if ", $what, " was removed.")]
                pub $($async)? fn acquire(&self) -> Result<Acquired> {
                    self.permits
                        .acquire(Wait::Block)$($await)*?
                        .ok_or_else(|| Error::Protocol("the broker refused a blocking acquire".into()))
                }

                #[doc = concat!("Acquires ", $what, " if it comes within `timeout`; `None` if it did not.")]
                ///
                /// # Errors
                ///
                /// As `acquire`.
                pub $($async)? fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
                    self.permits.acquire(Wait::timeout(timeout))$($await)*
                }

                #[doc = concat!("Acquires ", $what, " if it is free now; `None` if it is not.")]
                ///
                /// # Errors
                ///
                /// As `acquire`.
                pub $($async)? fn try_acquire(&self) -> Result<Option<Acquired>> {
                    self.permits.acquire(Wait::NoWait)$($await)*
                }

                #[doc = concat!("Releases ", $what, " (one that this client holds).")]
                ///
                /// # Errors
                ///
                /// [`Error::Invalid`] if this client holds none; [`Error::BrokerGone`].
                pub $($async)? fn release(&self) -> Result<()> {
                    self.permits.release()$($await)*
                }
            };
        }

        $(#[$lock])*
        #[derive(Clone)]
        pub struct Lock {
            permits: Permits,
        }

        impl Lock {
            permit_methods!("the lock");

            /// Acquires the lock and returns a guard that releases it when dropped.
            ///
            /// # Errors
            ///
            /// As [`Lock::acquire`].
            pub $($async)? fn lock(&self) -> Result<LockGuard> {
                let acquired = self.acquire()$($await)*?;
                Ok(LockGuard {
                    permits: self.permits.clone(),
                    acquired,
                })
            }

            /// The lock's name.
            pub fn name(&self) -> &str {
                &self.permits.name
            }
        }

        impl fmt::Debug for Lock {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Lock")
                    .field("name", &self.name())
                    .finish_non_exhaustive()
            }
        }

        $(#[$lock_guard])*
        pub struct LockGuard {
            permits: Permits,
            acquired: Acquired,
        }

        impl LockGuard {
            /// Whether the previous holder died holding the lock (see
            /// [`Acquired::owner_died`]).
            pub fn owner_died(&self) -> bool {
                self.acquired.owner_died()
            }
        }

        impl Drop for LockGuard {
            fn drop(&mut self) {
                self.permits.release_on_drop();
            }
        }

        impl fmt::Debug for LockGuard {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("LockGuard")
                    .field("lock", &self.permits.name)
                    .field("owner_died", &self.owner_died())
                    .finish()
            }
        }

        $(#[$semaphore])*
        #[derive(Clone)]
        pub struct Semaphore {
            permits: Permits,
            count: u64,
        }

        impl Semaphore {
            permit_methods!("a permit");

            /// Takes a permit, waiting as long as it takes, and returns a guard that gives
            /// it back when dropped.
            ///
            /// # Errors
            ///
            /// As [`Semaphore::acquire`].
            pub $($async)? fn enter(&self) -> Result<SemaphoreGuard> {
                let acquired = self.acquire()$($await)*?;
                Ok(SemaphoreGuard {
                    permits: self.permits.clone(),
                    acquired,
                })
            }

            /// Permits in all.
            pub fn permits(&self) -> u64 {
                self.count
            }

            /// The semaphore's name.
            pub fn name(&self) -> &str {
                &self.permits.name
            }
        }

        impl fmt::Debug for Semaphore {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Semaphore")
                    .field("name", &self.name())
                    .field("permits", &self.count)
                    .finish_non_exhaustive()
            }
        }

        $(#[$semaphore_guard])*
        pub struct SemaphoreGuard {
            permits: Permits,
            acquired: Acquired,
        }

        impl SemaphoreGuard {
            /// Whether the permit came back from a holder that died (see
            /// [`Acquired::owner_died`]).
            pub fn owner_died(&self) -> bool {
                self.acquired.owner_died()
            }
        }

        impl Drop for SemaphoreGuard {
            fn drop(&mut self) {
                self.permits.release_on_drop();
            }
        }

        impl fmt::Debug for SemaphoreGuard {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("SemaphoreGuard")
                    .field("semaphore", &self.permits.name)
                    .field("owner_died", &self.owner_died())
                    .finish()
            }
        }

        $(#[$event])*
        #[derive(Clone)]
        pub struct Event {
            at: EventAt,
            name: ::std::sync::Arc<str>,
        }

        /// Where an event lives.
        #[derive(Clone)]
        enum EventAt {
            /// In a local broker, as object `handle` of this client's connection.
            Local { client: Link, handle: u32 },
            /// On NATS.
            #[cfg(feature = "nats")]
            Nats(crate::nats::RemoteEvent),
        }

        impl Event {
            /// Sets the flag, waking every waiter.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn set(&self) -> Result<()> {
                match &self.at {
                    EventAt::Local { client, handle } => client.run(ops::set_event(*handle))$($await)*,
                    #[cfg(feature = "nats")]
                    EventAt::Nats(event) => remote!(event.set()),
                }
            }

            /// Clears the flag.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn clear(&self) -> Result<()> {
                match &self.at {
                    EventAt::Local { client, handle } => client.run(ops::clear_event(*handle))$($await)*,
                    #[cfg(feature = "nats")]
                    EventAt::Nats(event) => remote!(event.clear()),
                }
            }

            /// Whether the flag is set now.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_set(&self) -> Result<bool> {
                self.wait_for(Wait::NoWait)$($await)*
            }

            /// Waits until the flag is set.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`]; [`Error::Closed`] if the event was removed.
            pub $($async)? fn wait(&self) -> Result<()> {
                self.wait_for(Wait::Block)$($await)*.map(|_| ())
            }

            /// Waits at most `timeout` for the flag; returns whether it is set.
            ///
            /// # Errors
            ///
            /// As [`Event::wait`].
            pub $($async)? fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
                self.wait_for(Wait::timeout(timeout))$($await)*
            }

            /// The event's name.
            pub fn name(&self) -> &str {
                &self.name
            }

            $($async)? fn wait_for(&self, wait: Wait) -> Result<bool> {
                match &self.at {
                    EventAt::Local { client, handle } => {
                        client.run(ops::wait_event(*handle, wait))$($await)*
                    }
                    #[cfg(feature = "nats")]
                    EventAt::Nats(event) => remote!(event.wait_for(wait)),
                }
            }
        }

        impl fmt::Debug for Event {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Event")
                    .field("name", &self.name)
                    .finish_non_exhaustive()
            }
        }

        $(#[$barrier])*
        #[derive(Clone)]
        pub struct Barrier {
            client: Link,
            handle: u32,
            name: ::std::sync::Arc<str>,
            parties: u64,
        }

        impl Barrier {
            /// Waits until every party has come; returns this party's place in arrival
            /// order.
            ///
            /// # Errors
            ///
            /// [`Error::Broken`]; [`Error::BrokerGone`].
            pub $($async)? fn wait(&self) -> Result<u64> {
                self.wait_for(Wait::Block)$($await)*
            }

            /// Waits at most `timeout`; running out breaks the barrier for everyone.
            ///
            /// # Errors
            ///
            /// [`Error::Broken`] (also when this wait ran out); [`Error::BrokerGone`].
            pub $($async)? fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
                self.wait_for(Wait::timeout(timeout))$($await)*
            }

            /// Mends a broken barrier; parties waiting now get [`Error::Broken`].
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn reset(&self) -> Result<()> {
                self.client.run(ops::reset_barrier(self.handle))$($await)*
            }

            /// Parties that release the barrier.
            pub fn parties(&self) -> u64 {
                self.parties
            }

            /// The barrier's name.
            pub fn name(&self) -> &str {
                &self.name
            }

            $($async)? fn wait_for(&self, wait: Wait) -> Result<u64> {
                self.client.run(ops::wait_barrier(self.handle, wait))$($await)*
            }
        }

        impl fmt::Debug for Barrier {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Barrier")
                    .field("name", &self.name)
                    .field("parties", &self.parties)
                    .finish_non_exhaustive()
            }
        }

        impl Client {
            /// Opens the barrier `name` for `parties` parties, creating it if it does not
            /// exist.
            ///
            /// # Errors
            ///
            /// [`Error::Conflict`] when `name` exists with another count or kind;
            /// [`Error::Invalid`] for a bad name or 0 parties; [`Error::Unsupported`] on
            /// NATS.
            pub $($async)? fn barrier(&self, name: &str, parties: u64) -> Result<Barrier> {
                let client = self.local("barriers")?;
                let handle = client.open(name, Kind::Barrier { parties })$($await)*?;
                Ok(Barrier {
                    client: client.clone(),
                    handle,
                    name: name.into(),
                    parties,
                })
            }

            /// Opens the lock `name`, creating it if it does not exist.
            ///
            /// # Errors
            ///
            /// [`Error::Conflict`] when `name` is another kind of object;
            /// [`Error::Invalid`] for a bad name.
            pub $($async)? fn lock(&self, name: &str) -> Result<Lock> {
                let at = match &self.backend {
                    Backend::Local(client) => PermitsAt::Local {
                        handle: client.open(name, Kind::Lock)$($await)*?,
                        client: client.clone(),
                    },
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => PermitsAt::Nats(remote!(remote.lock(name))?),
                };
                Ok(Lock {
                    permits: Permits { at, name: name.into() },
                })
            }

            /// Opens the semaphore `name` of `permits` permits, creating it if it does not
            /// exist.
            ///
            /// # Errors
            ///
            /// [`Error::Conflict`] when `name` exists with another count or kind;
            /// [`Error::Invalid`] for a bad name or 0 permits.
            pub $($async)? fn semaphore(&self, name: &str, permits: u64) -> Result<Semaphore> {
                let at = match &self.backend {
                    Backend::Local(client) => PermitsAt::Local {
                        handle: client.open(name, Kind::Semaphore { permits })$($await)*?,
                        client: client.clone(),
                    },
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => {
                        PermitsAt::Nats(remote!(remote.semaphore(name, permits))?)
                    }
                };
                Ok(Semaphore {
                    permits: Permits { at, name: name.into() },
                    count: permits,
                })
            }

            /// Opens the event `name`, creating it (clear) if it does not exist.
            ///
            /// # Errors
            ///
            /// [`Error::Conflict`] when `name` is another kind of object;
            /// [`Error::Invalid`] for a bad name.
            pub $($async)? fn event(&self, name: &str) -> Result<Event> {
                let at = match &self.backend {
                    Backend::Local(client) => EventAt::Local {
                        handle: client.open(name, Kind::Event)$($await)*?,
                        client: client.clone(),
                    },
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => EventAt::Nats(remote!(remote.event(name))?),
                };
                Ok(Event { at, name: name.into() })
            }
        }
    };
}
pub(crate) use sync_surface;

/// A raw queue's methods that only call one operation each, and the typed queue on top of
/// it, and `Client::raw_queue_with`, which opens either. The invoking module defines
/// `RawQueue` (with `at: QueueAt`, `name`, `capacity`) and provides `Backend`,
/// `Hold::put_items`, `Hold::fetch`, `Hold::wait_fetch` and, with the `nats` feature,
/// `remote!`; `queue` holds the docs of the typed `Queue<T>`.
macro_rules! queue_surface {
    (
        [$($async:ident)?] [$($await:tt)*],
        queue: { $(#[$queue:meta])* },
    ) => {
        /// Where a queue lives.
        #[derive(Clone)]
        enum QueueAt {
            /// In a local broker: this handle's share of it in the client's connection.
            Local(Arc<Hold>),
            /// On NATS JetStream.
            #[cfg(feature = "nats")]
            Nats(crate::nats::RemoteQueue),
        }

        impl Client {
            /// Opens the queue `name` for raw bytes, creating it with `options` if it does
            /// not exist.
            ///
            /// # Errors
            ///
            /// As [`Client::queue_with`].
            pub $($async)? fn raw_queue_with(
                &self,
                name: &str,
                options: crate::QueueOptions,
            ) -> Result<RawQueue> {
                match &self.backend {
                    Backend::Local(link) => {
                        let handle = link.open(name, options.kind()?)$($await)*?;
                        let hold = link.queue_hold(handle, options.get_capacity());
                        Ok(RawQueue::local(hold, name, options.get_capacity()))
                    }
                    #[cfg(feature = "nats")]
                    Backend::Nats(remote) => {
                        let queue = remote!(remote.queue(name, &options))?;
                        Ok(RawQueue::remote(queue, name, options.get_capacity()))
                    }
                }
            }
        }

        impl RawQueue {
            pub(crate) fn local(hold: Arc<Hold>, name: &str, capacity: usize) -> Self {
                RawQueue {
                    at: QueueAt::Local(hold),
                    name: name.into(),
                    capacity,
                }
            }

            #[cfg(feature = "nats")]
            pub(crate) fn remote(queue: crate::nats::RemoteQueue, name: &str, capacity: usize) -> Self {
                RawQueue {
                    at: QueueAt::Nats(queue),
                    name: name.into(),
                    capacity,
                }
            }

            /// This handle's share of its queue in a local broker's connection;
            /// [`Error::Unsupported`] for `what` on another backend.
            pub(crate) fn hold(&self, what: &str) -> Result<&Arc<Hold>> {
                #[cfg(not(feature = "nats"))]
                let _ = what;
                match &self.at {
                    QueueAt::Local(hold) => Ok(hold),
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(_) => Err(crate::nats::unsupported(what)),
                }
            }

            /// The queue's name.
            pub fn name(&self) -> &str {
                &self.name
            }

            /// The capacity it was opened with; `None` for unbounded.
            pub fn capacity(&self) -> Option<usize> {
                (self.capacity != 0).then_some(self.capacity)
            }

            /// How many items a `get` may fetch in one round trip (default
            /// [`DEFAULT_PREFETCH`](crate::DEFAULT_PREFETCH)). Fetched items wait in this
            /// client until `get` hands them out; until then they count in
            /// [`len`](RawQueue::len), other getters cannot have them, and they go back to
            /// the head of the queue if the connection closes or the last handle on this
            /// queue is dropped. 1 is strict fair dispatch: an item leaves the queue only
            /// when a `get` asks for it.
            ///
            /// The setting is shared by every handle on this queue from the same client.
            /// On NATS, a get pulls one item at a time and this setting is not used.
            pub fn set_prefetch(&self, items: usize) {
                match &self.at {
                    QueueAt::Local(hold) => {
                        hold.client.with_core(|core| core.set_prefetch(hold.handle, items));
                    }
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(_) => {}
                }
            }

            /// The current prefetch window (see [`set_prefetch`](RawQueue::set_prefetch)).
            pub fn prefetch(&self) -> usize {
                match &self.at {
                    QueueAt::Local(hold) => hold.client.with_core(|core| core.prefetch(hold.handle)),
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(_) => 1,
                }
            }

            /// Leases every delivery this client's handles on the queue hand out from now
            /// on for `lease` (see [`Delivery::lease`](crate::Delivery::lease)); `None`
            /// for none (the default). For one delivery only, lease it after taking it.
            /// Fetched items wait in the client with their lease already running, so a
            /// leased queue is best read with a small prefetch. On NATS, a delivery is kept
            /// while its worker lives instead, and this setting is not used.
            pub fn set_lease(&self, lease: Option<Duration>) {
                match &self.at {
                    QueueAt::Local(hold) => {
                        hold.client.with_core(|core| core.set_lease(hold.handle, lease));
                    }
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(_) => {}
                }
            }

            /// Puts an item, waiting while the queue is full. When it returns, the item is
            /// on a slot the broker reserved for it: a process may exit right after `put`
            /// without losing it (with the tokio client, once its `Client::flush` returns).
            ///
            /// # Errors
            ///
            /// [`Error::Closed`] if the queue is closed; [`Error::TooLarge`] if the item
            /// does not fit in a frame (nothing is sent); [`Error::BrokerGone`].
            pub $($async)? fn put(&self, item: &[u8]) -> Result<()> {
                self.put_wait(item, Wait::Block)$($await)*
            }

            /// Puts an item, waiting at most `timeout` for room.
            ///
            /// # Errors
            ///
            /// [`Error::Full`] if there was no room in time; otherwise as
            /// [`RawQueue::put`].
            pub $($async)? fn put_timeout(&self, item: &[u8], timeout: Duration) -> Result<()> {
                self.put_wait(item, Wait::timeout(timeout))$($await)*
            }

            /// Puts an item if there is room now.
            ///
            /// # Errors
            ///
            /// [`Error::Full`] if there is none; otherwise as [`RawQueue::put`].
            pub $($async)? fn put_nowait(&self, item: &[u8]) -> Result<()> {
                self.put_wait(item, Wait::NoWait)$($await)*
            }

            $($async)? fn put_wait(&self, item: &[u8], wait: Wait) -> Result<()> {
                check_item(item.len(), self.max_frame_len())?;
                self.put_items(&[item], wait)$($await)*.map(|_| ())
            }

            fn max_frame_len(&self) -> usize {
                match &self.at {
                    QueueAt::Local(hold) => hold.client.max_frame_len(),
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => queue.max_frame_len(),
                }
            }

            /// Puts the first of `items` at least; returns how many were put.
            $($async)? fn put_items(&self, items: &[&[u8]], wait: Wait) -> Result<usize> {
                match &self.at {
                    QueueAt::Local(hold) => hold.put_items(items, wait)$($await)*,
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => remote!(queue.put_items(items, wait)),
                }
            }

            /// Up to `max` items (at least one), acknowledged on handoff if `ack`.
            $($async)? fn fetch(&self, max: usize, wait: Wait, ack: bool) -> Result<Vec<Delivered>> {
                match &self.at {
                    QueueAt::Local(hold) => hold.fetch(max, wait, ack)$($await)*,
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => remote!(queue.fetch(max, wait, ack)),
                }
            }

            /// Puts all `items` in order, waiting for room as needed, as many per write as
            /// there are slots reserved for this client and one round trip for room
            /// otherwise. Other producers' items may come between them when the queue fills
            /// up.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::put`]. On an error, a prefix of the items is in the queue.
            pub $($async)? fn put_many<I>(&self, items: I) -> Result<()>
            where
                I: IntoIterator,
                I::Item: AsRef<[u8]>,
            {
                let items: Vec<I::Item> = items.into_iter().collect();
                let items: Vec<&[u8]> = items.iter().map(AsRef::as_ref).collect();
                for batch in frames_of(&items, self.max_frame_len())? {
                    let mut rest = &batch[..];
                    while !rest.is_empty() {
                        let put = self.put_items(rest, Wait::Block)$($await)*?;
                        rest = &rest[put..];
                    }
                }
                Ok(())
            }

            /// Takes the item at the head, waiting while the queue is empty.
            ///
            /// # Errors
            ///
            /// [`Error::Closed`] once the queue is closed and every item has been taken;
            /// [`Error::BrokerGone`].
            pub $($async)? fn get(&self) -> Result<Bytes> {
                Ok(self.fetch(1, Wait::Block, true)$($await)*?.swap_remove(0).item)
            }

            /// Takes the item at the head, waiting at most `timeout` for one. The broker
            /// keeps the time: an item that arrives as the time runs out is either returned
            /// or left in the queue, never lost.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as [`RawQueue::get`].
            pub $($async)? fn get_timeout(&self, timeout: Duration) -> Result<Bytes> {
                Ok(self.fetch(1, Wait::timeout(timeout), true)$($await)*?.swap_remove(0).item)
            }

            /// Takes the item at the head if there is one now.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if there is none; otherwise as [`RawQueue::get`].
            pub $($async)? fn get_nowait(&self) -> Result<Bytes> {
                Ok(self.fetch(1, Wait::NoWait, true)$($await)*?.swap_remove(0).item)
            }

            /// Takes between 1 and `max` items from the head in one round trip, waiting
            /// while the queue is empty. Returns what is there, up to `max` (fewer if they
            /// would not fit in one frame).
            ///
            /// # Errors
            ///
            /// [`Error::Invalid`] if `max` is 0; otherwise as [`RawQueue::get`].
            pub $($async)? fn get_many(&self, max: usize) -> Result<Vec<Bytes>> {
                self.get_many_wait(max, Wait::Block)$($await)*
            }

            /// Like [`get_many`](RawQueue::get_many), waiting at most `timeout` for the
            /// first item.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as
            /// [`RawQueue::get_many`].
            pub $($async)? fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<Bytes>> {
                self.get_many_wait(max, Wait::timeout(timeout))$($await)*
            }

            $($async)? fn get_many_wait(&self, max: usize, wait: Wait) -> Result<Vec<Bytes>> {
                if max == 0 {
                    return Err(Error::Invalid("get_many needs max >= 1".into()));
                }
                let delivered = self.fetch(max, wait, true)$($await)*?;
                Ok(delivered.into_iter().map(|d| d.item).collect())
            }

            /// Takes the item at the head as a [`Delivery`](crate::Delivery), waiting while
            /// the queue is empty: it stays on this client's account (counted in
            /// [`len`](RawQueue::len) and towards the capacity) until it is acknowledged,
            /// and goes back to the head of the queue if it is rejected or dropped, or if
            /// this client dies first.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::get`].
            pub $($async)? fn get_delivery(&self) -> Result<crate::Delivery> {
                Ok(self.deliveries(1, Wait::Block)$($await)*?.swap_remove(0))
            }

            /// Like [`get_delivery`](RawQueue::get_delivery), waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as [`RawQueue::get`].
            pub $($async)? fn get_delivery_timeout(&self, timeout: Duration) -> Result<crate::Delivery> {
                Ok(self.deliveries(1, Wait::timeout(timeout))$($await)*?.swap_remove(0))
            }

            /// Like [`get_delivery`](RawQueue::get_delivery), if an item is there now.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if there is none; otherwise as [`RawQueue::get`].
            pub $($async)? fn get_delivery_nowait(&self) -> Result<crate::Delivery> {
                Ok(self.deliveries(1, Wait::NoWait)$($await)*?.swap_remove(0))
            }

            /// Takes between 1 and `max` items as deliveries (see
            /// [`get_delivery`](RawQueue::get_delivery)), waiting while the queue is empty.
            ///
            /// # Errors
            ///
            /// [`Error::Invalid`] if `max` is 0; otherwise as [`RawQueue::get`].
            pub $($async)? fn get_deliveries(&self, max: usize) -> Result<Vec<crate::Delivery>> {
                self.deliveries(max, Wait::Block)$($await)*
            }

            /// Like [`get_deliveries`](RawQueue::get_deliveries), waiting at most `timeout`
            /// for the first item.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as
            /// [`RawQueue::get_deliveries`].
            pub $($async)? fn get_deliveries_timeout(
                &self,
                max: usize,
                timeout: Duration,
            ) -> Result<Vec<crate::Delivery>> {
                self.deliveries(max, Wait::timeout(timeout))$($await)*
            }

            $($async)? fn deliveries(&self, max: usize, wait: Wait) -> Result<Vec<crate::Delivery>> {
                if max == 0 {
                    return Err(Error::Invalid("get_deliveries needs max >= 1".into()));
                }
                let delivered = self.fetch(max, wait, false)$($await)*?;
                let (owner, lease): (Arc<dyn crate::delivery::Settle>, _) = match &self.at {
                    QueueAt::Local(hold) => {
                        (hold.clone(), hold.client.with_core(|core| core.lease(hold.handle)))
                    }
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => (queue.settler(), None),
                };
                let mut deliveries: Vec<crate::Delivery> = delivered
                    .into_iter()
                    .map(|d| crate::Delivery::new(d.item, d.tag, d.earlier, Arc::clone(&owner)))
                    .collect();
                if let Some(lease) = lease {
                    for delivery in &mut deliveries {
                        delivery.lease(lease)?;
                    }
                }
                Ok(deliveries)
            }

            /// Waits up to `timeout` until a `get` would return at once: an item is fetched
            /// (it stays for the next `get`) or the queue is closed and drained.
            pub(crate) $($async)? fn poll(&self, timeout: Duration) -> Result<bool> {
                let hold = self.hold("waiting on several queues")?;
                let (client, handle) = (&hold.client, hold.handle);
                let wait = Wait::timeout(timeout);
                loop {
                    if client.with_core(|core| core.has_items(handle)) {
                        return Ok(true);
                    }
                    let fetch = client.with_core(|core| {
                        let window = core.window(handle);
                        core.fetch(handle, window, wait)
                    })?;
                    match hold.wait_fetch(fetch)$($await)* {
                        Ok(()) => {}
                        Err(Error::Empty) => {
                            return Ok(client.with_core(|core| core.has_items(handle)))
                        }
                        Err(Error::Closed) => return Ok(true),
                        Err(err) => return Err(err),
                    }
                }
            }

            /// Marks one item as processed, as `JoinableQueue.task_done`: once every item
            /// put has been marked, [`join`](RawQueue::join) returns. Any client may mark
            /// items of the queue.
            ///
            /// # Errors
            ///
            /// [`Error::Invalid`] when called more times than items were put;
            /// [`Error::BrokerGone`].
            pub $($async)? fn task_done(&self) -> Result<()> {
                match &self.at {
                    QueueAt::Local(hold) => hold.client.run(ops::task_done(hold.handle))$($await)*,
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => remote!(queue.task_done()),
                }
            }

            /// Waits until every item put on the queue has been marked done
            /// ([`task_done`](RawQueue::task_done)), as `JoinableQueue.join`.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`]; [`Error::Closed`] if the queue is removed.
            pub $($async)? fn join(&self) -> Result<()> {
                self.join_for(Wait::Block)$($await)*.map(|_| ())
            }

            /// Waits at most `timeout` for [`join`](RawQueue::join); returns whether every
            /// item was marked done.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::join`].
            pub $($async)? fn join_timeout(&self, timeout: Duration) -> Result<bool> {
                self.join_for(Wait::timeout(timeout))$($await)*
            }

            $($async)? fn join_for(&self, wait: Wait) -> Result<bool> {
                match &self.at {
                    QueueAt::Local(hold) => hold.client.run(ops::join(hold.handle, wait))$($await)*,
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => remote!(queue.join_for(wait)),
                }
            }

            /// Items put and not yet taken: those waiting in the queue plus those delivered
            /// to a getter (including items prefetched by a client) that has not yet handed
            /// them to its application. Exact at the broker at the moment it answers.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn len(&self) -> Result<usize> {
                Ok(usize::try_from(self.info()$($await)*?.len).unwrap_or(usize::MAX))
            }

            /// Whether [`len`](RawQueue::len) is 0.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_empty(&self) -> Result<bool> {
                Ok(self.info()$($await)*?.len == 0)
            }

            /// Whether a put that needs room now would fail: the items and the slots
            /// reserved for producers' credits fill the capacity, or the queue's or the
            /// broker's byte budget is used up, or putters are already waiting. A queue
            /// short of its byte budget may still refuse an item larger than what is left
            /// of it.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_full(&self) -> Result<bool> {
                Ok(self.info()$($await)*?.full)
            }

            /// Whether the queue has been closed.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_closed(&self) -> Result<bool> {
                Ok(self.info()$($await)*?.closed)
            }

            $($async)? fn info(&self) -> Result<QueueInfo> {
                match &self.at {
                    QueueAt::Local(hold) => hold.client.run(ops::info(hold.handle))$($await)*,
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => remote!(queue.info()),
                }
            }

            /// Closes the queue for everyone: later puts fail with [`Error::Closed`], parked
            /// putters wake with it, and getters take what is left, then get `Closed`. Puts
            /// that other clients made on slots reserved before the close still land.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn close(&self) -> Result<()> {
                match &self.at {
                    QueueAt::Local(hold) => {
                        hold.client.with_core(|core| core.release_credits(hold.handle));
                        hold.client.run(ops::close(hold.handle))$($await)*
                    }
                    #[cfg(feature = "nats")]
                    QueueAt::Nats(queue) => remote!(queue.close()),
                }
            }
        }

        impl fmt::Debug for RawQueue {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("RawQueue")
                    .field("name", &self.name)
                    .field("capacity", &self.capacity())
                    .finish_non_exhaustive()
            }
        }

        $(#[$queue])*
        pub struct Queue<T> {
            raw: RawQueue,
            // `fn() -> T`: the handle holds no `T`, so it is `Send + Sync` for any `T`.
            _items: PhantomData<fn() -> T>,
        }

        impl<T: Serialize + DeserializeOwned> Queue<T> {
            pub(crate) fn from_raw(raw: RawQueue) -> Self {
                Queue {
                    raw,
                    _items: PhantomData,
                }
            }

            /// The raw handle on the same queue.
            pub fn raw(&self) -> &RawQueue {
                &self.raw
            }

            /// Decodes an item taken from this queue through its raw handle (a select's).
            ///
            /// # Errors
            ///
            /// [`Error::Undecodable`] when the item is not a `T`; it carries the bytes.
            pub fn decode(&self, item: &Bytes) -> Result<T> {
                decode(item)
            }

            /// The queue's name.
            pub fn name(&self) -> &str {
                self.raw.name()
            }

            /// The capacity it was opened with; `None` for unbounded.
            pub fn capacity(&self) -> Option<usize> {
                self.raw.capacity()
            }

            /// Sets the prefetch window (see [`RawQueue::set_prefetch`]).
            pub fn set_prefetch(&self, items: usize) {
                self.raw.set_prefetch(items);
            }

            /// Leases the deliveries handed out from now on (see [`RawQueue::set_lease`]).
            pub fn set_lease(&self, lease: Option<Duration>) {
                self.raw.set_lease(lease);
            }

            /// The prefetch window (see [`RawQueue::set_prefetch`]).
            pub fn prefetch(&self) -> usize {
                self.raw.prefetch()
            }

            /// Puts an item, waiting while the queue is full (see [`RawQueue::put`]).
            ///
            /// # Errors
            ///
            /// [`Error::Closed`], [`Error::TooLarge`], [`Error::Codec`],
            /// [`Error::BrokerGone`].
            pub $($async)? fn put(&self, item: &T) -> Result<()> {
                self.raw.put(&encode(item)?)$($await)*
            }

            /// Puts an item, waiting at most `timeout` for room.
            ///
            /// # Errors
            ///
            /// [`Error::Full`] if there was no room in time; otherwise as [`Queue::put`].
            pub $($async)? fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
                self.raw.put_timeout(&encode(item)?, timeout)$($await)*
            }

            /// Puts an item if there is room now.
            ///
            /// # Errors
            ///
            /// [`Error::Full`] if there is none; otherwise as [`Queue::put`].
            pub $($async)? fn put_nowait(&self, item: &T) -> Result<()> {
                self.raw.put_nowait(&encode(item)?)$($await)*
            }

            /// Puts all `items` in order, in as few writes as credits and the frame limit
            /// allow.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::put_many`].
            pub $($async)? fn put_many<'a, I>(&self, items: I) -> Result<()>
            where
                I: IntoIterator<Item = &'a T>,
                T: 'a,
            {
                let encoded = items.into_iter().map(encode).collect::<Result<Vec<_>>>()?;
                self.raw.put_many(encoded)$($await)*
            }

            /// Takes the item at the head, waiting while the queue is empty.
            ///
            /// # Errors
            ///
            /// [`Error::Closed`] once the queue is closed and drained; [`Error::Codec`] if
            /// the item is not a `T` (it has been taken all the same);
            /// [`Error::BrokerGone`].
            pub $($async)? fn get(&self) -> Result<T> {
                decode(&self.raw.get()$($await)*?)
            }

            /// Takes the item at the head, waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as [`Queue::get`].
            pub $($async)? fn get_timeout(&self, timeout: Duration) -> Result<T> {
                decode(&self.raw.get_timeout(timeout)$($await)*?)
            }

            /// Takes the item at the head if there is one now.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if there is none; otherwise as [`Queue::get`].
            pub $($async)? fn get_nowait(&self) -> Result<T> {
                decode(&self.raw.get_nowait()$($await)*?)
            }

            /// Takes between 1 and `max` items in one round trip, waiting while the queue
            /// is empty.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::get_many`] and [`Queue::get`].
            pub $($async)? fn get_many(&self, max: usize) -> Result<Vec<T>> {
                self.raw.get_many(max)$($await)*?.iter().map(|item| decode(item)).collect()
            }

            /// Like [`get_many`](Queue::get_many), waiting at most `timeout` for the first
            /// item.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as [`Queue::get_many`].
            pub $($async)? fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>> {
                self.raw
                    .get_many_timeout(max, timeout)$($await)*?
                    .iter()
                    .map(|item| decode(item))
                    .collect()
            }

            /// Takes the item at the head as a [`Delivery`](crate::Delivery) (see
            /// [`RawQueue::get_delivery`]).
            ///
            /// # Errors
            ///
            /// As [`RawQueue::get`]; [`Error::Undecodable`] if the item is not a `T`: it
            /// went back to the head of the queue.
            pub $($async)? fn get_delivery(&self) -> Result<crate::Delivery<T>> {
                self.raw.get_delivery()$($await)*?.decode()
            }

            /// Like [`get_delivery`](Queue::get_delivery), waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as
            /// [`Queue::get_delivery`].
            pub $($async)? fn get_delivery_timeout(&self, timeout: Duration) -> Result<crate::Delivery<T>> {
                self.raw.get_delivery_timeout(timeout)$($await)*?.decode()
            }

            /// Like [`get_delivery`](Queue::get_delivery), if an item is there now.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if there is none; otherwise as [`Queue::get_delivery`].
            pub $($async)? fn get_delivery_nowait(&self) -> Result<crate::Delivery<T>> {
                self.raw.get_delivery_nowait()$($await)*?.decode()
            }

            /// Takes between 1 and `max` items as deliveries, waiting while the queue is
            /// empty.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::get_deliveries`]; [`Error::Undecodable`] if one is not a `T`:
            /// then all of them went back to the queue.
            pub $($async)? fn get_deliveries(&self, max: usize) -> Result<Vec<crate::Delivery<T>>> {
                self.raw
                    .get_deliveries(max)$($await)*?
                    .into_iter()
                    .map(crate::Delivery::decode)
                    .collect()
            }

            /// Like [`get_deliveries`](Queue::get_deliveries), waiting at most `timeout` for
            /// the first item.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`] if no item came in time; otherwise as
            /// [`Queue::get_deliveries`].
            pub $($async)? fn get_deliveries_timeout(
                &self,
                max: usize,
                timeout: Duration,
            ) -> Result<Vec<crate::Delivery<T>>> {
                self.raw
                    .get_deliveries_timeout(max, timeout)$($await)*?
                    .into_iter()
                    .map(crate::Delivery::decode)
                    .collect()
            }

            /// Marks one item as processed (see [`RawQueue::task_done`]).
            ///
            /// # Errors
            ///
            /// As [`RawQueue::task_done`].
            pub $($async)? fn task_done(&self) -> Result<()> {
                self.raw.task_done()$($await)*
            }

            /// Waits until every item put has been marked done (see [`RawQueue::join`]).
            ///
            /// # Errors
            ///
            /// As [`RawQueue::join`].
            pub $($async)? fn join(&self) -> Result<()> {
                self.raw.join()$($await)*
            }

            /// Waits at most `timeout` for [`join`](Queue::join); returns whether it
            /// completed.
            ///
            /// # Errors
            ///
            /// As [`RawQueue::join`].
            pub $($async)? fn join_timeout(&self, timeout: Duration) -> Result<bool> {
                self.raw.join_timeout(timeout)$($await)*
            }

            /// Items put and not yet taken (see [`RawQueue::len`]).
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn len(&self) -> Result<usize> {
                self.raw.len()$($await)*
            }

            /// Whether [`len`](Queue::len) is 0.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_empty(&self) -> Result<bool> {
                self.raw.is_empty()$($await)*
            }

            /// Whether a `put_nowait` would fail now (see [`RawQueue::is_full`]).
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_full(&self) -> Result<bool> {
                self.raw.is_full()$($await)*
            }

            /// Whether the queue has been closed.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn is_closed(&self) -> Result<bool> {
                self.raw.is_closed()$($await)*
            }

            /// Closes the queue (see [`RawQueue::close`]).
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`].
            pub $($async)? fn close(&self) -> Result<()> {
                self.raw.close()$($await)*
            }
        }

        impl<T> Clone for Queue<T> {
            fn clone(&self) -> Self {
                Queue {
                    raw: self.raw.clone(),
                    _items: PhantomData,
                }
            }
        }

        impl<T> fmt::Debug for Queue<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Queue")
                    .field("name", &self.raw.name)
                    .field("capacity", &self.raw.capacity())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use queue_surface;

/// A pipe end's methods over the queue that carries it, raw and typed. The invoking module
/// provides `RawQueue` with its methods, `End`, `PipeOptions`; `raw` and `typed` hold the
/// docs of `RawPipeEnd` and `PipeEnd<T>`.
macro_rules! pipe_surface {
    (
        [$($async:ident)?] [$($await:tt)*],
        raw: { $(#[$raw:meta])* },
        typed: { $(#[$typed:meta])* },
    ) => {
        $(#[$raw])*
        #[derive(Clone)]
        pub struct RawPipeEnd {
            queue: RawQueue,
            end: End,
            options: PipeOptions,
        }

        impl RawPipeEnd {
            pub(crate) fn new(queue: RawQueue, end: End, options: PipeOptions) -> Self {
                RawPipeEnd {
                    queue,
                    end,
                    options,
                }
            }

            /// The pipe's name.
            pub fn name(&self) -> &str {
                self.queue.name()
            }

            /// Which end this is.
            pub fn end(&self) -> End {
                self.end
            }

            /// How the pipe was created.
            pub fn options(&self) -> PipeOptions {
                self.options
            }

            /// Sends an item to the other end, waiting while its buffer is full.
            ///
            /// # Errors
            ///
            /// [`Error::Closed`](crate::Error::Closed) once either end is closed;
            /// [`Error::Invalid`](crate::Error::Invalid) on end 0 of a simplex pipe;
            /// [`Error::TooLarge`](crate::Error::TooLarge); [`Error::BrokerGone`](crate::Error::BrokerGone).
            pub $($async)? fn send(&self, item: &[u8]) -> Result<()> {
                self.queue.put(item)$($await)*
            }

            /// Sends, waiting at most `timeout` for room.
            ///
            /// # Errors
            ///
            /// [`Error::Full`](crate::Error::Full) if there was no room in time; otherwise as
            /// [`RawPipeEnd::send`].
            pub $($async)? fn send_timeout(&self, item: &[u8], timeout: Duration) -> Result<()> {
                self.queue.put_timeout(item, timeout)$($await)*
            }

            /// Sends if there is room now.
            ///
            /// # Errors
            ///
            /// [`Error::Full`](crate::Error::Full) if there is none; otherwise as
            /// [`RawPipeEnd::send`].
            pub $($async)? fn send_nowait(&self, item: &[u8]) -> Result<()> {
                self.queue.put_nowait(item)$($await)*
            }

            /// Receives the next item from the other end, waiting for one.
            ///
            /// # Errors
            ///
            /// [`Error::Closed`](crate::Error::Closed) once the other end is closed and everything
            /// it sent has been received; [`Error::Invalid`](crate::Error::Invalid) on end 1 of a
            /// simplex pipe; [`Error::BrokerGone`](crate::Error::BrokerGone).
            pub $($async)? fn recv(&self) -> Result<Bytes> {
                self.queue.get()$($await)*
            }

            /// Receives, waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`](crate::Error::Empty) if nothing came in time; otherwise as
            /// [`RawPipeEnd::recv`].
            pub $($async)? fn recv_timeout(&self, timeout: Duration) -> Result<Bytes> {
                self.queue.get_timeout(timeout)$($await)*
            }

            /// Receives if an item is there now.
            ///
            /// # Errors
            ///
            /// [`Error::Empty`](crate::Error::Empty) if none is; otherwise as [`RawPipeEnd::recv`].
            pub $($async)? fn recv_nowait(&self) -> Result<Bytes> {
                self.queue.get_nowait()$($await)*
            }

            /// Whether [`recv`](RawPipeEnd::recv) would return at once (with an item, or with
            /// `Closed`), waiting up to `timeout` for that to become true. Items that arrive are
            /// kept for the next `recv`.
            ///
            /// # Errors
            ///
            /// [`Error::Invalid`](crate::Error::Invalid) on end 1 of a simplex pipe;
            /// [`Error::BrokerGone`](crate::Error::BrokerGone).
            pub $($async)? fn poll(&self, timeout: Duration) -> Result<bool> {
                self.queue.poll(timeout)$($await)*
            }

            /// Closes this end for good: the other end receives what was already sent and then
            /// `Closed`, and nothing more can be sent to this end.
            ///
            /// # Errors
            ///
            /// [`Error::BrokerGone`](crate::Error::BrokerGone).
            pub $($async)? fn close(&self) -> Result<()> {
                self.queue.close()$($await)*
            }
        }

        impl fmt::Debug for RawPipeEnd {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("RawPipeEnd")
                    .field("name", &self.name())
                    .field("end", &self.end)
                    .finish_non_exhaustive()
            }
        }

        $(#[$typed])*
        pub struct PipeEnd<T> {
            raw: RawPipeEnd,
            _items: PhantomData<fn() -> T>,
        }

        impl<T: Serialize + DeserializeOwned> PipeEnd<T> {
            pub(crate) fn from_raw(raw: RawPipeEnd) -> Self {
                PipeEnd {
                    raw,
                    _items: PhantomData,
                }
            }

            /// The raw end.
            pub fn raw(&self) -> &RawPipeEnd {
                &self.raw
            }

            /// The pipe's name.
            pub fn name(&self) -> &str {
                self.raw.name()
            }

            /// Which end this is.
            pub fn end(&self) -> End {
                self.raw.end()
            }

            /// Sends an item (see [`RawPipeEnd::send`]).
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::send`], and [`Error::Codec`](crate::Error::Codec).
            pub $($async)? fn send(&self, item: &T) -> Result<()> {
                self.raw.send(&encode(item)?)$($await)*
            }

            /// Sends, waiting at most `timeout` for room.
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::send_timeout`].
            pub $($async)? fn send_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
                self.raw.send_timeout(&encode(item)?, timeout)$($await)*
            }

            /// Sends if there is room now.
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::send_nowait`].
            pub $($async)? fn send_nowait(&self, item: &T) -> Result<()> {
                self.raw.send_nowait(&encode(item)?)$($await)*
            }

            /// Receives the next item (see [`RawPipeEnd::recv`]).
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::recv`], and [`Error::Codec`](crate::Error::Codec).
            pub $($async)? fn recv(&self) -> Result<T> {
                decode(&self.raw.recv()$($await)*?)
            }

            /// Receives, waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::recv_timeout`].
            pub $($async)? fn recv_timeout(&self, timeout: Duration) -> Result<T> {
                decode(&self.raw.recv_timeout(timeout)$($await)*?)
            }

            /// Receives if an item is there now.
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::recv_nowait`].
            pub $($async)? fn recv_nowait(&self) -> Result<T> {
                decode(&self.raw.recv_nowait()$($await)*?)
            }

            /// Whether `recv` would return at once (see [`RawPipeEnd::poll`]).
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::poll`].
            pub $($async)? fn poll(&self, timeout: Duration) -> Result<bool> {
                self.raw.poll(timeout)$($await)*
            }

            /// Closes this end (see [`RawPipeEnd::close`]).
            ///
            /// # Errors
            ///
            /// As [`RawPipeEnd::close`].
            pub $($async)? fn close(&self) -> Result<()> {
                self.raw.close()$($await)*
            }
        }

        impl<T> Clone for PipeEnd<T> {
            fn clone(&self) -> Self {
                PipeEnd {
                    raw: self.raw.clone(),
                    _items: PhantomData,
                }
            }
        }

        impl<T> fmt::Debug for PipeEnd<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("PipeEnd")
                    .field("name", &self.raw.name())
                    .field("end", &self.raw.end)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use pipe_surface;
