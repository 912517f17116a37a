//! One suite of behaviour tests, run against both backends of `ipcq::Client`: a local
//! broker (embedded, on a temporary socket) and NATS JetStream (a real `nats-server`,
//! started per test on a loopback port with a temporary store, killed after).
//!
//! Each test is written once as a function of the address. `conformance!` runs it on both
//! backends; `local_only!` runs it on the local broker and, on NATS, checks that the
//! operation fails with `Error::Unsupported` (the test's name says so:
//! `nats::<name>_is_unsupported`). Where the two differ in a documented way (what comes
//! first after a rejection), the test takes the backend as an argument and says how.
//! docs/scale-out.md has the table.

#[path = "../nats/tests/common/mod.rs"]
mod nats_server;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipcq::{Client, End, Error, PipeOptions, QueueOptions, Select};

/// The backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    Nats,
}

/// What keeps a backend running for one test.
enum Running {
    /// The broker, and the directory of its socket (removed after it).
    Local(ipcq::broker::Broker, #[allow(dead_code)] tempfile::TempDir),
    Nats(nats_server::NatsServer),
}

impl Running {
    fn start(backend: Backend) -> Running {
        match backend {
            Backend::Local => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let addr = addr_in(&dir);
                let broker = ipcq::broker::Broker::start(ipcq::broker::Config::new().addr(addr))
                    .expect("an embedded broker");
                Running::Local(broker, dir)
            }
            Backend::Nats => Running::Nats(nats_server::NatsServer::start()),
        }
    }

    fn addr(&self) -> String {
        match self {
            Running::Local(broker, _) => broker.addr().to_owned(),
            Running::Nats(server) => server.addr.clone(),
        }
    }
}

/// A socket path in `dir` (Unix), or a machine-unique pipe name (Windows).
fn addr_in(dir: &tempfile::TempDir) -> String {
    if cfg!(windows) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("ipcq-conformance-{}-{nanos}", std::process::id())
    } else {
        dir.path().join("ipcq.sock").to_string_lossy().into_owned()
    }
}

fn connect(addr: &str) -> Client {
    Client::connect(addr).expect("connect")
}

/// A test run on both backends.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod local {
            $(
                #[test]
                fn $test() {
                    let running = super::Running::start(super::Backend::Local);
                    super::$test(&running.addr(), super::Backend::Local);
                }
            )*
        }
        mod nats {
            $(
                #[test]
                fn $test() {
                    let running = super::Running::start(super::Backend::Nats);
                    super::$test(&running.addr(), super::Backend::Nats);
                }
            )*
        }
    };
}

/// A test of what only the local broker does; on NATS, the operation is refused.
macro_rules! local_only {
    ($($test:ident => $nats_test:ident),* $(,)?) => {
        mod local_only {
            $(
                #[test]
                fn $test() {
                    let running = super::Running::start(super::Backend::Local);
                    super::$test(&running.addr()).expect("works on a local broker");
                }
            )*
        }
        mod nats_unsupported {
            $(
                #[test]
                fn $nats_test() {
                    let running = super::Running::start(super::Backend::Nats);
                    match super::$test(&running.addr()) {
                        Err(ipcq::Error::Unsupported(_)) => {}
                        other => panic!("expected Unsupported on NATS, got {other:?}"),
                    }
                }
            )*
        }
    };
}

conformance!(
    fifo_order_and_exact_len,
    the_bound_refuses_and_frees,
    an_empty_queue_times_out,
    a_waiting_put_gets_room,
    a_waiting_get_gets_an_item,
    typed_items_and_many_at_once,
    close_drains_then_fails,
    an_acknowledged_delivery_leaves,
    a_delivery_counts_until_acknowledged,
    a_rejected_or_dropped_delivery_comes_back,
    dead_letters_by_request_and_by_limit,
    other_options_conflict,
    lookup_stats_and_remove,
    join_waits_for_task_done,
    acknowledgements_count_as_task_done,
    a_lock_excludes_other_clients,
    a_dropped_guard_releases,
    a_semaphore_admits_its_permits,
    events_wake_waiters_of_other_clients,
    tokio_client_does_the_same,
);

local_only!(
    pipe_round_trip => pipe_round_trip_is_unsupported,
    barrier_of_two => barrier_of_two_is_unsupported,
    select_over_two_queues => select_over_two_queues_is_unsupported,
    leased_delivery => leased_delivery_is_unsupported,
    auto_delete_queue => auto_delete_queue_is_unsupported,
);

fn fifo_order_and_exact_len(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("order", 100).unwrap();
    assert!(queue.is_empty().unwrap());
    for i in 0..20 {
        queue.put(&i).unwrap();
    }
    assert_eq!(queue.len().unwrap(), 20);
    let got: Vec<u32> = (0..20).map(|_| queue.get().unwrap()).collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(queue.len().unwrap(), 0);
    assert!(queue.is_empty().unwrap());
}

fn the_bound_refuses_and_frees(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("bound", 3).unwrap();
    assert_eq!(queue.capacity(), Some(3));
    for i in 0..3 {
        queue.put_nowait(&i).unwrap();
    }
    assert!(queue.is_full().unwrap());
    assert!(matches!(queue.put_nowait(&9), Err(Error::Full)));
    let start = Instant::now();
    assert!(matches!(
        queue.put_timeout(&9, Duration::from_millis(200)),
        Err(Error::Full)
    ));
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(queue.len().unwrap(), 3);
    assert_eq!(queue.get().unwrap(), 0);
    queue.put_nowait(&3).unwrap();
    let rest: Vec<u32> = (0..3).map(|_| queue.get().unwrap()).collect();
    assert_eq!(rest, [1, 2, 3]);
}

fn an_empty_queue_times_out(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("empty", 0).unwrap();
    assert!(matches!(queue.get_nowait(), Err(Error::Empty)));
    let start = Instant::now();
    assert!(matches!(
        queue.get_timeout(Duration::from_millis(300)),
        Err(Error::Empty)
    ));
    assert!(start.elapsed() >= Duration::from_millis(300));
    queue.put(&1).unwrap();
    assert_eq!(queue.get_timeout(Duration::from_secs(5)).unwrap(), 1);
}

fn a_waiting_put_gets_room(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("room", 1).unwrap();
    queue.put(&1).unwrap();
    let (done, put) = mpsc::channel();
    let putter = {
        let queue = client.queue::<u32>("room", 1).unwrap();
        std::thread::spawn(move || done.send(queue.put(&2)).unwrap())
    };
    // The put waits for room while the queue is full.
    assert!(put.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(queue.get().unwrap(), 1);
    put.recv_timeout(Duration::from_secs(10))
        .expect("the put finished once there was room")
        .unwrap();
    putter.join().unwrap();
    assert_eq!(queue.get().unwrap(), 2);
}

fn a_waiting_get_gets_an_item(addr: &str, _: Backend) {
    let client = connect(addr);
    let other = connect(addr);
    let queue = client.queue::<String>("wait", 10).unwrap();
    let (done, got) = mpsc::channel();
    let getter = std::thread::spawn(move || done.send(queue.get()).unwrap());
    assert!(got.recv_timeout(Duration::from_millis(200)).is_err());
    other
        .queue::<String>("wait", 10)
        .unwrap()
        .put(&"here".to_owned())
        .unwrap();
    let item = got
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiting get was answered");
    assert_eq!(item.unwrap(), "here");
    getter.join().unwrap();
}

fn typed_items_and_many_at_once(addr: &str, _: Backend) {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u64,
        name: String,
        tags: Vec<String>,
    }
    let client = connect(addr);
    let queue = client.queue::<Option<Job>>("typed", 0).unwrap();
    let jobs: Vec<Option<Job>> = (0..5)
        .map(|id| {
            Some(Job {
                id,
                name: format!("job {id}"),
                tags: (0..id).map(|tag| format!("tag {tag}")).collect(),
            })
        })
        .chain([None])
        .collect();
    queue.put_many(&jobs).unwrap();
    let mut got = Vec::new();
    while got.len() < jobs.len() {
        let many = queue.get_many(4).unwrap();
        assert!((1..=4).contains(&many.len()));
        got.extend(many);
    }
    assert_eq!(got, jobs);
    // A raw handle sees the same queue, and bytes that are not a `Job` are an error.
    client
        .raw_queue("typed", 0)
        .unwrap()
        .put(b"\xff\xff")
        .unwrap();
    let got = queue.get();
    assert!(matches!(got, Err(Error::Undecodable { .. })), "{got:?}");
}

fn close_drains_then_fails(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("closing", 10).unwrap();
    queue.put(&1).unwrap();
    queue.put(&2).unwrap();
    assert!(!queue.is_closed().unwrap());
    queue.close().unwrap();
    assert!(queue.is_closed().unwrap());
    assert!(matches!(queue.put(&3), Err(Error::Closed)));
    assert_eq!(queue.get().unwrap(), 1);
    assert_eq!(queue.get().unwrap(), 2);
    assert!(matches!(queue.get(), Err(Error::Closed)));
    // A getter that was already waiting learns it too.
    let waiting = client.queue::<u32>("closing-later", 10).unwrap();
    let (done, got) = mpsc::channel();
    let getter = {
        let waiting = waiting.clone();
        std::thread::spawn(move || done.send(waiting.get()).unwrap())
    };
    assert!(got.recv_timeout(Duration::from_millis(200)).is_err());
    waiting.close().unwrap();
    let answer = got.recv_timeout(Duration::from_secs(10)).expect("woken");
    assert!(matches!(answer, Err(Error::Closed)));
    getter.join().unwrap();
}

fn an_acknowledged_delivery_leaves(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("acked", 10).unwrap();
    queue.put(&7).unwrap();
    let delivery = queue.get_delivery().unwrap();
    assert_eq!(*delivery, 7);
    assert!(!delivery.is_redelivered());
    assert_eq!(delivery.deliveries(), 1);
    delivery.ack().unwrap();
    assert_eq!(queue.len().unwrap(), 0);
    assert!(matches!(
        queue.get_timeout(Duration::from_millis(300)),
        Err(Error::Empty)
    ));
}

fn a_delivery_counts_until_acknowledged(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("counted", 2).unwrap();
    queue.put(&1).unwrap();
    queue.put(&2).unwrap();
    let first = queue.get_delivery().unwrap();
    // In the worker's hands, it still takes room.
    assert_eq!(queue.len().unwrap(), 2);
    assert!(matches!(queue.put_nowait(&3), Err(Error::Full)));
    first.ack().unwrap();
    assert_eq!(queue.len().unwrap(), 1);
    queue.put_nowait(&3).unwrap();
}

/// The item comes back, marked as redelivered. The local broker puts it back at the head;
/// JetStream delivers it again soon, not necessarily first (docs/scale-out.md).
fn a_rejected_or_dropped_delivery_comes_back(addr: &str, backend: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("rejected", 10).unwrap();
    for i in 1..=3 {
        queue.put(&i).unwrap();
    }
    let first = queue.get_delivery().unwrap();
    assert_eq!(*first, 1);
    first.reject().unwrap();
    // (item, its delivery count) as they come; item 2 is dropped unsettled the first time.
    let mut seen = Vec::new();
    let mut acked = Vec::new();
    while acked.len() < 3 {
        assert!(seen.len() < 10, "deliveries went round: {seen:?}");
        let delivery = queue.get_delivery_timeout(Duration::from_secs(10)).unwrap();
        seen.push((*delivery, delivery.deliveries()));
        assert_eq!(delivery.is_redelivered(), delivery.deliveries() > 1);
        if *delivery == 2 && delivery.deliveries() == 1 {
            drop(delivery);
        } else {
            acked.push(*delivery);
            delivery.ack().unwrap();
        }
    }
    if backend == Backend::Local {
        assert_eq!(seen[0], (1, 2), "the rejected item is back at the head");
    }
    assert!(
        seen.contains(&(1, 2)),
        "the rejected item came back: {seen:?}"
    );
    assert!(
        seen.contains(&(2, 2)),
        "the dropped item came back: {seen:?}"
    );
    acked.sort_unstable();
    assert_eq!(acked, [1, 2, 3], "each acknowledged once");
    assert_eq!(queue.len().unwrap(), 0);
}

fn dead_letters_by_request_and_by_limit(addr: &str, _: Backend) {
    let client = connect(addr);
    let options = QueueOptions::new()
        .capacity(10)
        .dead_letter("jobs-failed")
        .max_deliveries(2);
    let queue = client.queue_with::<u32>("jobs-dl", options).unwrap();
    let failed = client.queue::<u32>("jobs-failed", 0).unwrap();
    queue.put(&1).unwrap();
    queue.put(&2).unwrap();
    queue.get_delivery().unwrap().dead_letter().unwrap();
    assert_eq!(failed.get_timeout(Duration::from_secs(10)).unwrap(), 1);
    // Item 2, rejected twice, goes to the dead letters rather than a third time.
    for _ in 0..2 {
        let delivery = queue.get_delivery_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(*delivery, 2);
        delivery.reject().unwrap();
    }
    assert!(matches!(
        queue.get_delivery_timeout(Duration::from_millis(500)),
        Err(Error::Empty)
    ));
    assert_eq!(failed.get_timeout(Duration::from_secs(10)).unwrap(), 2);
    assert_eq!(queue.len().unwrap(), 0);
}

fn other_options_conflict(addr: &str, _: Backend) {
    let client = connect(addr);
    client.queue::<u32>("settled", 3).unwrap();
    client.queue::<u32>("settled", 3).unwrap();
    assert!(matches!(
        client.queue::<u32>("settled", 4),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        client.queue_with::<u32>("settled", QueueOptions::new().capacity(3).dead_letter("x")),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(client.queue::<u32>("", 3), Err(Error::Invalid(_))));
}

fn lookup_stats_and_remove(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("listed", 5).unwrap();
    queue.put(&1).unwrap();
    let figures = client.lookup("listed").unwrap();
    assert_eq!(figures.name, "listed");
    let ipcq::stats::ObjectDetail::Queue(stats) = figures.detail else {
        panic!("a queue's figures");
    };
    assert_eq!((stats.ready, stats.capacity), (1, 5));
    assert!(client
        .stats()
        .unwrap()
        .iter()
        .any(|object| object.name == "listed"));
    client.remove("listed").unwrap();
    assert!(matches!(client.lookup("listed"), Err(Error::NotFound(_))));
    assert!(matches!(client.remove("listed"), Err(Error::NotFound(_))));
}

fn join_waits_for_task_done(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("joined", 10).unwrap();
    assert!(queue.join_timeout(Duration::from_millis(100)).unwrap());
    for i in 0..3 {
        queue.put(&i).unwrap();
    }
    assert!(!queue.join_timeout(Duration::from_millis(200)).unwrap());
    let (done, joined) = mpsc::channel();
    let joiner = {
        let queue = connect(addr).queue::<u32>("joined", 10).unwrap();
        std::thread::spawn(move || done.send(queue.join()).unwrap())
    };
    for _ in 0..3 {
        queue.get().unwrap();
        assert!(joined.recv_timeout(Duration::from_millis(50)).is_err());
        queue.task_done().unwrap();
    }
    joined
        .recv_timeout(Duration::from_secs(10))
        .expect("join returned once every item was done")
        .unwrap();
    joiner.join().unwrap();
    assert!(matches!(queue.task_done(), Err(Error::Invalid(_))));
}

fn acknowledgements_count_as_task_done(addr: &str, _: Backend) {
    let client = connect(addr);
    let queue = client.queue::<u32>("acks-done", 10).unwrap();
    queue.put(&1).unwrap();
    queue.put(&2).unwrap();
    queue.get_delivery().unwrap().ack().unwrap();
    assert!(!queue.join_timeout(Duration::from_millis(100)).unwrap());
    queue.get_delivery().unwrap().ack().unwrap();
    assert!(queue.join_timeout(Duration::from_secs(10)).unwrap());
}

fn a_lock_excludes_other_clients(addr: &str, _: Backend) {
    let (a, b) = (connect(addr), connect(addr));
    let lock_a = a.lock("door").unwrap();
    let lock_b = b.lock("door").unwrap();
    let acquired = lock_a.acquire().unwrap();
    assert!(!acquired.owner_died());
    assert!(lock_b.try_acquire().unwrap().is_none());
    assert!(lock_b
        .acquire_timeout(Duration::from_millis(200))
        .unwrap()
        .is_none());
    let (done, got) = mpsc::channel();
    let waiter = std::thread::spawn(move || done.send(lock_b.acquire()).unwrap());
    assert!(got.recv_timeout(Duration::from_millis(200)).is_err());
    lock_a.release().unwrap();
    let acquired = got
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiter got the lock once it was released")
        .unwrap();
    assert!(!acquired.owner_died());
    waiter.join().unwrap();
    assert!(lock_a.try_acquire().unwrap().is_none());
    assert!(matches!(lock_a.release(), Err(Error::Invalid(_))));
}

fn a_dropped_guard_releases(addr: &str, _: Backend) {
    let (a, b) = (connect(addr), connect(addr));
    let lock_b = b.lock("guarded").unwrap();
    let guard = a.lock("guarded").unwrap().lock().unwrap();
    assert!(!guard.owner_died());
    assert!(lock_b.try_acquire().unwrap().is_none());
    drop(guard);
    // The release may be on its way (NATS sends it from a task): wait for it.
    assert!(lock_b
        .acquire_timeout(Duration::from_secs(10))
        .unwrap()
        .is_some());
}

fn a_semaphore_admits_its_permits(addr: &str, _: Backend) {
    let (a, b) = (connect(addr), connect(addr));
    let rooms_a = a.semaphore("rooms", 2).unwrap();
    let rooms_b = b.semaphore("rooms", 2).unwrap();
    assert_eq!(rooms_b.permits(), 2);
    assert!(matches!(a.semaphore("rooms", 3), Err(Error::Conflict(_))));
    let first = rooms_a.enter().unwrap();
    let _second = rooms_b.enter().unwrap();
    assert!(rooms_b.try_acquire().unwrap().is_none());
    drop(first);
    let third = rooms_b
        .acquire_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("a permit came back");
    assert!(!third.owner_died());
    rooms_b.release().unwrap();
}

fn events_wake_waiters_of_other_clients(addr: &str, _: Backend) {
    let (a, b) = (connect(addr), connect(addr));
    let event = a.event("go").unwrap();
    assert!(!event.is_set().unwrap());
    assert!(!event.wait_timeout(Duration::from_millis(100)).unwrap());
    let (done, woke) = mpsc::channel();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let event = b.event("go").unwrap();
            let done = done.clone();
            std::thread::spawn(move || done.send(event.wait()).unwrap())
        })
        .collect();
    assert!(woke.recv_timeout(Duration::from_millis(200)).is_err());
    event.set().unwrap();
    for _ in 0..2 {
        woke.recv_timeout(Duration::from_secs(10))
            .expect("every waiter woke")
            .unwrap();
    }
    waiters.into_iter().for_each(|w| w.join().unwrap());
    assert!(event.is_set().unwrap());
    event.clear().unwrap();
    assert!(!event.is_set().unwrap());
}

fn tokio_client_does_the_same(addr: &str, _: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = ipcq::tokio::Client::connect(addr).await.unwrap();
        let queue = client.queue::<u32>("async", 4).await.unwrap();
        for i in 0..4 {
            queue.put(&i).await.unwrap();
        }
        assert!(matches!(queue.put_nowait(&9).await, Err(Error::Full)));
        assert_eq!(queue.get().await.unwrap(), 0);
        let delivery = queue.get_delivery().await.unwrap();
        assert_eq!(*delivery, 1);
        delivery.reject().unwrap();
        // A settlement the tokio client could not wait for is confirmed by `flush`.
        client.flush().await.unwrap();
        let mut rest = Vec::new();
        for _ in 0..3 {
            let delivery = queue.get_delivery().await.unwrap();
            rest.push(*delivery);
            delivery.ack_checked().await.unwrap();
        }
        rest.sort_unstable();
        assert_eq!(rest, [1, 2, 3]);
        assert_eq!(queue.len().await.unwrap(), 0);
        // A get that loses a race takes nothing.
        tokio::select! {
            _ = queue.get() => panic!("nothing was put"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        queue.put(&5).await.unwrap();
        assert_eq!(queue.get().await.unwrap(), 5);
        let lock = client.lock("async-lock").await.unwrap();
        let guard = lock.lock().await.unwrap();
        assert!(lock.try_acquire().await.unwrap().is_none());
        drop(guard);
        assert!(lock
            .acquire_timeout(Duration::from_secs(10))
            .await
            .unwrap()
            .is_some());
    });
}

fn pipe_round_trip(addr: &str) -> ipcq::Result<()> {
    let client = connect(addr);
    let zero = client.pipe::<u32>("chat", End::Zero)?;
    let one = connect(addr).pipe::<u32>("chat", End::One)?;
    zero.send(&1)?;
    assert_eq!(one.recv()?, 1);
    one.send(&2)?;
    assert_eq!(zero.recv()?, 2);
    let _ = PipeOptions::default();
    Ok(())
}

fn barrier_of_two(addr: &str) -> ipcq::Result<()> {
    let client = connect(addr);
    let barrier = client.barrier("meet", 2)?;
    let other = connect(addr).barrier("meet", 2)?;
    let party = std::thread::spawn(move || other.wait());
    barrier.wait()?;
    party.join().unwrap()?;
    Ok(())
}

fn select_over_two_queues(addr: &str) -> ipcq::Result<()> {
    let client = connect(addr);
    let a = client.raw_queue("left", 0)?;
    let b = client.raw_queue("right", 0)?;
    b.put(b"b")?;
    let mut select = Select::new();
    select.add(&a);
    select.add(&b);
    let (index, item) = select.get_timeout(Duration::from_secs(5))?;
    assert_eq!((index, &item[..]), (1, &b"b"[..]));
    Ok(())
}

fn leased_delivery(addr: &str) -> ipcq::Result<()> {
    let client = connect(addr);
    let queue = client.queue::<u32>("leased", 0)?;
    queue.put(&1)?;
    let mut delivery = queue.get_delivery()?;
    delivery.lease(Duration::from_secs(10))?;
    delivery.ack()
}

fn auto_delete_queue(addr: &str) -> ipcq::Result<()> {
    let client = connect(addr);
    let queue =
        client.queue_with::<u32>("passing", QueueOptions::new().capacity(1).auto_delete(true))?;
    queue.put(&1)?;
    drop(queue);
    drop(client);
    // The local broker removes it once the last connection that opened it closes.
    let start = Instant::now();
    let other = connect(addr);
    while other.lookup("passing").is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "removed in time");
        std::thread::yield_now();
    }
    Ok(())
}
