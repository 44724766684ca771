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

use crate::protocol::hub_layout::{
    Entry, EntryState, HubControl, HubGeometry, ProducerId, CLOSE_ATTEMPTS, KIND_CLAIMED,
    KIND_CLOSED, KIND_FREE, KIND_PUBLISHED, MAX_HUB_PRODUCERS, TEXT_FIELDS, TEXT_WORDS,
};
use crate::sync::doorbell::Doorbell;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

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
