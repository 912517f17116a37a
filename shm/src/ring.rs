//! The ring: a bounded multi-producer, multi-consumer FIFO of fixed-size slots, in memory
//! that several processes share, with no lock: a process may die at any instruction, and
//! what it held is recovered by whoever learns of its death (the broker, when its socket
//! closes), from the ring alone.
//!
//! # Slots and their states
//!
//! Position `p` (counting every item ever put) lives in slot `p % capacity`, on lap
//! `p / capacity`. Each slot has one 64-bit state word: the lap it is on (32 bits,
//! wrapping), a phase (4 bits) and the owner that holds it (28 bits):
//!
//! ```text
//!            claim (CAS)        publish (store)       claim (CAS)          free (store)
//! EMPTY(l) ─────────────▶ WRITING(l, me) ─────▶ READY(l) ─────────▶ READING(l, me) ─────▶ EMPTY(l+1)
//!                               │                                         │
//!                      owner died: SKIP(l)                    owner died: item given back,
//!                      (recover), and a consumer               EMPTY(l+1) (recover)
//!                      frees it: EMPTY(l+1)
//! ```
//!
//! `tail` and `head` count positions claimed by producers and consumers. They are hints
//! kept up by everyone (whoever sees the slot at `tail` claimed moves `tail` on), so that
//! a process killed between claiming a slot and moving the counter stops nobody. The slot
//! states are the truth.
//!
//! What a death leaves, and what [`Ring::recover`] does with it:
//!
//! - a producer killed while writing: its slot is `WRITING(l, dead)`, and consumers wait
//!   at it (FIFO: nothing after it is handed out before it). Recovery marks it `SKIP(l)`;
//!   the next consumer frees it and goes on. Nothing half written is ever handed out: an
//!   item becomes visible only with the single store that publishes it.
//! - a consumer killed after claiming an item: its slot is `READING(l, dead)`, and the item
//!   is still whole in it (no producer reuses a slot before it is `EMPTY(l+1)`). The item
//!   never reached the dead process's caller (a `pop` frees the slot before it returns),
//!   so recovery copies it out and returns it to be given back, then frees the slot:
//!   exactly one of handed over and given back.
//!
//! # Flags: the broker's word
//!
//! One more word, [`Memory::flags`], is the broker's to set: [`CLOSED`] (puts are
//! refused) and [`SOCKET`] (the broker serves the queue over its socket from now on and
//! drains the ring). A producer looks at the flags after claiming its slot, and gives the
//! slot up (`SKIP`) if one is set; the broker sets a flag, then looks for slots being
//! written. A fence on each side between the two steps means that either the producer
//! sees the flag, or the broker sees its claim and waits for it to be published: an item
//! is never published into a ring the broker has stopped reading without the broker
//! knowing. A third flag, [`FRONT`], sends consumers to the broker first: it holds items
//! given back (a consumer died holding one), whose slots it keeps taken
//! ([`Ring::recover_held`]) until they leave for good ([`Ring::release`]), so that the
//! ring never holds more than its capacity meanwhile.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Reads of the ring's words one claim makes before it gives up: a ring that every
/// process uses as this module says settles in a few; only scribbled memory (a buggy or
/// hostile process of the same user) could keep a claim looping, and it must not keep
/// the broker, which takes from and puts into rings too, looping with it.
const GIVE_UP: u32 = 1 << 16;

/// A [`Memory::flags`] bit: the queue is closed, pushes are refused.
pub const CLOSED: u64 = 1;
/// A [`Memory::flags`] bit: the queue is served over the broker's socket from now on;
/// pushes are refused, and the broker drains what the ring holds.
pub const SOCKET: u64 = 2;
/// A [`Memory::flags`] bit: the broker holds items that come before the ring's (given
/// back by a consumer that died, or by a client that let them go): consumers ask it
/// first. Pushes go on.
pub const FRONT: u64 = 4;

/// A 64-bit atomic word of the ring's memory: `std`'s for shared memory, loom's in the
/// model checks.
pub trait Word {
    /// As `AtomicU64::load`.
    fn load(&self, order: std::sync::atomic::Ordering) -> u64;
    /// As `AtomicU64::store`.
    fn store(&self, value: u64, order: std::sync::atomic::Ordering);
    /// As `AtomicU64::compare_exchange`.
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: std::sync::atomic::Ordering,
        failure: std::sync::atomic::Ordering,
    ) -> Result<u64, u64>;
    /// As `AtomicU64::fetch_or`.
    fn fetch_or(&self, value: u64, order: std::sync::atomic::Ordering) -> u64;
    /// As `AtomicU64::fetch_and`.
    fn fetch_and(&self, value: u64, order: std::sync::atomic::Ordering) -> u64;
}

/// Implements [`Word`] for an atomic type with `AtomicU64`'s methods.
macro_rules! word_of {
    ($atomic:ty) => {
        impl $crate::ring::Word for $atomic {
            fn load(&self, order: std::sync::atomic::Ordering) -> u64 {
                self.load(order)
            }

            fn store(&self, value: u64, order: std::sync::atomic::Ordering) {
                self.store(value, order);
            }

            fn compare_exchange(
                &self,
                current: u64,
                new: u64,
                success: std::sync::atomic::Ordering,
                failure: std::sync::atomic::Ordering,
            ) -> Result<u64, u64> {
                self.compare_exchange(current, new, success, failure)
            }

            fn fetch_or(&self, value: u64, order: std::sync::atomic::Ordering) -> u64 {
                self.fetch_or(value, order)
            }

            fn fetch_and(&self, value: u64, order: std::sync::atomic::Ordering) -> u64 {
                self.fetch_and(value, order)
            }
        }
    };
}
#[cfg(test)]
pub(crate) use word_of;

word_of!(std::sync::atomic::AtomicU64);

/// The memory a ring lives in: its counters, slot states and payloads.
pub trait Memory {
    /// The atomic word type.
    type Word: Word;
    /// Slots in the ring (at least 1).
    fn capacity(&self) -> u64;
    /// The largest item a slot holds.
    fn slot_size(&self) -> usize;
    /// Positions claimed by consumers (a hint, see the module docs).
    fn head(&self) -> &Self::Word;
    /// Positions claimed by producers (a hint).
    fn tail(&self) -> &Self::Word;
    /// The broker's flags ([`CLOSED`], [`SOCKET`]).
    fn flags(&self) -> &Self::Word;
    /// The state word of slot `index`.
    fn state(&self, index: u64) -> &Self::Word;
    /// Writes `item` (at most `slot_size` bytes) as slot `index`'s payload. Called only by
    /// the holder of the slot in `WRITING`.
    fn write(&self, index: u64, item: &[u8]);
    /// Reads slot `index`'s payload. Called only by the holder of the slot in `READING`,
    /// or by recovery once its holder is dead.
    fn read(&self, index: u64) -> Vec<u8>;
    /// Called when a loop must read the ring again because another process moved it:
    /// a spin hint (the model checks yield to the other threads instead).
    fn pause(&self) {
        std::hint::spin_loop();
    }
    /// A sequentially consistent fence (loom's in the model checks).
    fn fence(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Who holds a slot: a number the broker gives each live process using the ring (1 to
/// [`Owner::MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(u32);

impl Owner {
    /// The largest owner number.
    pub const MAX: u32 = (1 << OWNER_BITS) - 1;

    /// Owner `number`; `None` for 0 or above [`Owner::MAX`].
    pub fn new(number: u32) -> Option<Owner> {
        (1..=Owner::MAX).contains(&number).then_some(Owner(number))
    }

    /// Its number.
    pub fn get(self) -> u32 {
        self.0
    }
}

const OWNER_BITS: u32 = 28;
const OWNER_MASK: u64 = (1 << OWNER_BITS) - 1;
const PHASE_MASK: u64 = 0xf;

/// What a slot is doing on its lap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty = 0,
    Writing = 1,
    Ready = 2,
    Reading = 3,
    Skip = 4,
}

/// A decoded state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    lap: u32,
    /// `None` for a value no process writes (memory that was scribbled on).
    phase: Option<Phase>,
    owner: u32,
}

impl State {
    fn word(lap: u32, phase: Phase, owner: u32) -> u64 {
        (u64::from(lap) << 32) | ((phase as u64) << OWNER_BITS) | (u64::from(owner) & OWNER_MASK)
    }

    // The casts keep the bits they name: 32 above 32, and 28 masked.
    #[allow(clippy::cast_possible_truncation)]
    fn decode(word: u64) -> State {
        let phase = match (word >> OWNER_BITS) & PHASE_MASK {
            0 => Some(Phase::Empty),
            1 => Some(Phase::Writing),
            2 => Some(Phase::Ready),
            3 => Some(Phase::Reading),
            4 => Some(Phase::Skip),
            _ => None,
        };
        State {
            lap: (word >> 32) as u32,
            phase,
            owner: (word & OWNER_MASK) as u32,
        }
    }
}

/// Why a push put nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Every slot holds an item (or one being written or read).
    Full,
    /// The item is larger than a slot.
    TooLarge,
    /// The broker set these flags ([`CLOSED`], [`SOCKET`]): the ring takes no more.
    Refused(u64),
}

/// What [`Ring::recover`] found of a dead owner.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Items it had claimed and not yet handed to its caller, in ring order: to be given
    /// back.
    pub returned: Vec<Vec<u8>>,
    /// Slots it had claimed to write and never published, now passed over.
    pub skipped: usize,
    /// With [`Ring::recover_held`]: the slots (index, lap) of the items given back, now
    /// the keeper's.
    pub held: Vec<(u64, u32)>,
}

/// A ring over `M`.
#[derive(Debug)]
pub struct Ring<M> {
    memory: M,
}

impl<M: Memory> Ring<M> {
    /// A ring over `memory`, which must have been zeroed when made (every slot `EMPTY` on
    /// lap 0, both counters 0), or used by rings before.
    pub fn new(memory: M) -> Ring<M> {
        Ring { memory }
    }

    /// The memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Where position `position` lives: its slot, and its lap (wrapping at 2^32 laps; a
    /// ring is never a whole 2^32 laps behind itself).
    // Laps wrap at 2^32 by design: the cast keeps the low 32 bits.
    #[allow(clippy::cast_possible_truncation)]
    fn locate(&self, position: u64) -> (u64, u32) {
        let capacity = self.memory.capacity();
        (position % capacity, (position / capacity) as u32)
    }

    /// Moves `counter` from `seen` to `seen + 1` if nobody has yet. Failing means someone
    /// else did (or moved it further): either way the caller reads it again.
    fn advance(counter: &M::Word, seen: u64) {
        // AcqRel/Acquire: the counters are hints (the slot states decide); ordering them
        // with the states only spares useless retries.
        let _ = counter.compare_exchange(seen, seen.wrapping_add(1), AcqRel, Acquire);
    }

    /// Puts `item` at the tail; fails at once if the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`], [`PushError::TooLarge`], [`PushError::Refused`] once the
    /// broker has set a flag.
    pub fn push(&self, owner: Owner, item: &[u8]) -> Result<(), PushError> {
        if item.len() > self.memory.slot_size() {
            return Err(PushError::TooLarge);
        }
        let (index, lap) = self.claim(owner)?;
        self.fill(index, lap, item)
    }

    /// The first half of [`Ring::push`]: claims the slot at the tail for `owner` and
    /// returns it (slot, lap), to be [filled](Ring::fill) or [given up](Ring::abandon)
    /// later — by the broker, for a client of its socket that sends the item after it was
    /// granted room. Consumers wait at the slot meanwhile (FIFO).
    ///
    /// # Errors
    ///
    /// [`PushError::Full`], [`PushError::Refused`].
    pub fn claim(&self, owner: Owner) -> Result<(u64, u32), PushError> {
        let (tail, index, lap) = self.claim_slot(owner).map_err(|full| {
            // A full ring that the broker has closed (or turned over) says so: the put
            // would wait for room in vain.
            match self.flags() & (CLOSED | SOCKET) {
                0 => full,
                flags => PushError::Refused(flags),
            }
        })?;
        Self::advance(self.memory.tail(), tail);
        // SeqCst fence: orders our claim (before) with our look at the flags (after),
        // against the broker's mirror image in `set_flags` (its flag, then its look at
        // the slots): either we see its flag here, or it sees our slot WRITING.
        self.memory.fence();
        let flags = self.memory.flags().load(Relaxed) & (CLOSED | SOCKET);
        if flags != 0 {
            // Given up: consumers pass it as a dead producer's slot.
            self.memory
                .state(index)
                .store(State::word(lap, Phase::Skip, 0), Release);
            return Err(PushError::Refused(flags));
        }
        Ok((index, lap))
    }

    /// Writes `item` into slot `index` claimed on lap `lap`, and publishes it.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`], the slot left claimed.
    pub fn fill(&self, index: u64, lap: u32, item: &[u8]) -> Result<(), PushError> {
        if item.len() > self.memory.slot_size() {
            return Err(PushError::TooLarge);
        }
        self.memory.write(index, item);
        // Release: the payload written above is visible to whoever sees READY with an
        // Acquire load (a consumer's claim, or recovery).
        self.memory
            .state(index)
            .store(State::word(lap, Phase::Ready, 0), Release);
        Ok(())
    }

    /// Gives up slot `index`, claimed on lap `lap` and never filled: consumers pass it
    /// as a dead producer's.
    pub fn abandon(&self, index: u64, lap: u32) {
        // Release: ordered after the claim, for the consumer that frees it.
        self.memory
            .state(index)
            .store(State::word(lap, Phase::Skip, 0), Release);
    }

    /// Claims the slot at the tail for `owner` (`WRITING`): its position, slot and lap.
    /// The tail is not moved yet (a process that dies here leaves it to the others).
    fn claim_slot(&self, owner: Owner) -> Result<(u64, u64, u32), PushError> {
        for _ in 0..GIVE_UP {
            let tail = self.memory.tail().load(Acquire);
            let (index, lap) = self.locate(tail);
            let slot = self.memory.state(index);
            // Acquire: pairs with the Release that freed the slot (EMPTY(l+1) after a
            // consumer read its payload), so that our payload write below comes after
            // that read.
            let word = slot.load(Acquire);
            let state = State::decode(word);
            match state.phase {
                Some(Phase::Empty) if state.lap == lap => {
                    let claim = State::word(lap, Phase::Writing, owner.0);
                    // AcqRel: the claim's Acquire is the one described above; its
                    // Release orders it before our counter move.
                    if slot.compare_exchange(word, claim, AcqRel, Acquire).is_ok() {
                        return Ok((tail, index, lap));
                    }
                }
                // Claimed on this lap already, or claimed and consumed: the tail lags.
                Some(_) if state.lap == lap => Self::advance(self.memory.tail(), tail),
                Some(Phase::Empty) if state.lap == lap.wrapping_add(1) => {
                    Self::advance(self.memory.tail(), tail);
                }
                // Still on the lap before: the item a full lap ago is not yet consumed.
                Some(_) if state.lap.wrapping_add(1) == lap => return Err(PushError::Full),
                // A stale tail (it moved on meanwhile), or a word no process writes: read
                // again.
                _ => self.memory.pause(),
            }
        }
        // Memory that no process following the protocol leaves: give up, as if full.
        Err(PushError::Full)
    }

    /// Takes the item at the head; `None` if there is none yet (nothing put, or the next
    /// item is still being written: FIFO, nothing after it comes first).
    pub fn pop(&self, owner: Owner) -> Option<Vec<u8>> {
        let (index, lap) = self.claim_item(owner)?;
        let item = self.memory.read(index);
        // Release: our payload read is done before a producer, claiming the slot with
        // Acquire, overwrites it.
        self.memory
            .state(index)
            .store(State::word(lap.wrapping_add(1), Phase::Empty, 0), Release);
        Some(item)
    }

    /// Claims the item at the head for `owner` (`READING`) and moves the head: its slot
    /// and lap; `None` if there is none yet.
    fn claim_item(&self, owner: Owner) -> Option<(u64, u32)> {
        for _ in 0..GIVE_UP {
            let head = self.memory.head().load(Acquire);
            let (index, lap) = self.locate(head);
            let slot = self.memory.state(index);
            // Acquire: pairs with the producer's Release of READY, so that the payload
            // read below sees what it wrote.
            let word = slot.load(Acquire);
            let state = State::decode(word);
            match state.phase {
                Some(Phase::Ready) if state.lap == lap => {
                    let claim = State::word(lap, Phase::Reading, owner.0);
                    // AcqRel: Acquire for the payload (as the load above); Release so
                    // that recovery, reading READING with Acquire, sees the payload too.
                    if slot.compare_exchange(word, claim, AcqRel, Acquire).is_ok() {
                        Self::advance(self.memory.head(), head);
                        return Some((index, lap));
                    }
                }
                Some(Phase::Skip) if state.lap == lap => {
                    // A dead producer's claim: free it and go on.
                    let free = State::word(lap.wrapping_add(1), Phase::Empty, 0);
                    if slot.compare_exchange(word, free, AcqRel, Acquire).is_ok() {
                        Self::advance(self.memory.head(), head);
                    }
                }
                // Being read by another: the head lags.
                Some(Phase::Reading) if state.lap == lap => {
                    Self::advance(self.memory.head(), head);
                }
                // Not yet written, or being written: nothing to take (yet).
                Some(Phase::Empty | Phase::Writing) if state.lap == lap => return None,
                // Consumed already: the head lags.
                Some(Phase::Empty) if state.lap == lap.wrapping_add(1) => {
                    Self::advance(self.memory.head(), head);
                }
                // The slot's last lap is still being read: ours is not written yet.
                Some(_) if state.lap.wrapping_add(1) == lap => return None,
                // A stale head, or a word no process writes: read again.
                _ => self.memory.pause(),
            }
        }
        // Memory that no process following the protocol leaves: give up, as if empty.
        None
    }

    /// Items in the ring now: published and not yet claimed by a consumer, by their
    /// states (exact when nobody is moving; a snapshot otherwise).
    pub fn len(&self) -> usize {
        (0..self.memory.capacity())
            .filter(|&index| {
                State::decode(self.memory.state(index).load(Acquire)).phase == Some(Phase::Ready)
            })
            .count()
    }

    /// Whether [`Ring::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The broker's flags now ([`CLOSED`], [`SOCKET`]).
    pub fn flags(&self) -> u64 {
        // Acquire: a client that sees a flag sees what the broker did before setting it.
        self.memory.flags().load(Acquire)
    }

    /// Sets `flags` (the broker's call). Once it returns, every push either is refused
    /// or was claimed before and shows in [`Ring::writing`] until it is published.
    pub fn set_flags(&self, flags: u64) {
        self.memory.flags().fetch_or(flags, AcqRel);
        // SeqCst fence: the mirror of the one in `push` (our flag, before; whoever then
        // looks at the slots, after).
        self.memory.fence();
    }

    /// Clears `flags` (the broker's call).
    pub fn clear_flags(&self, flags: u64) {
        self.memory.flags().fetch_and(!flags, AcqRel);
    }

    /// Claims the item at the head for `keeper` and reads it, leaving its slot taken
    /// (`READING`) until [`Ring::release`]: the broker's take, for an item it hands out
    /// over its socket and counts against the capacity until it leaves for good. Returns
    /// the slot, its lap and the item.
    pub fn take_held(&self, keeper: Owner) -> Option<(u64, u32, Vec<u8>)> {
        let (index, lap) = self.claim_item(keeper)?;
        Some((index, lap, self.memory.read(index)))
    }

    /// Frees slot `index` on lap `lap`, held since [`Ring::take_held`] or
    /// [`Ring::recover_held`] by `keeper`.
    pub fn release(&self, keeper: Owner, index: u64, lap: u32) {
        let held = State::word(lap, Phase::Reading, keeper.0);
        let free = State::word(lap.wrapping_add(1), Phase::Empty, 0);
        // Release: the payload was read before a producer, claiming with Acquire, reuses
        // the slot. (Only the keeper changes a held slot: the exchange fails only for
        // scribbled memory, which is then left alone.)
        let _ = self
            .memory
            .state(index)
            .compare_exchange(held, free, Release, Relaxed);
    }

    /// Slots being written now (claimed, not yet published or given up).
    pub fn writing(&self) -> usize {
        (0..self.memory.capacity())
            .filter(|&index| {
                State::decode(self.memory.state(index).load(Acquire)).phase == Some(Phase::Writing)
            })
            .count()
    }

    /// Whether `owner` has claimed an item it has not finished reading (what
    /// [`Ring::recover`] would give back if it died now).
    pub fn reading(&self, owner: Owner) -> bool {
        (0..self.memory.capacity()).any(|index| {
            let state = State::decode(self.memory.state(index).load(Acquire));
            state.phase == Some(Phase::Reading) && state.owner == owner.0
        })
    }

    /// Takes back what `dead` held: its unpublished claims are passed over, and the items
    /// it claimed but never handed to its caller are returned (see the module docs). To
    /// be called once `dead` can no longer run (its process is gone), by one process at a
    /// time; live producers and consumers may go on meanwhile.
    pub fn recover(&self, dead: Owner) -> Recovered {
        self.recover_with(dead, None)
    }

    /// As [`Ring::recover`], except that the slots of the items given back stay taken,
    /// now by `keeper`, until it [releases](Ring::release) them (their positions are in
    /// [`Recovered::held`]): the items then still count against the ring's capacity, as
    /// they would in the queue.
    pub fn recover_held(&self, dead: Owner, keeper: Owner) -> Recovered {
        self.recover_with(dead, Some(keeper))
    }

    fn recover_with(&self, dead: Owner, keeper: Option<Owner>) -> Recovered {
        let mut recovered = Recovered::default();
        let mut returned: Vec<(u64, Vec<u8>)> = Vec::new();
        let capacity = self.memory.capacity();
        for index in 0..capacity {
            let slot = self.memory.state(index);
            // Acquire: for a READING slot, pairs with the dead consumer's AcqRel claim,
            // which itself acquired the producer's payload.
            let word = slot.load(Acquire);
            let state = State::decode(word);
            if state.owner != dead.0 {
                continue;
            }
            match state.phase {
                Some(Phase::Writing) => {
                    let skip = State::word(state.lap, Phase::Skip, 0);
                    // Only recovery changes a dead owner's slot: the exchange cannot fail
                    // but for scribbled memory, which is then left alone.
                    if slot.compare_exchange(word, skip, AcqRel, Acquire).is_ok() {
                        recovered.skipped += 1;
                    }
                }
                Some(Phase::Reading) => {
                    let item = self.memory.read(index);
                    let next = match keeper {
                        Some(keeper) => State::word(state.lap, Phase::Reading, keeper.0),
                        None => State::word(state.lap.wrapping_add(1), Phase::Empty, 0),
                    };
                    // AcqRel: the payload read above is done before a producer reuses it.
                    if slot.compare_exchange(word, next, AcqRel, Acquire).is_ok() {
                        let position = u64::from(state.lap) * capacity + index;
                        returned.push((position, item));
                        if keeper.is_some() {
                            recovered.held.push((index, state.lap));
                        }
                    }
                }
                _ => {}
            }
        }
        returned.sort_by_key(|(position, _)| *position);
        recovered.returned = returned.into_iter().map(|(_, item)| item).collect();
        recovered
    }
}

#[cfg(test)]
mod tests;
