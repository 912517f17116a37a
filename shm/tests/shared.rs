//! The ring in a real memfd, under real threads: many producers and consumers, every item
//! delivered once and each producer's in order; a file that is not a sealed ring refused.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcq_shm::{Owner, PushError, SharedRing, Take, CLOSED, SOCKET};

fn owner(n: u32) -> Owner {
    Owner::new(n).expect("a valid owner")
}

#[test]
fn producers_and_consumers_move_every_item_once_in_order() {
    const PRODUCERS: u32 = 2;
    const CONSUMERS: u32 = 2;
    const ITEMS: u32 = 50_000;
    let ring = Arc::new(SharedRing::create("test", 64, 16).unwrap());
    let deadline = Some(Instant::now() + Duration::from_secs(60));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for i in 0..ITEMS {
                    let mut item = [0u8; 8];
                    item[..4].copy_from_slice(&p.to_le_bytes());
                    item[4..].copy_from_slice(&i.to_le_bytes());
                    ring.push_wait(owner(p + 1), &item, deadline, &mut || true)
                        .unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match ring.take(owner(100 + c), deadline, &mut || true) {
                        Take::Item(item) => got.push(item),
                        Take::Closed => return got,
                        other => panic!("consumer {c}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|p| p.join().unwrap());
    // Closing wakes the consumers: each ends once the ring is empty.
    ring.set_flags(CLOSED);
    let mut seen: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for consumer in consumers {
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for item in consumer.join().unwrap() {
            let p = u32::from_le_bytes(item[..4].try_into().unwrap());
            let i = u32::from_le_bytes(item[4..].try_into().unwrap());
            // Each consumer sees each producer's items in order.
            if let Some(&before) = last.get(&p) {
                assert!(i > before, "producer {p}: {i} after {before}");
            }
            last.insert(p, i);
            seen.entry(p).or_default().push(i);
        }
    }
    for p in 0..PRODUCERS {
        let mut items = seen.remove(&p).unwrap_or_default();
        items.sort_unstable();
        assert_eq!(
            items,
            (0..ITEMS).collect::<Vec<_>>(),
            "producer {p}: each item once"
        );
    }
    assert!(ring.is_empty());
}

#[test]
fn a_client_maps_the_brokers_ring_and_a_bad_file_is_refused() {
    let ring = SharedRing::create("mapped", 4, 32).unwrap();
    let file = ring.file().try_clone().unwrap();
    let client = SharedRing::open(file).unwrap();
    assert_eq!((client.capacity(), client.slot_size()), (4, 32));
    client.push(owner(1), b"from the client").unwrap();
    assert_eq!(ring.pop(owner(2)).unwrap(), b"from the client");
    assert_eq!(client.push(owner(1), &[0; 33]), Err(PushError::TooLarge));
    for i in 0..4u8 {
        client.push(owner(1), &[i]).unwrap();
    }
    assert_eq!(client.push(owner(1), &[9]), Err(PushError::Full));
    assert_eq!(ring.len(), 4);
    // An ordinary file is not sealed: refused before it is mapped.
    let plain = tempfile_like();
    let err = SharedRing::open(plain).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[test]
fn the_brokers_flags_refuse_pushes_and_end_waits() {
    let ring = SharedRing::create("flags", 4, 8).unwrap();
    ring.push(owner(1), b"before").unwrap();
    ring.set_flags(CLOSED);
    assert_eq!(
        ring.push(owner(1), b"after"),
        Err(PushError::Refused(CLOSED))
    );
    // The refused push's slot is passed over; what came before is still taken.
    assert_eq!(ring.take_now(owner(2)), Take::Item(b"before".to_vec()));
    assert_eq!(ring.take(owner(2), None, &mut || true), Take::Closed);
    assert_eq!(ring.writing(), 0);
    // A full ring, closed: refused too, not full (a waiting put would wait in vain).
    let full = SharedRing::create("full", 1, 8).unwrap();
    full.push(owner(1), b"a").unwrap();
    assert_eq!(full.push(owner(1), b"b"), Err(PushError::Full));
    full.set_flags(CLOSED);
    assert_eq!(
        full.push_wait(owner(1), b"b", None, &mut || true),
        Err(PushError::Refused(CLOSED))
    );

    let ring = Arc::new(SharedRing::create("socket", 4, 8).unwrap());
    let sleeper = {
        let ring = Arc::clone(&ring);
        std::thread::spawn(move || ring.take(owner(2), None, &mut || true))
    };
    // The sleeper wakes when the flag is set, whenever that is.
    ring.set_flags(SOCKET);
    assert_eq!(sleeper.join().unwrap(), Take::Socket);
    assert_eq!(ring.push(owner(1), b"x"), Err(PushError::Refused(SOCKET)));
    // A waiter whose check says stop ends within a check's time.
    let ring = SharedRing::create("stop", 1, 8).unwrap();
    let start = Instant::now();
    assert_eq!(ring.take(owner(2), None, &mut || false), Take::Empty);
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A process of the same user that scribbles on the ring (its memory is writable by every
/// client) can spoil items, but it cannot make a take or a put loop forever: the broker
/// takes from and puts into rings too.
#[test]
fn scribbled_slot_words_make_claims_give_up_not_loop() {
    use std::os::unix::fs::FileExt;
    let ring = SharedRing::create("scribbled", 2, 8).unwrap();
    // Slot 0's state word (the slots start at byte 384): a phase no process writes.
    ring.file().write_all_at(&[0xff; 8], 384).unwrap();
    assert_eq!(ring.pop(owner(1)), None);
    assert_eq!(ring.push(owner(1), b"x"), Err(PushError::Full));
    assert_eq!(
        ring.take(
            owner(1),
            Some(Instant::now() + Duration::from_millis(50)),
            &mut || true
        ),
        Take::Empty
    );
}

/// A file that is no ring: an unsealed memfd.
fn tempfile_like() -> std::fs::File {
    let fd = rustix::fs::memfd_create("plain", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    std::fs::File::from(fd)
}
