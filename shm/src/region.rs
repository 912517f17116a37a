//! A ring in a memfd (Linux): made by the broker, sealed against resizing, and mapped by
//! the clients it passes the file to; futexes in it wake a side that sleeps.
//!
//! ```text
//! offset 0     magic "IPCQRNG1", capacity, slot size            (written once, then read-only)
//!        24    flags: closed, socket, front                      (the broker's; rarely set)
//!        64    head                                              (own cache line)
//!        128   tail                                              (own cache line)
//!        192   items: sequence, consumers asleep                 (futex words)
//!        256   room:  sequence, producers asleep                 (futex words)
//!        320   items taken, ever                                 (own cache line)
//!        384   slot 0: state (8 B), length (4 B), pad, payload   (stride: 16 + slot size,
//!              slot 1 ...                                          rounded up to 64 B)
//! ```

use std::fs::File;
use std::io;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::thread::futex;

use crate::raw::Mapping;
use crate::ring::{Memory, Owner, PushError, Recovered, Ring};

const MAGIC: u64 = u64::from_le_bytes(*b"IPCQRNG1");
const CAPACITY: usize = 8;
const SLOT_SIZE: usize = 16;
const FLAGS: usize = 24;
const HEAD: usize = 64;
const TAIL: usize = 128;
const ITEMS_SEQ: usize = 192;
const ITEMS_ASLEEP: usize = 196;
const ROOM_SEQ: usize = 256;
const ROOM_ASLEEP: usize = 260;
const TAKEN: usize = 320;
const SLOTS: usize = 384;
/// Within a slot.
const LEN: usize = 8;
const PAYLOAD: usize = 16;

/// The largest ring made: 1 GiB of slots.
const MOST_BYTES: usize = 1 << 30;

/// How long a waiting push or pop spins (checking the ring, with no system call) before
/// it sleeps on the futex: long enough to catch a peer that is busy on the other core,
/// short enough that an idle waiter costs no CPU.
pub const SPIN: Duration = Duration::from_micros(50);

/// How long a waiting push or pop spins without a system call at all, before it yields
/// its core between looks for the rest of [`SPIN`].
const SPIN_ALONE: Duration = Duration::from_micros(20);

/// The longest a waiter sleeps before asking its caller whether to go on (whether the
/// broker is still there: a futex does not tell).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What a [`SharedRing::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// The item at the head.
    Item(Vec<u8>),
    /// None came in time (or the caller's check said to stop).
    Empty,
    /// The queue is closed and the ring is empty, with nothing still being written.
    Closed,
    /// The broker serves the queue over its socket now: ask it.
    Socket,
}

/// The stride of a slot holding `slot_size` bytes.
fn stride(slot_size: usize) -> Option<usize> {
    PAYLOAD.checked_add(slot_size)?.checked_next_multiple_of(64)
}

/// The ring's memory: a mapping of the memfd.
#[derive(Debug)]
pub struct RegionMemory {
    mapping: Mapping,
    capacity: usize,
    slot_size: usize,
    stride: usize,
}

impl RegionMemory {
    fn slot(&self, index: u64) -> usize {
        // index < capacity, and the mapping holds capacity strides: no overflow, and in
        // bounds (which the mapping checks again).
        let index = usize::try_from(index)
            .unwrap_or(usize::MAX)
            .min(self.capacity);
        SLOTS + index * self.stride
    }

    fn word32(&self, offset: usize) -> &AtomicU32 {
        self.mapping.u32_at(offset)
    }
}

impl Memory for RegionMemory {
    type Word = AtomicU64;

    fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    fn slot_size(&self) -> usize {
        self.slot_size
    }

    fn head(&self) -> &AtomicU64 {
        self.mapping.u64_at(HEAD)
    }

    fn tail(&self) -> &AtomicU64 {
        self.mapping.u64_at(TAIL)
    }

    fn flags(&self) -> &AtomicU64 {
        self.mapping.u64_at(FLAGS)
    }

    fn state(&self, index: u64) -> &AtomicU64 {
        self.mapping.u64_at(self.slot(index))
    }

    fn write(&self, index: u64, item: &[u8]) {
        let slot = self.slot(index);
        self.mapping.write(slot + PAYLOAD, item);
        // Relaxed: published by the state's Release store, as the payload is.
        self.mapping.u32_at(slot + LEN).store(
            u32::try_from(item.len()).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }

    fn read(&self, index: u64) -> Vec<u8> {
        let slot = self.slot(index);
        // Relaxed: acquired with the state, as the payload is. A length no producer
        // wrote (scribbled memory) is cut to the slot.
        let len = self.mapping.u32_at(slot + LEN).load(Ordering::Relaxed) as usize;
        self.mapping.read(slot + PAYLOAD, len.min(self.slot_size))
    }
}

/// A ring in shared memory, with waiting puts and gets.
#[derive(Debug)]
pub struct SharedRing {
    file: File,
    ring: Ring<RegionMemory>,
}

impl SharedRing {
    /// Makes a ring of `capacity` slots of `slot_size` bytes in a new memfd named `name`,
    /// sealed so that nobody can resize it.
    ///
    /// # Errors
    ///
    /// When the system refuses the memfd or its size; `InvalidInput` for 0 slots or a
    /// ring over 1 GiB.
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> io::Result<SharedRing> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let stride = stride(slot_size).ok_or_else(|| invalid("slot size too large"))?;
        let len = capacity
            .checked_mul(stride)
            .and_then(|slots| slots.checked_add(SLOTS))
            .filter(|&len| capacity > 0 && len <= MOST_BYTES)
            .ok_or_else(|| invalid("a ring has 1 slot or more, and at most 1 GiB"))?;
        let fd = rustix::fs::memfd_create(
            format!("ipcq-{name}"),
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        // Zeroed: every slot EMPTY on lap 0, both counters 0.
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let file = File::from(fd);
        let mapping = Mapping::new(&file, len)?;
        mapping
            .u64_at(CAPACITY)
            .store(capacity as u64, Ordering::Relaxed);
        mapping
            .u64_at(SLOT_SIZE)
            .store(slot_size as u64, Ordering::Relaxed);
        // Release: whoever reads the magic with Acquire sees the sizes.
        mapping.u64_at(0).store(MAGIC, Ordering::Release);
        Ok(SharedRing::over(file, mapping, capacity, slot_size, stride))
    }

    /// Maps a ring that [`SharedRing::create`] made, from its file (received from the
    /// broker). Checks what a mistaken or hostile file could get wrong: that it is
    /// sealed against shrinking (a shrunk mapping would fault), its magic, and that its
    /// sizes fit its length.
    ///
    /// # Errors
    ///
    /// `InvalidData` for a file that is not such a ring; the system's error otherwise.
    pub fn open(file: File) -> io::Result<SharedRing> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let seals = rustix::fs::fcntl_get_seals(&file)?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(bad("the ring's memory is not sealed against resizing"));
        }
        let len = usize::try_from(file.metadata()?.len())
            .ok()
            .filter(|&len| (SLOTS..=MOST_BYTES + SLOTS).contains(&len))
            .ok_or_else(|| bad("the ring's memory has a size no ring has"))?;
        let mapping = Mapping::new(&file, len)?;
        if mapping.u64_at(0).load(Ordering::Acquire) != MAGIC {
            return Err(bad("not an ipcq ring"));
        }
        let capacity = mapping.u64_at(CAPACITY).load(Ordering::Relaxed);
        let slot_size = mapping.u64_at(SLOT_SIZE).load(Ordering::Relaxed);
        let fits = usize::try_from(slot_size).ok().and_then(|slot_size| {
            let stride = stride(slot_size)?;
            let capacity = usize::try_from(capacity).ok()?;
            let end = capacity.checked_mul(stride)?.checked_add(SLOTS)?;
            (capacity > 0 && end <= len).then_some((capacity, slot_size, stride))
        });
        let (capacity, slot_size, stride) =
            fits.ok_or_else(|| bad("the ring's sizes do not fit its memory"))?;
        Ok(SharedRing::over(file, mapping, capacity, slot_size, stride))
    }

    fn over(
        file: File,
        mapping: Mapping,
        capacity: usize,
        slot_size: usize,
        stride: usize,
    ) -> SharedRing {
        SharedRing {
            file,
            ring: Ring::new(RegionMemory {
                mapping,
                capacity,
                slot_size,
                stride,
            }),
        }
    }

    /// The memfd, to pass to a client (which maps it with [`SharedRing::open`]).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.memory().capacity
    }

    /// The largest item a slot holds.
    pub fn slot_size(&self) -> usize {
        self.ring.memory().slot_size
    }

    /// Puts `item` if there is room now, waking a consumer that sleeps.
    ///
    /// # Errors
    ///
    /// As [`Ring::push`].
    pub fn push(&self, owner: Owner, item: &[u8]) -> Result<(), PushError> {
        self.ring.push(owner, item)?;
        self.wake(ITEMS_SEQ, ITEMS_ASLEEP);
        Ok(())
    }

    /// Claims the slot at the tail, to fill later (see [`Ring::claim`]).
    ///
    /// # Errors
    ///
    /// As [`Ring::claim`].
    pub fn claim(&self, owner: Owner) -> Result<(u64, u32), PushError> {
        self.ring.claim(owner)
    }

    /// Fills and publishes a claimed slot (see [`Ring::fill`]), waking a consumer that
    /// sleeps.
    ///
    /// # Errors
    ///
    /// As [`Ring::fill`].
    pub fn fill(&self, index: u64, lap: u32, item: &[u8]) -> Result<(), PushError> {
        self.ring.fill(index, lap, item)?;
        self.wake(ITEMS_SEQ, ITEMS_ASLEEP);
        Ok(())
    }

    /// Gives up a claimed slot (see [`Ring::abandon`]), waking consumers waiting at it.
    pub fn abandon(&self, index: u64, lap: u32) {
        self.ring.abandon(index, lap);
        self.wake(ITEMS_SEQ, ITEMS_ASLEEP);
    }

    /// Takes the item at the head if there is one now, waking a producer that sleeps.
    pub fn pop(&self, owner: Owner) -> Option<Vec<u8>> {
        let item = self.ring.pop(owner)?;
        // Relaxed: a count the broker reads for its figures; the socket that tells it
        // to look orders it.
        self.mapping().u64_at(TAKEN).fetch_add(1, Ordering::Relaxed);
        self.wake(ROOM_SEQ, ROOM_ASLEEP);
        Some(item)
    }

    /// Items ever taken from the ring, by anyone.
    pub fn taken(&self) -> u64 {
        self.mapping().u64_at(TAKEN).load(Ordering::Relaxed)
    }

    fn mapping(&self) -> &Mapping {
        &self.ring.memory().mapping
    }

    /// The broker's flags now ([`crate::ring::CLOSED`], [`crate::ring::SOCKET`],
    /// [`crate::ring::FRONT`]).
    pub fn flags(&self) -> u64 {
        self.ring.flags()
    }

    /// Sets `flags` (see [`Ring::set_flags`]) and wakes every sleeper, so that they see
    /// them.
    pub fn set_flags(&self, flags: u64) {
        self.ring.set_flags(flags);
        self.wake(ITEMS_SEQ, ITEMS_ASLEEP);
        self.wake(ROOM_SEQ, ROOM_ASLEEP);
    }

    /// Clears `flags` (see [`Ring::clear_flags`]).
    pub fn clear_flags(&self, flags: u64) {
        self.ring.clear_flags(flags);
    }

    /// The broker's take of the item at the head, its slot kept (see [`Ring::take_held`]).
    pub fn take_held(&self, keeper: Owner) -> Option<(u64, u32, Vec<u8>)> {
        self.ring.take_held(keeper)
    }

    /// Frees a held slot (see [`Ring::release`]), waking a producer that sleeps.
    pub fn release(&self, keeper: Owner, index: u64, lap: u32) {
        self.ring.release(keeper, index, lap);
        self.wake(ROOM_SEQ, ROOM_ASLEEP);
    }

    /// Takes back what a dead owner held, keeping the slots of the items it gives back
    /// (see [`Ring::recover_held`]), and wakes the sleepers of both sides.
    pub fn recover_held(&self, dead: Owner, keeper: Owner) -> Recovered {
        let recovered = self.ring.recover_held(dead, keeper);
        self.wake(ITEMS_SEQ, ITEMS_ASLEEP);
        self.wake(ROOM_SEQ, ROOM_ASLEEP);
        recovered
    }

    /// Slots being written now (see [`Ring::writing`]).
    pub fn writing(&self) -> usize {
        self.ring.writing()
    }

    /// Whether `owner` is reading an item (see [`Ring::reading`]).
    pub fn reading(&self, owner: Owner) -> bool {
        self.ring.reading(owner)
    }

    /// Puts `item`, waiting for room until `deadline` (`None`: as long as it takes):
    /// spinning for [`SPIN`], then asleep on the room futex, asking `go_on` every 100 ms
    /// of sleep whether to keep waiting.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] at the deadline or when `go_on` says to stop;
    /// [`PushError::TooLarge`]; [`PushError::Refused`].
    pub fn push_wait(
        &self,
        owner: Owner,
        item: &[u8],
        deadline: Option<Instant>,
        go_on: &mut dyn FnMut() -> bool,
    ) -> Result<(), PushError> {
        let mut outcome = Err(PushError::Full);
        self.wait(ROOM_SEQ, ROOM_ASLEEP, deadline, go_on, &mut || {
            outcome = self.push(owner, item);
            outcome != Err(PushError::Full)
        });
        outcome
    }

    /// Takes the item at the head, waiting for one until `deadline` (`None`: as long as
    /// it takes) as [`SharedRing::push_wait`] waits for room. Ends early when the broker
    /// has set a flag: [`Take::Socket`], or [`Take::Closed`] once a closed ring is empty
    /// and nothing is being written into it.
    pub fn take(
        &self,
        owner: Owner,
        deadline: Option<Instant>,
        go_on: &mut dyn FnMut() -> bool,
    ) -> Take {
        let mut taken = Take::Empty;
        self.wait(ITEMS_SEQ, ITEMS_ASLEEP, deadline, go_on, &mut || {
            taken = self.take_now(owner);
            taken != Take::Empty
        });
        taken
    }

    /// [`SharedRing::take`] without waiting.
    pub fn take_now(&self, owner: Owner) -> Take {
        // Items the broker holds come first (and a ring it serves no more is empty).
        if self.flags() & (crate::ring::FRONT | crate::ring::SOCKET) != 0 {
            return Take::Socket;
        }
        if let Some(item) = self.pop(owner) {
            return Take::Item(item);
        }
        let flags = self.flags();
        if flags & (crate::ring::FRONT | crate::ring::SOCKET) != 0 {
            return Take::Socket;
        }
        // Closed: no push can start any more, so once none is being written, a ring
        // that is still empty stays so. (Pushes being written are waited for.)
        if flags & crate::ring::CLOSED != 0 && self.writing() == 0 {
            return match self.pop(owner) {
                Some(item) => Take::Item(item),
                None => Take::Closed,
            };
        }
        Take::Empty
    }

    /// Items published and not yet taken (see [`Ring::len`]).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether [`SharedRing::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Takes back what a dead owner held (see [`Ring::recover`]), and wakes the sleepers
    /// of both sides: a skipped slot may let consumers on, a freed one producers.
    pub fn recover(&self, dead: Owner) -> Recovered {
        let recovered = self.ring.recover(dead);
        self.wake(ITEMS_SEQ, ITEMS_ASLEEP);
        self.wake(ROOM_SEQ, ROOM_ASLEEP);
        recovered
    }

    /// Wakes the sleepers on `seq` if there are any: no system call otherwise.
    fn wake(&self, seq: usize, asleep: usize) {
        let memory = self.ring.memory();
        // SeqCst fence: orders our publication (the slot's store, before) with our look
        // at the sleepers (after), against the sleeper's mirror image in `wait`: either
        // we see it asleep, or it sees our item before it sleeps.
        fence(Ordering::SeqCst);
        if memory.word32(asleep).load(Ordering::Relaxed) == 0 {
            return;
        }
        let seq = memory.word32(seq);
        seq.fetch_add(1, Ordering::Release);
        // Not PRIVATE: the sleepers are other processes.
        let _ = futex::wake(seq, futex::Flags::empty(), u32::MAX);
    }

    /// Calls `attempt` until it succeeds or `deadline` passes: spinning at first, then
    /// counted among the sleepers of `seq` and asleep on it between attempts.
    fn wait(
        &self,
        seq: usize,
        asleep: usize,
        deadline: Option<Instant>,
        go_on: &mut dyn FnMut() -> bool,
        attempt: &mut dyn FnMut() -> bool,
    ) {
        let start = Instant::now();
        let (yield_from, spin_until) = (start + SPIN_ALONE, start + SPIN);
        loop {
            if attempt() {
                return;
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return;
            }
            if now >= spin_until {
                break;
            }
            if now < yield_from {
                std::hint::spin_loop();
            } else {
                // More processes than cores (four producers and four consumers on two,
                // say): the peer may be waiting for this core. Let it run.
                std::thread::yield_now();
            }
        }
        let memory = self.ring.memory();
        let (seq, asleep) = (memory.word32(seq), memory.word32(asleep));
        asleep.fetch_add(1, Ordering::Relaxed);
        loop {
            let seen = seq.load(Ordering::Acquire);
            // SeqCst fence: the mirror of the one in `wake` (our count of sleepers,
            // before; our look at the ring, after).
            fence(Ordering::SeqCst);
            if attempt() {
                break;
            }
            let left = match deadline {
                None => CHECK_EVERY,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(CHECK_EVERY),
                    _ => break,
                },
            };
            let timeout = futex::Timespec {
                tv_sec: 0,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            // Woken, timed out, interrupted, or the sequence moved already: look again.
            let slept = Instant::now();
            let _ = futex::wait(seq, futex::Flags::empty(), seen, Some(&timeout));
            if slept.elapsed() >= left && !go_on() {
                break;
            }
        }
        asleep.fetch_sub(1, Ordering::Relaxed);
    }
}
