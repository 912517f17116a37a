//! `Select`: the first item from any of several queues, the others' requests withdrawn.

mod common;

use std::time::Duration;

use common::*;
use ipcq::{Error, Select};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_select_takes_from_the_first_queue_that_has_an_item() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let queues: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|name| client.queue::<u64>(name, 0).unwrap())
            .collect();
        let mut select = Select::new();
        for queue in &queues {
            select.add(queue.raw());
        }
        queues[2].put(&20).unwrap();
        let (index, item) = select.get().unwrap();
        assert_eq!((index, queues[index].decode(&item).unwrap()), (2, 20));
        // Several have items: the first added gives first.
        queues[1].put(&10).unwrap();
        queues[0].put(&0).unwrap();
        let order: Vec<(usize, u64)> = (0..2)
            .map(|_| {
                let (index, item) = select.get().unwrap();
                (index, queues[index].decode(&item).unwrap())
            })
            .collect();
        assert_eq!(order, [(0, 0), (1, 10)]);
        assert!(select.get_nowait().unwrap_err().is_empty());
        let err = select.get_timeout(Duration::from_millis(20)).unwrap_err();
        assert!(err.is_empty(), "{err}");
    });
}

#[test]
fn a_waiting_select_withdraws_the_requests_that_lose() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let observer = broker.client();
        let names = ["a", "b", "c"];
        for name in names {
            observer.raw_queue(name, 0).unwrap();
        }
        let selector = std::thread::spawn({
            let client = client.clone();
            move || {
                let queues: Vec<_> = names
                    .iter()
                    .map(|name| client.raw_queue(name, 0).unwrap())
                    .collect();
                let mut select = Select::new();
                for queue in &queues {
                    select.add(queue);
                }
                select.get().unwrap()
            }
        });
        for name in names {
            wait_until(&observer, name, "the select to wait there", |s| {
                s.getters == 1
            });
        }
        observer.raw_queue("b", 0).unwrap().put(b"b1").unwrap();
        let (index, item) = selector.join().unwrap();
        assert_eq!((index, &item[..]), (1, &b"b1"[..]));
        // The others left the broker: nothing waits there, nothing is taken from them.
        for name in ["a", "c"] {
            wait_until(&observer, name, "the losing request to leave", |s| {
                s.getters == 0
            });
        }
        let a = observer.raw_queue("a", 0).unwrap();
        a.put(b"a1").unwrap();
        assert_eq!(&a.get().unwrap()[..], b"a1");
    });
}

#[test]
fn a_killed_selecting_process_loses_nothing() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let names = ["a", "b", "c"];
        let queues: Vec<_> = names
            .iter()
            .map(|name| client.queue::<u64>(name, 0).unwrap())
            .collect();
        let mut selector = helper(&["select", &broker.addr, "a,b,c"]);
        for name in names {
            wait_until(&client, name, "the select to wait there", |s| {
                s.getters == 1
            });
        }
        kill(&mut selector);
        selector.wait().unwrap();
        // Every queue gets an item once the process is gone: all three are there to take.
        for name in names {
            wait_until(&client, name, "the dead select to leave", |s| {
                s.getters == 0
            });
        }
        for (i, queue) in queues.iter().enumerate() {
            queue.put(&(i as u64)).unwrap();
        }
        for (i, queue) in queues.iter().enumerate() {
            assert_eq!(
                queue.get_timeout(Duration::from_secs(10)).unwrap(),
                i as u64
            );
        }
    });
}

#[test]
fn a_select_passes_over_closed_queues_and_ends_when_all_are() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let first = client.queue::<u64>("first", 0).unwrap();
        let second = client.queue::<u64>("second", 0).unwrap();
        let mut select = Select::new();
        select.add(first.raw());
        select.add(second.raw());
        first.close().unwrap();
        second.put(&2).unwrap();
        let (index, item) = select.get().unwrap();
        assert_eq!((index, second.decode(&item).unwrap()), (1, 2));
        second.close().unwrap();
        assert!(matches!(select.get(), Err(Error::Closed)));
    });
}

#[test]
fn a_select_hands_out_deliveries_too() {
    watchdog(LIMIT, || {
        let broker = TestBroker::start();
        let client = broker.client();
        let jobs = client.queue::<u64>("jobs", 0).unwrap();
        let other = client.queue::<u64>("other", 0).unwrap();
        jobs.set_prefetch(1);
        let mut select = Select::new();
        select.add(other.raw());
        select.add(jobs.raw());
        jobs.put(&5).unwrap();
        let (index, delivery) = select.get_delivery().unwrap();
        assert_eq!(index, 1);
        let delivery = delivery.decode::<u64>().unwrap();
        assert_eq!((*delivery, delivery.deliveries()), (5, 1));
        delivery.reject().unwrap();
        let (_, again) = select
            .get_delivery_timeout(Duration::from_secs(10))
            .unwrap();
        let again = again.decode::<u64>().unwrap();
        assert_eq!((*again, again.deliveries()), (5, 2));
        again.ack().unwrap();
        assert!(jobs.join_timeout(Duration::from_secs(10)).unwrap());
    });
}

#[test]
fn a_select_needs_queues_of_one_client() {
    let broker = TestBroker::start();
    let (one, two) = (broker.client(), broker.client());
    let (a, b) = (
        one.raw_queue("a", 0).unwrap(),
        two.raw_queue("b", 0).unwrap(),
    );
    let mut select = Select::new();
    assert!(matches!(select.get_nowait(), Err(Error::Invalid(_))));
    select.add(&a);
    select.add(&b);
    assert!(matches!(select.get_nowait(), Err(Error::Invalid(_))));
}
