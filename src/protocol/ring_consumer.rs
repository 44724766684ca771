//! The consumer's side of the ring: walk the available prefix, read items
//! in place, release slots, wait for data.

use crate::error::StreamError;
use crate::protocol::descriptor::{Bounds, ItemId, ItemMeta};
use crate::protocol::layout::{
    FLAG_CONSUMER_ATTACHED, FLAG_CONSUMER_GONE, FLAG_DONE, FLAG_KNOWN, FLAG_PRODUCER_GONE,
    STATUS_ABANDONED,
};
use crate::protocol::reason;
use crate::protocol::ring::{RingMem, Side};
use crate::protocol::wait::{wait_for, Waited};
use crate::sync::Ordering;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::time::Duration;

/// A snapshot of the stream's counters as the consumer sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Items of the available prefix past the consumer's position.
    pub(crate) available: u64,
    /// `done` was seen and every registered item is in the prefix.
    pub(crate) all_in: bool,
}

/// The consumer's side: walks the available prefix and releases slots.
#[derive(Debug)]
pub(crate) struct ConsumerRing {
    mem: RingMem,
    cur: Cursors,
    /// No release reaches past this position: the oldest position a leased
    /// chunk still shows (`u64::MAX` when none; see `lease.rs`); never
    /// below `released`, since a lease starts at or after `consumed`.
    hold: u64,
    /// The error of the first id read from the side table that failed its
    /// checks: every later poll reports it (the stream is corrupt), while
    /// the view that asked shows an empty id.
    bad_id: RefCell<Option<String>>,
}

/// The consumer's private cursors, apart from the memory so that a wait can
/// borrow the bell and the cursors at once.
#[derive(Debug)]
pub(crate) struct Cursors {
    /// First position still in the buffer (not yet advanced past).
    consumed: u64,
    /// First position not known to be complete: the prefix is
    /// `consumed..avail_end`. At most `released + capacity`.
    avail_end: u64,
    /// Last `registered` we loaded, to check it never goes backwards.
    cached_registered: u64,
    /// What we last published as `released` (at most `consumed`).
    released: u64,
    /// End of the reservation of position `avail_end - 1` (0 before any):
    /// the next position's reservation starts at or after it.
    walk_end: u64,
    /// Validated copies of the descriptors of the prefix, by slot.
    metas: Box<[ItemMeta]>,
    /// By slot: how many consecutive items ending at that position share
    /// dtype and shape and lie at one constant distance from each other
    /// (saturating).
    runs: Box<[u32]>,
    /// By slot: that distance, the stacked view's row stride (meaningful
    /// for runs longer than one).
    strides: Box<[u64]>,
    /// By slot: the id of the position last asked for there, read from
    /// the side table and checked. The walk never touches it (a store per
    /// item into a cold array costs a cache miss per item): the tag says
    /// which position the copy belongs to.
    ids: Box<[IdCache]>,
}

/// A slot's cached id. Only `ConsumerRing::id` touches it (through `&`).
#[derive(Debug, Default)]
pub(crate) struct IdCache {
    /// Position + 1 whose checked id `id` holds; 0: none.
    tag: Cell<u64>,
    /// Written only while `tag` names another position (see `id`).
    id: UnsafeCell<ItemId>,
}

impl ConsumerRing {
    pub(crate) fn new(mem: RingMem) -> Self {
        let capacity = mem.capacity as usize;
        let metas = vec![ItemMeta::EMPTY; capacity].into_boxed_slice();
        mem.set_flag(FLAG_CONSUMER_ATTACHED);
        ConsumerRing {
            mem,
            cur: Cursors {
                consumed: 0,
                avail_end: 0,
                cached_registered: 0,
                released: 0,
                walk_end: 0,
                metas,
                runs: vec![0; capacity].into_boxed_slice(),
                strides: vec![0; capacity].into_boxed_slice(),
                ids: (0..capacity).map(|_| IdCache::default()).collect(),
            },
            hold: u64::MAX,
            bad_id: RefCell::new(None),
        }
    }

    /// A ring whose first position is `start` (see
    /// `ProducerRing::starting_at`).
    pub(crate) fn starting_at(mem: RingMem, start: u64) -> Self {
        let mut ring = ConsumerRing::new(mem);
        ring.cur.consumed = start;
        ring.cur.avail_end = start;
        ring.cur.cached_registered = start;
        ring.cur.released = start;
        ring
    }

    /// Sets the position no release may pass (`u64::MAX`: none), for the
    /// leased chunks of `lease.rs`.
    pub(crate) fn set_hold(&mut self, hold: u64) {
        debug_assert!(hold >= self.cur.released, "a hold below what is released");
        self.hold = hold;
    }

    pub(crate) fn mem(&self) -> &RingMem {
        &self.mem
    }

    pub(crate) fn consumed(&self) -> u64 {
        self.cur.consumed
    }

    pub(crate) fn available(&self) -> u64 {
        self.cur.avail_end - self.cur.consumed
    }

    /// Extends the available prefix over every position whose completion is
    /// published, and returns the snapshot. Checks every value it reads.
    pub(crate) fn poll(&mut self) -> Result<Snapshot, StreamError> {
        self.check_ids()?;
        self.cur.poll(&self.mem)
    }

    /// Fails with the first corrupt id found by [`id`](Self::id), if any.
    fn check_ids(&self) -> Result<(), StreamError> {
        match &*self.bad_id.borrow() {
            None => Ok(()),
            Some(msg) => Err(StreamError::Corrupt(msg.clone())),
        }
    }

    /// The id of `position`, which must be in the prefix and not released:
    /// read from the side table and checked the first time it is asked
    /// for, then from the consumer's private copy. A corrupt one is an
    /// error here and at every later poll.
    pub(crate) fn id(&self, position: u64) -> Result<&str, StreamError> {
        let id_len = self.meta(position).id_len;
        let cache = &self.cur.ids[(position & (self.mem.capacity - 1)) as usize];
        if cache.tag.get() == position + 1 {
            // SAFETY: only the branch below writes `id`, and only while
            // the tag names another position; shared borrows of `id` are
            // handed out only for the position the tag names.
            return Ok(unsafe { &*cache.id.get() }.as_str());
        }
        // The position is committed and unreleased (`meta` checked it): a
        // correct producer does not write its side entry now.
        match ItemId::read(self.mem.side(position), position, id_len) {
            Ok(id) => {
                // SAFETY: no borrow of this slot's `id` is alive. One is
                // handed out (above, or below) only for the position the
                // tag names, and it lives at most as long as a borrow of
                // `self`. The tag names another position `q` here, with
                // `q == position - k * capacity` or never set: while
                // `position` is in the unreleased prefix (`meta` asserted
                // it), `q` is not (the prefix spans at most `capacity`
                // positions), and the prefix moved from `q` to `position`
                // only through `&mut self` (poll, release), which ended
                // every borrow of `q`'s id. `IdCache` is not `Sync`, so no
                // other thread reads it meanwhile.
                unsafe { *cache.id.get() = id };
                cache.tag.set(position + 1);
                // SAFETY: as in the first branch: the tag now names it.
                Ok(unsafe { &*cache.id.get() }.as_str())
            }
            Err(e) => {
                if let StreamError::Corrupt(msg) = &e {
                    self.bad_id.borrow_mut().get_or_insert_with(|| msg.clone());
                }
                Err(e)
            }
        }
    }

    /// Waits until `ready` accepts a fresh snapshot, up to `timeout`.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut ready: impl FnMut(Snapshot) -> bool,
    ) -> Result<Snapshot, StreamError> {
        let snap = self.poll()?;
        if ready(snap) {
            return Ok(snap);
        }
        let mut failure = None;
        let mem = &self.mem;
        let cur = &mut self.cur;
        let waited = wait_for(
            &mem.control().data_bell,
            timeout,
            || match cur.poll(mem) {
                Ok(s) => ready(s).then_some(s),
                Err(e) => {
                    failure = Some(e);
                    Some(Snapshot {
                        available: 0,
                        all_in: false,
                    })
                }
            },
            || producer_gone(mem),
        );
        if let Some(e) = failure {
            return Err(e);
        }
        match waited {
            Waited::Ready(s) => Ok(s),
            Waited::TimedOut => Err(StreamError::Timeout {
                what: "data from the producer",
                waited: timeout.unwrap_or_default(),
            }),
            Waited::PeerGone => Err(StreamError::ProducerGone),
        }
    }

    /// The validated metadata of `position`, which must be in the prefix and
    /// not released.
    pub(crate) fn meta(&self, position: u64) -> &ItemMeta {
        // A hard check: a position outside the unreleased prefix may be
        // rewritten by the producer at any time.
        assert!(
            position >= self.cur.released && position < self.cur.avail_end,
            "position {position} is outside the unreleased prefix {}..{}",
            self.cur.released,
            self.cur.avail_end
        );
        &self.cur.metas[(position & (self.mem.capacity - 1)) as usize]
    }

    /// The row stride of a stacked view of the `n` items ending at `last`:
    /// `Some` when they share dtype and shape and lie at one constant
    /// distance (the item size for `n == 1`).
    pub(crate) fn stack_stride(&self, last: u64, n: u64) -> Option<u64> {
        let slot = (last & (self.mem.capacity - 1)) as usize;
        if u64::from(self.cur.runs[slot]) < n {
            return None;
        }
        Some(if n > 1 {
            self.cur.strides[slot]
        } else {
            self.meta(last).nbytes
        })
    }

    /// Moves the consumer's position forward by `n` items of the prefix
    /// (their slots stay unreleased until `release`).
    pub(crate) fn advance(&mut self, n: u64) {
        debug_assert!(n <= self.available());
        self.cur.consumed += n.min(self.available());
    }

    /// Publishes that every slot before the consumer's position may be
    /// reused, and wakes the producer if it waits for space.
    /// A leased chunk's positions (from `hold` on) stay unreleased.
    pub(crate) fn release(&mut self) {
        let upto = self.cur.consumed.min(self.hold);
        if self.cur.released >= upto {
            return;
        }
        self.cur.released = upto;
        // Release: pairs with the producer's Acquire load in `has_space`:
        // our reads of these slots happen before it overwrites them.
        self.mem
            .control()
            .released
            .store(self.cur.released, Ordering::Release);
        self.mem.control().space_bell.ring();
    }
}

/// Whether the producer left. Also after `done`: a producer may signal
/// done with slots still in flight and die before committing them; the
/// waiter's condition is re-checked first, so a stream that is all in is
/// still delivered whole.
pub(crate) fn producer_gone(mem: &RingMem) -> bool {
    mem.flags() & FLAG_PRODUCER_GONE != 0 || !mem.peer_alive(Side::Producer)
}

impl Cursors {
    fn poll(&mut self, mem: &RingMem) -> Result<Snapshot, StreamError> {
        // Acquire: pairs with the Release of `signal_done`; read before the
        // walk and before `registered`, so that when done is seen, the
        // registered count loaded below is final.
        let flags = mem.flags();
        if flags & !FLAG_KNOWN != 0 {
            return Err(StreamError::Corrupt(format!(
                "flags word {flags:#x} has unknown bits {:#x}",
                flags & !FLAG_KNOWN
            )));
        }
        // The walk needs no look at `registered`: a published completion
        // implies its registration (the producer registers, then commits),
        // and a slot not yet registered in this lap still holds the
        // previous lap's sequence, which never matches. Leaving `registered`
        // alone keeps its cache line with the producer. The walk is bounded
        // by what we ourselves released: at most `capacity` items.
        let limit = self.released + mem.capacity;
        let mask = mem.capacity - 1;
        let start = self.avail_end;
        while self.avail_end < limit {
            let position = self.avail_end;
            let desc = mem.descriptor(position);
            // Acquire: pairs with the producer's Release store in
            // `publish`; this slot's metadata and payload are visible.
            let seq = desc.seq.load(Ordering::Acquire);
            if seq != position + 1 {
                // Not yet committed: the slot holds 0 (never used) or an
                // earlier lap's `position + 1` for this same slot. Anything
                // else no correct producer writes.
                let stale = seq == 0 || (seq <= position && (seq - 1) & mask == position & mask);
                if !stale {
                    return Err(StreamError::Corrupt(format!(
                        "descriptor of position {position}: completion sequence {seq} is out of range"
                    )));
                }
                break;
            }
            let slot = (position & mask) as usize;
            // The slot's previous occupant, `position - capacity`, is
            // released (position < released + capacity), so no view uses
            // its copy any more, nor its id.
            let bounds = Bounds {
                walk_end: self.walk_end,
                // The oldest unreleased position is in the prefix (its copy
                // is its own until a release passes it), or it is this one.
                oldest_start: (self.released < position)
                    .then(|| self.metas[(self.released & mask) as usize].offset),
                payload_bytes: mem.payload_bytes,
                mirrored: mem.mirrored,
            };
            // The previous position is in the prefix or released; either
            // way its copy is still its own (its slot is polled again only
            // after this one). Only a previous item of this walk (or of an
            // earlier one) counts: before position 0 there is none.
            let prev = position
                .checked_sub(1)
                .map(|p| self.metas[(p & mask) as usize]);
            let meta = &mut self.metas[slot];
            let read = ItemMeta::read_into(
                desc,
                mem.side(position),
                position,
                bounds,
                prev.as_ref(),
                meta,
            )?;
            if read.status == STATUS_ABANDONED {
                if self.avail_end == self.consumed {
                    // The one id read at poll: the error names the item.
                    let id = ItemId::read(mem.side(position), position, meta.id_len)?;
                    // And why: the words a commit's shape would use.
                    let info = desc.info.load(Ordering::Relaxed);
                    let reason = reason::read(desc, mem.side(position), position, info)?;
                    return Err(StreamError::Abandoned {
                        position,
                        id: id.as_str().to_string(),
                        reason,
                    });
                }
                break;
            }
            // Length of the run of stackable items ending here, so that
            // a stacked view is checked in O(1), whatever the window.
            let (run, stride) = match (position.checked_sub(1), prev) {
                (Some(prev_position), Some(before)) => {
                    let p = (prev_position & mask) as usize;
                    let here = &self.metas[slot];
                    let stride = here.offset - before.offset;
                    let continues = self.runs[p] == 1 || self.strides[p] == stride;
                    if (read.same_shape || here.stacks_with(&before)) && continues {
                        (self.runs[p].saturating_add(1), stride)
                    } else {
                        (1, 0)
                    }
                }
                _ => (1, 0),
            };
            self.runs[slot] = run;
            self.strides[slot] = stride;
            self.walk_end = self.metas[slot].end();
            self.avail_end = position + 1;
        }
        // `registered` is still checked on every poll that found nothing
        // new (an idle consumer can afford the cache miss), so a corrupt
        // count is reported, and after done it decides `all_in`.
        let registered = if flags & FLAG_DONE != 0 || self.avail_end == start {
            Some(self.load_registered(mem)?)
        } else {
            None
        };
        let all_in = flags & FLAG_DONE != 0 && registered == Some(self.avail_end);
        Ok(Snapshot {
            available: self.avail_end - self.consumed,
            all_in,
        })
    }

    /// Loads `registered` (after done, or on a poll that found nothing new)
    /// and checks it: monotonic, not behind the completed prefix, at most
    /// `capacity` past `released`.
    fn load_registered(&mut self, mem: &RingMem) -> Result<u64, StreamError> {
        // Acquire: pairs with the producer's Release store in `reserve`.
        let registered = mem.control().registered.load(Ordering::Acquire);
        if registered < self.cached_registered.max(self.avail_end)
            || registered - self.released > mem.capacity
        {
            return Err(StreamError::Corrupt(format!(
                "registered count {registered} is outside {}..={}",
                self.cached_registered.max(self.avail_end),
                self.released + mem.capacity
            )));
        }
        self.cached_registered = registered;
        Ok(registered)
    }
}

impl Drop for ConsumerRing {
    fn drop(&mut self) {
        self.mem.set_flag(FLAG_CONSUMER_GONE);
        self.mem.control().space_bell.wake();
    }
}
