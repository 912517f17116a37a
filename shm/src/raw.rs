//! Every `unsafe` block of ipcq: reading and writing memory that other processes map too,
//! and the model-checked memory of the loom tests. Each block says why it is sound.
//!
//! Shared memory is written by processes that Rust cannot see. The ring's protocol (see
//! `ring`) gives each payload one writer at a time and orders it with the slot's state
//! word, so the copies here never overlap a write that the protocol allows; a process
//! that breaks the protocol (a bug, or memory it scribbled on) can garble the bytes of
//! the items it touches, never the memory of this process, since every access is bounds-
//! checked against the mapping first.
#![allow(unsafe_code)]

#[cfg(target_os = "linux")]
pub(crate) use mapping::Mapping;

#[cfg(target_os = "linux")]
mod mapping {
    use std::fs::File;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    /// A shared mapping of a whole file (the broker's memfd), never unmapped while this
    /// value lives.
    pub(crate) struct Mapping {
        map: memmap2::MmapRaw,
    }

    impl std::fmt::Debug for Mapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Mapping").field("len", &self.len()).finish()
        }
    }

    impl Mapping {
        /// Maps all `len` bytes of `file`, shared, for reading and writing. `file` must
        /// not shrink while mapped (the broker seals its memfd against it): pages past
        /// the end would fault.
        pub(crate) fn new(file: &File, len: usize) -> std::io::Result<Mapping> {
            let map = memmap2::MmapOptions::new().len(len).map_raw(file)?;
            Ok(Mapping { map })
        }

        pub(crate) fn len(&self) -> usize {
            self.map.len()
        }

        /// Panics unless `[offset, offset + size)` lies inside the mapping and `offset`
        /// is a multiple of `align`.
        fn check(&self, offset: usize, size: usize, align: usize) {
            let end = offset
                .checked_add(size)
                .expect("an offset inside the mapping");
            assert!(
                end <= self.len() && offset % align == 0,
                "{size} bytes at offset {offset} of a mapping of {}",
                self.len()
            );
        }

        /// The 64-bit atomic at `offset` (a multiple of 8).
        pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
            self.check(offset, 8, 8);
            // SAFETY: the 8 bytes are inside the mapping (checked) and 8-aligned (the
            // mapping is page-aligned, the offset checked); the mapping lives as long as
            // `self`, so the reference cannot outlive it. AtomicU64 has the layout of a
            // u64, every byte pattern is a valid one, and every process accesses these
            // bytes only through atomics, so no non-atomic access races with ours.
            unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU64>() }
        }

        /// The 32-bit atomic at `offset` (a multiple of 4).
        pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
            self.check(offset, 4, 4);
            // SAFETY: as in `u64_at`, for 4 bytes 4-aligned.
            unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU32>() }
        }

        /// Copies `bytes` to `offset`.
        pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
            self.check(offset, bytes.len(), 1);
            // SAFETY: the destination is inside the mapping (checked), which no
            // reference of this process covers (only raw pointers and the atomics above,
            // at other offsets), and cannot overlap `bytes`, which is memory of this
            // process. The protocol gives the caller these bytes alone (see the module
            // docs).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.map.as_mut_ptr().add(offset),
                    bytes.len(),
                );
            }
        }

        /// Copies `len` bytes from `offset`.
        pub(crate) fn read(&self, offset: usize, len: usize) -> Vec<u8> {
            self.check(offset, len, 1);
            let mut out = vec![0u8; len];
            // SAFETY: the source is inside the mapping (checked); `out` is a fresh buffer
            // of `len` bytes that cannot overlap it. As for `write`, the protocol gives
            // the caller these bytes alone while it reads.
            unsafe {
                std::ptr::copy_nonoverlapping(self.map.as_ptr().add(offset), out.as_mut_ptr(), len);
            }
            out
        }
    }
}

/// The ring's memory for the loom model checks: loom's atomics, and payloads in loom's
/// `UnsafeCell`, which fails the check if two threads touch one payload unordered.
#[cfg(test)]
pub(crate) mod model {
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicU64;

    use crate::ring::Memory;

    crate::ring::word_of!(AtomicU64);

    /// A slot's place in the vectors (indices are below the capacity, a `usize`).
    fn slot(index: u64) -> usize {
        usize::try_from(index).expect("a slot index")
    }

    /// Slots on the heap, checked by loom.
    pub(crate) struct ModelMemory {
        head: AtomicU64,
        tail: AtomicU64,
        flags: AtomicU64,
        states: Vec<AtomicU64>,
        payloads: Vec<UnsafeCell<Vec<u8>>>,
        slot_size: usize,
    }

    impl ModelMemory {
        pub(crate) fn new(capacity: usize, slot_size: usize) -> ModelMemory {
            ModelMemory {
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                flags: AtomicU64::new(0),
                states: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
                payloads: (0..capacity).map(|_| UnsafeCell::new(Vec::new())).collect(),
                slot_size,
            }
        }
    }

    impl Memory for ModelMemory {
        type Word = AtomicU64;

        fn capacity(&self) -> u64 {
            self.states.len() as u64
        }

        fn slot_size(&self) -> usize {
            self.slot_size
        }

        fn head(&self) -> &AtomicU64 {
            &self.head
        }

        fn tail(&self) -> &AtomicU64 {
            &self.tail
        }

        fn flags(&self) -> &AtomicU64 {
            &self.flags
        }

        fn state(&self, index: u64) -> &AtomicU64 {
            &self.states[slot(index)]
        }

        fn write(&self, index: u64, item: &[u8]) {
            self.payloads[slot(index)].with_mut(|payload| {
                // SAFETY: loom hands out this pointer for the duration of the closure and
                // checks that no other thread accesses the cell unordered with it (the
                // property under test); the Vec it points to is valid and owned by the
                // cell.
                unsafe { *payload = item.to_vec() }
            });
        }

        fn read(&self, index: u64) -> Vec<u8> {
            self.payloads[slot(index)].with(|payload| {
                // SAFETY: as in `write`, for a shared read.
                unsafe { (*payload).clone() }
            })
        }

        fn pause(&self) {
            loom::thread::yield_now();
        }

        fn fence(&self) {
            loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        }
    }
}
