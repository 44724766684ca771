//! The worker hub's protocol over raw memory: one small shared area per
//! consumer worker through which any number of producer processes announce
//! new streams and mark streams ready, and one futex for the whole worker.
//!
//! No OS calls here (liveness and locks are the backing's business), so
//! loom and Miri run exactly this code on heap memory, and production runs
//! it on the mapped hub segment (`hub_segment.rs`).
//!
//! - **Entries**: one per stream. A producer claims a free entry with a CAS
//!   on its state word (`Free(g) -> Claimed(g + 1, me)`), writes the
//!   stream's identity into it, and publishes it with a Release store
//!   (`Published(g + 1, me)`). Only the consumer frees a published entry
//!   (`retire`). An entry claimed by a producer that died before it
//!   published is taken over by the next claimer (or freed by the
//!   consumer's sweep): the claim names the producer's slot and the epoch
//!   of its attachment, and a slot's liveness is a lock the kernel drops
//!   when the process dies.
//! - **Bitmaps**: `announce` (entry `i` was published) and `ready` (the
//!   stream of entry `i` committed, said done, or its producer left). A
//!   producer sets a bit with a Release `fetch_or` and rings the bell only
//!   when the bit was clear (a set bit is still to be taken, and whoever set
//!   it rang). The consumer takes a word with an Acquire `swap(0)`, so it
//!   visits only the words that changed: O(words + ready) per look.
//! - **Bell**: a [`Doorbell`]: the consumer announces itself, fences and
//!   re-checks the bitmaps before it sleeps; a producer fences after its
//!   `fetch_or` and wakes it if it sleeps.

use crate::protocol::layout::MAX_PREFIX_LEN;
use crate::protocol::layout::{Padded, MAX_NAME_LEN};
use crate::sync::doorbell::Doorbell;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// Fewest streams a hub holds (one bitmap word).
pub const MIN_HUB_ENTRIES: u32 = 64;
/// Most streams a hub holds.
pub const MAX_HUB_ENTRIES: u32 = 4096;
/// Streams a hub holds unless told otherwise.
pub const DEFAULT_HUB_ENTRIES: u32 = 1024;
/// Producer processes (attachments) a hub admits at once.
pub const MAX_HUB_PRODUCERS: usize = 64;

/// Bytes of one entry.
pub(crate) const ENTRY_BYTES: usize = 512;
/// Words of identity text in an entry.
pub(crate) const TEXT_WORDS: usize = 60;
/// Where the identity's four strings start in an entry's text and how long
/// each may be: the prefix, request_id, edge_name, from_partition.
const TEXT_FIELDS: [(usize, usize); 4] = [
    (0, MAX_PREFIX_LEN),
    (MAX_PREFIX_LEN, MAX_NAME_LEN),
    (MAX_PREFIX_LEN + MAX_NAME_LEN, MAX_NAME_LEN),
    (MAX_PREFIX_LEN + 2 * MAX_NAME_LEN, MAX_NAME_LEN),
];
const _: () = assert!(MAX_PREFIX_LEN + 3 * MAX_NAME_LEN <= TEXT_WORDS * 8);

/// Bytes of the hub's first page (header, then the control block).
pub(crate) const HUB_HEADER_BYTES: u64 = 4096;
/// Where the control block starts.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const HUB_CONTROL_OFFSET: u64 = 1024;
const ALIGN: u64 = 128;
/// Exchanges `close` tries on one entry word before it gives up: each
/// failure follows a change of the word by another party, and a correct
/// producer changes it at most twice (claim, publish).
const CLOSE_ATTEMPTS: u32 = 64;

const KIND_FREE: u64 = 0;
const KIND_CLAIMED: u64 = 1;
const KIND_PUBLISHED: u64 = 2;
const KIND_CLOSED: u64 = 3;

/// One producer attachment: its slot in the hub and the epoch of the
/// attachment that holds the slot (the slot is reused by later ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProducerId {
    /// `0 .. MAX_HUB_PRODUCERS`.
    pub(crate) slot: u8,
    /// The slot's epoch when this producer attached (low 16 bits).
    pub(crate) epoch: u16,
}

/// An entry's state word, decoded: `kind` (bits 0-7), producer slot
/// (8-15), producer epoch (16-31), generation (32-63). The generation grows
/// by one at every claim, so a stale view of an entry never matches a
/// later stream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryState {
    Free {
        gen: u32,
    },
    Claimed {
        gen: u32,
        by: ProducerId,
    },
    Published {
        gen: u32,
        by: ProducerId,
    },
    /// The worker's set went (`close`): nothing is claimed or published
    /// here any more.
    Closed {
        gen: u32,
    },
    /// A value no correct party writes.
    Invalid(u64),
}

impl EntryState {
    pub(crate) fn decode(word: u64) -> EntryState {
        let gen = (word >> 32) as u32;
        let by = ProducerId {
            slot: (word >> 8) as u8,
            epoch: (word >> 16) as u16,
        };
        match word & 0xff {
            KIND_FREE if word & 0xffff_ff00 == 0 => EntryState::Free { gen },
            KIND_CLAIMED if (by.slot as usize) < MAX_HUB_PRODUCERS => {
                EntryState::Claimed { gen, by }
            }
            KIND_PUBLISHED if (by.slot as usize) < MAX_HUB_PRODUCERS => {
                EntryState::Published { gen, by }
            }
            KIND_CLOSED if word & 0xffff_ff00 == 0 => EntryState::Closed { gen },
            _ => EntryState::Invalid(word),
        }
    }

    fn encode(kind: u64, gen: u32, by: ProducerId) -> u64 {
        kind | (by.slot as u64) << 8 | (by.epoch as u64) << 16 | (gen as u64) << 32
    }
}

/// Where the parts of a hub lie, from its number of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HubGeometry {
    /// A multiple of 64 in `MIN_HUB_ENTRIES ..= MAX_HUB_ENTRIES`.
    pub(crate) entries: u32,
    pub(crate) ready_offset: u64,
    pub(crate) announce_offset: u64,
    pub(crate) entries_offset: u64,
    pub(crate) total_bytes: u64,
}

impl HubGeometry {
    /// The layout of a hub of `entries` streams.
    ///
    /// # Errors
    ///
    /// A sentence naming the limits when `entries` is out of range.
    pub(crate) fn new(entries: u32) -> Result<HubGeometry, String> {
        if !(MIN_HUB_ENTRIES..=MAX_HUB_ENTRIES).contains(&entries) || entries % 64 != 0 {
            return Err(format!(
                "a hub holds {MIN_HUB_ENTRIES} to {MAX_HUB_ENTRIES} streams in multiples of 64, not {entries}"
            ));
        }
        let bitmap = (entries as u64 / 64 * 8).next_multiple_of(ALIGN);
        let ready_offset = HUB_HEADER_BYTES;
        let announce_offset = ready_offset + bitmap;
        let entries_offset = announce_offset + bitmap;
        let total_bytes =
            (entries_offset + entries as u64 * ENTRY_BYTES as u64).next_multiple_of(4096);
        Ok(HubGeometry {
            entries,
            ready_offset,
            announce_offset,
            entries_offset,
            total_bytes,
        })
    }

    pub(crate) fn words(&self) -> usize {
        self.entries as usize / 64
    }
}

/// A producer slot: its attachment epoch and its holder's pid (for
/// messages; liveness is the backing's lock).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ProducerSlot {
    /// Bumped by each attachment that takes the slot.
    pub(crate) epoch: AtomicU32,
    pub(crate) pid: AtomicU32,
}

/// The hub's control block: the worker's bell and the producer slots.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HubControl {
    /// The consumer sleeps here; producers ring.
    pub(crate) bell: Padded<Doorbell>,
    pub(crate) producers: [ProducerSlot; MAX_HUB_PRODUCERS],
}

impl HubControl {
    // Only heap hubs build these; segments start from zeroed memory.
    pub(crate) fn new() -> Self {
        HubControl {
            bell: Padded::new(Doorbell::new()),
            producers: std::array::from_fn(|_| ProducerSlot {
                epoch: AtomicU32::new(0),
                pid: AtomicU32::new(0),
            }),
        }
    }
}

/// One stream's entry. Every field is an atomic: other processes write it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Entry {
    /// An [`EntryState`], encoded.
    pub(crate) state: AtomicU64,
    /// The claimer's pid (for messages and `inspect`).
    pub(crate) pid: AtomicU32,
    /// Lengths of the identity's four strings (0 for an in-process stream,
    /// which is adopted through its own table and needs no text).
    pub(crate) lens: [AtomicU32; 4],
    pub(crate) _pad: AtomicU32,
    /// The strings, at the offsets of `TEXT_FIELDS`, little-endian packed.
    pub(crate) text: [AtomicU64; TEXT_WORDS],
}

impl Entry {
    pub(crate) fn new() -> Self {
        Entry {
            state: AtomicU64::new(0),
            pid: AtomicU32::new(0),
            lens: std::array::from_fn(|_| AtomicU32::new(0)),
            _pad: AtomicU32::new(0),
            text: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Entry>() == ENTRY_BYTES);
    assert!(offset_of!(Entry, state) == 0);
    assert!(offset_of!(Entry, pid) == 8);
    assert!(offset_of!(Entry, lens) == 12);
    assert!(offset_of!(Entry, text) == 32);
    assert!(offset_of!(HubControl, bell) == 0);
    assert!(offset_of!(HubControl, producers) == 128);
    assert!(size_of::<ProducerSlot>() == 8);
    assert!(HUB_CONTROL_OFFSET as usize + size_of::<HubControl>() <= HUB_HEADER_BYTES as usize);
};

/// What holds a hub's memory and keeps the producer slots' locks.
pub(crate) trait HubBacking: Send + Sync + fmt::Debug {
    /// The hub's name, for messages.
    fn name(&self) -> &str;
    /// Takes the lock of producer slot `slot` for this attachment; false
    /// when someone holds it.
    fn try_lock_slot(&self, slot: usize) -> bool;
    /// Gives the lock back.
    fn unlock_slot(&self, slot: usize);
    /// Whether *another* attachment holds the lock of `slot` (a live
    /// process; the kernel drops the lock when it dies).
    fn slot_locked(&self, slot: usize) -> bool;
    /// Whether the worker that owns the hub is alive.
    fn owner_alive(&self) -> bool;
}

/// Which bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bitmap {
    Ready,
    Announce,
}

/// Where the shared parts of one hub are, in this process.
pub(crate) struct HubMem {
    control: NonNull<HubControl>,
    ready: NonNull<AtomicU64>,
    announce: NonNull<AtomicU64>,
    entries: NonNull<Entry>,
    geometry: HubGeometry,
    backing: Box<dyn HubBacking>,
}

// SAFETY: the pointers point into memory that `backing` owns (a mapping or
// heap blocks) and that lives as long as this value; every shared field
// behind them is an atomic.
unsafe impl Send for HubMem {}
// SAFETY: as above; `&HubMem` gives only atomic access to shared memory.
unsafe impl Sync for HubMem {}

impl fmt::Debug for HubMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubMem")
            .field("name", &self.backing.name())
            .field("entries", &self.geometry.entries)
            .finish()
    }
}

impl HubMem {
    /// # Safety
    ///
    /// `control` points at a `HubControl`, `ready` and `announce` at
    /// `geometry.words()` atomics each, `entries` at `geometry.entries`
    /// entries, all valid for reads and writes as long as `backing` lives.
    pub(crate) unsafe fn new(
        control: NonNull<HubControl>,
        ready: NonNull<AtomicU64>,
        announce: NonNull<AtomicU64>,
        entries: NonNull<Entry>,
        geometry: HubGeometry,
        backing: Box<dyn HubBacking>,
    ) -> HubMem {
        HubMem {
            control,
            ready,
            announce,
            entries,
            geometry,
            backing,
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.backing.name()
    }

    pub(crate) fn entries(&self) -> u32 {
        self.geometry.entries
    }

    pub(crate) fn words(&self) -> usize {
        self.geometry.words()
    }

    fn control(&self) -> &HubControl {
        // SAFETY: valid while `backing` lives (constructor contract).
        unsafe { self.control.as_ref() }
    }

    pub(crate) fn bell(&self) -> &Doorbell {
        &self.control().bell
    }

    fn word(&self, bitmap: Bitmap, w: usize) -> &AtomicU64 {
        let base = match bitmap {
            Bitmap::Ready => self.ready,
            Bitmap::Announce => self.announce,
        };
        assert!(w < self.words(), "bitmap word {w} out of range");
        // SAFETY: `w < words` and each bitmap holds `words` atomics.
        unsafe { &*base.as_ptr().add(w) }
    }

    pub(crate) fn entry(&self, i: u32) -> &Entry {
        assert!(i < self.geometry.entries, "hub entry {i} out of range");
        // SAFETY: `i < entries` and the table holds `entries` entries.
        unsafe { &*self.entries.as_ptr().add(i as usize) }
    }

    /// Takes a free producer slot for a new attachment, records `pid`,
    /// and returns the attachment's identity; `None` when every slot is
    /// held.
    pub(crate) fn attach_producer(&self, pid: u32) -> Option<ProducerId> {
        (0..MAX_HUB_PRODUCERS).find_map(|slot| {
            if !self.backing.try_lock_slot(slot) {
                return None;
            }
            let p = &self.control().producers[slot];
            // AcqRel: pairs with the Acquire load in `producer_alive`: a
            // checker that sees the new epoch sees the slot as ours.
            let epoch = p.epoch.fetch_add(1, Ordering::AcqRel).wrapping_add(1) as u16;
            p.pid.store(pid, Ordering::Relaxed);
            Some(ProducerId {
                slot: slot as u8,
                epoch,
            })
        })
    }

    /// Whether the worker that owns the hub is alive.
    pub(crate) fn owner_alive(&self) -> bool {
        self.backing.owner_alive()
    }

    /// Gives a producer slot back.
    pub(crate) fn detach_producer(&self, id: ProducerId) {
        self.backing.unlock_slot(id.slot as usize);
    }

    /// Whether the attachment `by` is alive: its slot still carries its
    /// epoch and someone holds the slot's lock. Not meaningful for the
    /// caller's own attachment (its own lock is not "another's").
    pub(crate) fn producer_alive(&self, by: ProducerId) -> bool {
        let slot = by.slot as usize;
        if slot >= MAX_HUB_PRODUCERS {
            return false;
        }
        // Acquire: pairs with the AcqRel bump in `attach_producer`.
        let epoch = self.control().producers[slot].epoch.load(Ordering::Acquire) as u16;
        epoch == by.epoch && self.backing.slot_locked(slot)
    }

    /// The pid recorded in producer slot `slot` when another process
    /// (or description) holds the slot's lock; `None` for a free slot.
    #[cfg_attr(loom, allow(dead_code))] // tools only
    pub(crate) fn slot_holder(&self, slot: usize) -> Option<u32> {
        let p = self.control().producers.get(slot)?;
        self.backing
            .slot_locked(slot)
            .then(|| p.pid.load(Ordering::Relaxed))
    }

    /// Claims an entry for `me`, starting the search at `start`: a free
    /// one, or one claimed by an attachment that died before it published.
    /// Returns the entry and its new generation; `None` when the hub is
    /// full, or closing (an entry is `Closed`). Lock-free: a lost CAS moves
    /// on to the next entry.
    #[cfg_attr(not(any(test, loom)), allow(dead_code))] // tests and the loom facade
    pub(crate) fn claim(&self, me: ProducerId, start: u32) -> Option<(u32, u32)> {
        self.claim_reporting(me, start, |_| {})
    }

    /// As [`claim`](Self::claim); when the entry taken was claimed by a
    /// producer that died before publishing, calls `stale` with the
    /// identity that producer wrote (it may have created the segment
    /// already: the caller removes it if its producer is dead).
    pub(crate) fn claim_reporting(
        &self,
        me: ProducerId,
        start: u32,
        mut stale: impl FnMut([String; 4]),
    ) -> Option<(u32, u32)> {
        let n = self.geometry.entries;
        for k in 0..n {
            let i = start.wrapping_add(k) % n;
            let state = &self.entry(i).state;
            let seen = state.load(Ordering::Relaxed);
            let mut dead_claim = false;
            let gen = match EntryState::decode(seen) {
                EntryState::Free { gen } => gen,
                // A claim never published, by a producer that is gone: the
                // kernel dropped its slot's lock, or the slot was taken by
                // a later attachment. Our own claims are never stale (this
                // attachment is alive; another thread of ours may be
                // between its claim and its publish).
                EntryState::Claimed { gen, by } if by != me && !self.producer_alive(by) => {
                    dead_claim = true;
                    gen
                }
                // The worker's set is going (it closes every entry): no
                // entry will be adopted any more, stop looking.
                EntryState::Closed { .. } => return None,
                _ => continue,
            };
            let gen = gen.wrapping_add(1);
            let mine = EntryState::encode(KIND_CLAIMED, gen, me);
            // Read before the CAS: once it succeeds nobody wrote the text
            // since our look (a dead producer writes nothing, and another
            // taker's CAS would have made ours fail).
            let before = if dead_claim {
                self.identity(i).ok().flatten()
            } else {
                None
            };
            // Acquire on success: pairs with the Release of `retire` (and
            // of a reclaimed claim's writes): the previous user's accesses
            // to the entry happen before ours.
            match state.compare_exchange(seen, mine, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    if let Some(identity) = before {
                        stale(identity);
                    }
                    return Some((i, gen));
                }
                // Our look was stale: the set closed it meanwhile.
                Err(now) if matches!(EntryState::decode(now), EntryState::Closed { .. }) => {
                    return None
                }
                Err(_) => {}
            }
        }
        None
    }

    /// Gives back an entry claimed and not published (the stream could
    /// not be created).
    #[cfg_attr(loom, allow(dead_code))] // segments only
    pub(crate) fn unclaim(&self, entry: u32, gen: u32, me: ProducerId) {
        // A failure leaves an entry the set closed meanwhile: nothing to do.
        let _ = self.entry(entry).state.compare_exchange(
            EntryState::encode(KIND_CLAIMED, gen, me),
            EntryState::encode(KIND_FREE, gen, ProducerId { slot: 0, epoch: 0 }),
            // Release: pairs with the Acquire of the next `claim`.
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Writes the identity of the stream into a claimed entry: the segment
    /// prefix and the three names (each checked by the caller against
    /// `MAX_PREFIX_LEN` and `MAX_NAME_LEN`).
    #[cfg_attr(loom, allow(dead_code))] // segments only
    pub(crate) fn write_identity(&self, entry: u32, texts: [&str; 4]) {
        let e = self.entry(entry);
        let mut bytes = [0u8; TEXT_WORDS * 8];
        for (i, (text, (at, max))) in texts.iter().zip(TEXT_FIELDS).enumerate() {
            let len = text.len().min(max);
            bytes[at..at + len].copy_from_slice(&text.as_bytes()[..len]);
            e.lens[i].store(len as u32, Ordering::Relaxed);
        }
        for (w, chunk) in bytes.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            e.text[w].store(word, Ordering::Relaxed);
        }
    }

    /// Marks an in-process entry as carrying no text.
    pub(crate) fn clear_identity(&self, entry: u32) {
        for len in &self.entry(entry).lens {
            len.store(0, Ordering::Relaxed);
        }
    }

    /// Publishes a claimed entry and announces it to the consumer; false
    /// when the worker closed the entry first (its set went): the caller
    /// then removes the stream itself. A CAS from our claim, not a store,
    /// so a publication and the worker's `close` are decided by one word:
    /// either the closing set sees the entry published (and decides the
    /// stream's fate), or the producer sees it closed.
    pub(crate) fn publish(&self, entry: u32, gen: u32, me: ProducerId, pid: u32) -> bool {
        let e = self.entry(entry);
        e.pid.store(pid, Ordering::Relaxed);
        // Release: pairs with the consumer's Acquire load in `state` (and
        // with `close`'s Acquire): the identity written above is visible
        // to a consumer that sees the entry published.
        let published = e
            .state
            .compare_exchange(
                EntryState::encode(KIND_CLAIMED, gen, me),
                EntryState::encode(KIND_PUBLISHED, gen, me),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok();
        if published {
            self.set_bit(Bitmap::Announce, entry);
        }
        published
    }

    /// The worker's set goes: closes entry `i` for good (no claim or
    /// publication succeeds on it after this) and returns what it held.
    /// A stream it held `Published` and not adopted is the set's to
    /// settle (`handover.rs`); one still `Claimed` will fail its `publish`
    /// and its producer removes it. Gives up on a word that keeps changing
    /// under it (only a hostile writer does that) and reports it `Invalid`.
    pub(crate) fn close(&self, i: u32) -> EntryState {
        let state = &self.entry(i).state;
        let mut seen = state.load(Ordering::Relaxed);
        for _ in 0..CLOSE_ATTEMPTS {
            let before = EntryState::decode(seen);
            let gen = match before {
                EntryState::Closed { .. } => return before,
                EntryState::Free { gen }
                | EntryState::Claimed { gen, .. }
                | EntryState::Published { gen, .. } => gen,
                EntryState::Invalid(_) => 0,
            };
            let closed = EntryState::encode(KIND_CLOSED, gen, ProducerId { slot: 0, epoch: 0 });
            // Acquire: pairs with the Release of `publish`: the identity
            // of an entry we close published is visible.
            match state.compare_exchange(seen, closed, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return before,
                Err(now) => seen = now,
            }
        }
        EntryState::Invalid(seen)
    }

    /// Whether the worker's set went (it closes entry 0 first).
    pub(crate) fn closed(&self) -> bool {
        matches!(self.state(0), EntryState::Closed { .. })
    }

    /// Sets bit `entry` of `bitmap` and wakes the consumer if it sleeps.
    pub(crate) fn set_bit(&self, bitmap: Bitmap, entry: u32) {
        let word = self.word(bitmap, entry as usize / 64);
        let bit = 1u64 << (entry % 64);
        // Release: pairs with the consumer's Acquire `swap` in `take`:
        // everything published before (a commit's `seq`, an entry's state)
        // is visible to the consumer that takes the bit, also when a later
        // producer's `fetch_or` set it again (an RMW continues the release
        // sequence).
        let old = word.fetch_or(bit, Ordering::Release);
        if old & bit == 0 {
            // The bit was clear: ours is the event the consumer has not
            // seen, so we do the handshake (fence, look for a sleeper). A
            // set bit is still to be taken, and its setter did it.
            self.bell().ring();
        }
    }

    /// Takes (clears) every set bit of `bitmap`, visiting the words from
    /// `start_word` on and wrapping, and calls `f` with each entry.
    /// O(words + bits set).
    pub(crate) fn take(&self, bitmap: Bitmap, start_word: usize, mut f: impl FnMut(u32)) {
        let words = self.words();
        for k in 0..words {
            let w = (start_word + k) % words;
            let word = self.word(bitmap, w);
            // A look first: an idle word's line stays shared instead of
            // being taken for a swap. A bit missed here is seen by the
            // re-check before sleeping (`any_pending`, after the fence).
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = take_word(word);
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                f((w * 64) as u32 + b);
            }
        }
    }

    /// Whether any bit of either bitmap is set (the sleeper's re-check,
    /// after the doorbell's fence).
    pub(crate) fn any_pending(&self) -> bool {
        (0..self.words()).any(|w| {
            self.word(Bitmap::Ready, w).load(Ordering::Relaxed) != 0
                || self.word(Bitmap::Announce, w).load(Ordering::Relaxed) != 0
        })
    }

    /// The state of entry `i`.
    pub(crate) fn state(&self, i: u32) -> EntryState {
        // Acquire: pairs with the Release store in `publish`.
        EntryState::decode(self.entry(i).state.load(Ordering::Acquire))
    }

    /// The identity text of entry `i` (prefix, request_id, edge_name,
    /// from_partition), each length checked against its limit and each
    /// string checked to be UTF-8; `Ok(None)` for an entry without text.
    ///
    /// # Errors
    ///
    /// A sentence naming the bad field.
    pub(crate) fn identity(&self, i: u32) -> Result<Option<[String; 4]>, String> {
        let e = self.entry(i);
        let lens: [usize; 4] = std::array::from_fn(|k| e.lens[k].load(Ordering::Relaxed) as usize);
        if lens == [0; 4] {
            return Ok(None);
        }
        let mut bytes = [0u8; TEXT_WORDS * 8];
        for (w, chunk) in bytes.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&e.text[w].load(Ordering::Relaxed).to_le_bytes());
        }
        const FIELDS: [&str; 4] = ["prefix", "request_id", "edge_name", "from_partition"];
        let mut out: [String; 4] = Default::default();
        for k in 0..4 {
            let (at, max) = TEXT_FIELDS[k];
            if lens[k] > max {
                return Err(format!(
                    "hub entry {i}: {} length {} exceeds the limit of {max}",
                    FIELDS[k], lens[k]
                ));
            }
            out[k] = std::str::from_utf8(&bytes[at..at + lens[k]])
                .map_err(|_| format!("hub entry {i}: {} is not UTF-8", FIELDS[k]))?
                .to_string();
        }
        Ok(Some(out))
    }

    /// The consumer gives entry `i` back once it removed its stream. Only
    /// the published state it adopted is freed; anything else is left.
    pub(crate) fn retire(&self, i: u32, gen: u32, by: ProducerId) -> bool {
        self.entry(i)
            .state
            .compare_exchange(
                EntryState::encode(KIND_PUBLISHED, gen, by),
                EntryState::encode(KIND_FREE, gen, ProducerId { slot: 0, epoch: 0 }),
                // Release: pairs with the Acquire of the next `claim`.
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The consumer frees every entry claimed by an attachment that died
    /// before publishing, and calls `stale` with the identity each such
    /// producer wrote (it may have created the segment: the caller removes
    /// it if its producer is dead). O(entries), one liveness test per
    /// claimed entry; returns how many it freed.
    pub(crate) fn sweep_dead_claims(&self, mut stale: impl FnMut([String; 4])) -> usize {
        (0..self.geometry.entries)
            .filter(|&i| {
                let state = &self.entry(i).state;
                let seen = state.load(Ordering::Relaxed);
                let EntryState::Claimed { gen, by } = EntryState::decode(seen) else {
                    return false;
                };
                if self.producer_alive(by) {
                    return false;
                }
                // Read before the CAS, as in `claim_reporting`.
                let before = self.identity(i).ok().flatten();
                let freed = state
                    .compare_exchange(
                        seen,
                        EntryState::encode(KIND_FREE, gen, ProducerId { slot: 0, epoch: 0 }),
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok();
                if let (true, Some(identity)) = (freed, before) {
                    stale(identity);
                }
                freed
            })
            .count()
    }
}

/// The consumer's take of one bitmap word. `--cfg shmstream_weaken=
/// "hub_take_acquire"` makes it Relaxed to show the loom model catching
/// it (the consumer then polls a stream without seeing the commit that set
/// the bit, clears the bit and sleeps for ever).
#[inline]
fn take_word(word: &AtomicU64) -> u64 {
    // Acquire: pairs with the Release `fetch_or` of `set_bit`.
    #[cfg(not(shmstream_weaken = "hub_take_acquire"))]
    return word.swap(0, Ordering::Acquire);
    #[cfg(shmstream_weaken = "hub_take_acquire")]
    return word.swap(0, Ordering::Relaxed);
}

/// One producer attachment to a hub: its slot, held until the last stream
/// created through it is gone.
#[derive(Debug)]
pub(crate) struct Attachment {
    pub(crate) hub: Arc<HubMem>,
    pub(crate) id: ProducerId,
    /// Where the next claim starts looking (claims spread over the table).
    cursor: AtomicU32,
}

impl Attachment {
    pub(crate) fn new(hub: Arc<HubMem>, id: ProducerId) -> Attachment {
        let start = (id.slot as u32).wrapping_mul(hub.entries() / 8);
        Attachment {
            hub,
            id,
            cursor: AtomicU32::new(start),
        }
    }

    /// Claims an entry for this attachment (`stale`: as in
    /// [`HubMem::claim_reporting`]).
    pub(crate) fn claim(&self, stale: impl FnMut([String; 4])) -> Option<(u32, u32)> {
        let start = self.cursor.load(Ordering::Relaxed);
        let claimed = self.hub.claim_reporting(self.id, start, stale)?;
        self.cursor
            .store(claimed.0.wrapping_add(1), Ordering::Relaxed);
        Some(claimed)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.hub.detach_producer(self.id);
    }
}

/// A hub on the heap: for streams within one process, and what loom and
/// Miri run. Producer-slot locks are flags here (a thread cannot die alone).
#[derive(Debug)]
struct HeapHub {
    control: NonNull<HubControl>,
    ready: NonNull<[AtomicU64]>,
    announce: NonNull<[AtomicU64]>,
    entries: NonNull<[Entry]>,
    locks: Box<[AtomicU32]>,
}

// SAFETY: the backing owns its allocations and touches them only to free
// them in `drop`, when the last `HubMem` is gone.
unsafe impl Send for HeapHub {}
// SAFETY: as above; `&HeapHub` reaches only the lock flags, atomics.
unsafe impl Sync for HeapHub {}

impl HubBacking for HeapHub {
    fn name(&self) -> &str {
        "(in-process hub)"
    }

    fn try_lock_slot(&self, slot: usize) -> bool {
        self.locks[slot]
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn unlock_slot(&self, slot: usize) {
        self.locks[slot].store(0, Ordering::Release);
    }

    fn slot_locked(&self, slot: usize) -> bool {
        self.locks[slot].load(Ordering::Acquire) != 0
    }

    fn owner_alive(&self) -> bool {
        true
    }
}

impl Drop for HeapHub {
    fn drop(&mut self) {
        // SAFETY: these came from `Box::leak` in `heap_hub` and are freed
        // once, here, when the `HubMem` holding this backing goes.
        unsafe {
            drop(Box::from_raw(self.control.as_ptr()));
            drop(Box::from_raw(self.ready.as_ptr()));
            drop(Box::from_raw(self.announce.as_ptr()));
            drop(Box::from_raw(self.entries.as_ptr()));
        }
    }
}

/// A hub of `entries` streams on the heap.
///
/// # Errors
///
/// As [`HubGeometry::new`].
pub(crate) fn heap_hub(entries: u32) -> Result<HubMem, String> {
    let geometry = HubGeometry::new(entries)?;
    let words = geometry.words();
    let bitmap = || -> NonNull<[AtomicU64]> {
        NonNull::from(Box::leak(
            (0..words).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>(),
        ))
    };
    let control = NonNull::from(Box::leak(Box::new(HubControl::new())));
    let ready = bitmap();
    let announce = bitmap();
    let table: Box<[Entry]> = (0..entries).map(|_| Entry::new()).collect();
    let entries = NonNull::from(Box::leak(table));
    let backing = Box::new(HeapHub {
        control,
        ready,
        announce,
        entries,
        locks: (0..MAX_HUB_PRODUCERS).map(|_| AtomicU32::new(0)).collect(),
    });
    // SAFETY: the allocations above hold a control block, `words` atomics
    // per bitmap and `entries` entries; `backing` owns them and the
    // `HubMem` owns `backing`.
    Ok(unsafe {
        HubMem::new(
            control,
            ready.cast(),
            announce.cast(),
            entries.cast(),
            geometry,
            backing,
        )
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn hub() -> Arc<HubMem> {
        Arc::new(heap_hub(64).unwrap())
    }

    #[test]
    fn a_claim_left_by_a_dead_producer_is_taken_over_by_the_next_claimer() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (entry, gen) = hub.claim(a, 0).unwrap();
        // Alive: the entry stays a's, also for the consumer's sweep.
        let b = hub.attach_producer(2).unwrap();
        assert_ne!(hub.claim(b, entry).unwrap().0, entry);
        assert_eq!(hub.sweep_dead_claims(|_| {}), 0);
        // `a` dies between claim and publish: its slot's lock goes.
        hub.detach_producer(a);
        let (taken, gen2) = hub.claim(b, entry).unwrap();
        assert_eq!((taken, gen2), (entry, gen + 1));
        hub.publish(taken, gen2, b, 2);
        assert_eq!(hub.state(entry), EntryState::Published { gen: gen2, by: b });
    }

    #[test]
    fn a_dead_producers_claim_reports_the_identity_it_wrote_to_whoever_frees_it() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (taken, _) = hub.claim(a, 3).unwrap();
        hub.write_identity(taken, ["pre-", "r1", "e", "p"]);
        let (swept, _) = hub.claim(a, 9).unwrap();
        hub.write_identity(swept, ["pre-", "r2", "e", "p"]);
        let (fresh, _) = hub.claim(a, 20).unwrap();
        hub.clear_identity(fresh);
        hub.detach_producer(a);
        let b = hub.attach_producer(2).unwrap();
        let mut stale = vec![];
        assert_eq!(
            hub.claim_reporting(b, 3, |id| stale.push(id[1].clone())),
            Some((taken, 2))
        );
        assert_eq!(stale, ["r1"]);
        let mut swept_ids = vec![];
        assert_eq!(hub.sweep_dead_claims(|id| swept_ids.push(id[1].clone())), 2);
        assert_eq!(swept_ids, ["r2"], "an entry without text reports nothing");
        assert_eq!(hub.sweep_dead_claims(|_| panic!("swept already")), 0);
    }

    #[test]
    fn a_later_attachment_in_the_same_slot_makes_the_old_claim_stale() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (entry, _) = hub.claim(a, 7).unwrap();
        hub.detach_producer(a);
        let a2 = hub.attach_producer(3).unwrap();
        assert_eq!(a2.slot, a.slot, "the slot is reused");
        assert_ne!(a2.epoch, a.epoch);
        assert!(!hub.producer_alive(a), "the old epoch is dead");
        assert_eq!(hub.sweep_dead_claims(|_| {}), 1);
        assert!(matches!(hub.state(entry), EntryState::Free { .. }));
    }

    #[test]
    fn a_producers_own_claim_in_flight_is_never_taken_from_it() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (first, _) = hub.claim(a, 0).unwrap();
        // Another thread of the same attachment claims meanwhile: the
        // heap backing reports no other holder, as an OFD lock test from
        // one's own description would not.
        let (second, _) = hub.claim(a, first).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn a_full_hub_has_no_entry_to_claim_and_a_retired_one_frees_one() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let claims: Vec<_> = (0..64).map(|_| hub.claim(a, 0).unwrap()).collect();
        assert!(hub.claim(a, 0).is_none());
        let (entry, gen) = claims[10];
        hub.publish(entry, gen, a, 1);
        let mut announced = vec![];
        hub.take(Bitmap::Announce, 0, |e| announced.push(e));
        assert_eq!(announced, [entry]);
        assert!(
            !hub.retire(entry, gen + 1, a),
            "only the adopted generation"
        );
        assert!(hub.retire(entry, gen, a));
        assert_eq!(hub.claim(a, 0), Some((entry, gen + 1)));
    }

    #[test]
    fn bits_are_taken_once_from_a_rotating_start() {
        let hub = Arc::new(heap_hub(192).unwrap());
        for e in [3, 70, 130, 191] {
            hub.set_bit(Bitmap::Ready, e);
            hub.set_bit(Bitmap::Ready, e);
        }
        assert!(hub.any_pending());
        let mut seen = vec![];
        hub.take(Bitmap::Ready, 1, |e| seen.push(e));
        assert_eq!(seen, [70, 130, 191, 3]);
        assert!(!hub.any_pending());
        hub.take(Bitmap::Ready, 0, |_| panic!("taken already"));
    }

    #[test]
    fn identities_round_trip_and_bad_lengths_name_their_limit() {
        let hub = hub();
        hub.write_identity(5, ["pre-", "req", "edge", "part"]);
        assert_eq!(
            hub.identity(5).unwrap().unwrap(),
            ["pre-", "req", "edge", "part"].map(String::from)
        );
        hub.clear_identity(5);
        assert_eq!(hub.identity(5).unwrap(), None);
        hub.entry(6).lens[2].store(121, Ordering::Relaxed);
        let err = hub.identity(6).unwrap_err();
        assert!(
            err.contains("edge_name length 121 exceeds the limit of 120"),
            "{err}"
        );
        hub.write_identity(7, ["p", "r", "e", "f"]);
        hub.entry(7).text[0].store(u64::MAX, Ordering::Relaxed);
        assert!(hub.identity(7).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn a_closed_entry_refuses_claims_and_publications_and_says_what_it_held() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (published, gen) = hub.claim(a, 5).unwrap();
        assert!(hub.publish(published, gen, a, 1));
        let (claimed, gen2) = hub.claim(a, 5).unwrap();
        assert_eq!(hub.close(published), EntryState::Published { gen, by: a });
        assert_eq!(hub.close(claimed), EntryState::Claimed { gen: gen2, by: a });
        assert!(!hub.publish(claimed, gen2, a, 1), "closed under its claim");
        assert!(!hub.closed(), "entry 0 is still open");
        for i in 0..64 {
            hub.close(i);
        }
        assert!(hub.closed());
        assert_eq!(hub.claim(a, 0), None);
        // A claimer stops at the first closed entry it meets.
        let hub2 = super::tests::hub();
        let b = hub2.attach_producer(1).unwrap();
        hub2.close(7);
        assert_eq!(hub2.claim(b, 7), None, "not entry 8");
        assert_eq!(hub2.claim(b, 6), Some((6, 1)));
        assert!(matches!(hub.close(3), EntryState::Closed { .. }));
        assert!(!hub.retire(published, gen, a));
    }

    #[test]
    fn state_words_decode_or_are_invalid() {
        let by = ProducerId { slot: 63, epoch: 9 };
        for (kind, state) in [
            (KIND_CLAIMED, EntryState::Claimed { gen: 4, by }),
            (KIND_PUBLISHED, EntryState::Published { gen: 4, by }),
        ] {
            assert_eq!(EntryState::decode(EntryState::encode(kind, 4, by)), state);
        }
        let bad_slot = EntryState::encode(KIND_PUBLISHED, 1, ProducerId { slot: 64, epoch: 0 });
        assert!(matches!(
            EntryState::decode(bad_slot),
            EntryState::Invalid(_)
        ));
        assert!(matches!(EntryState::decode(7), EntryState::Invalid(7)));
        assert!(matches!(EntryState::decode(0x100), EntryState::Invalid(_)));
    }
}
