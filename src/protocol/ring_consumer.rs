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
use crate::protocol::run::run_count;
use crate::protocol::staged;
use crate::protocol::wait::{wait_for, Waited};
use crate::sync::Ordering;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::time::Duration;

/// An empty poll loads `registered` (to report a corrupt count while
/// nothing else would) only on every this-many-th poll in a row that found
/// nothing new, and before a wait sleeps: a spinning consumer that loaded
/// it on every empty poll took its line from the producer once per item.
pub(crate) const IDLE_CHECK: u32 = 1024;

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
    /// Polls in a row that found nothing new (see [`IDLE_CHECK`]).
    idle: u32,
    /// The first corrupt `registered` count found: every later poll
    /// reports it (a check that runs only now and then must not let the
    /// polls between two checks look sound).
    bad_registered: Option<String>,
    /// What we last published as `released` (at most `consumed`).
    released: u64,
    /// End of the reservation of position `avail_end - 1` (0 before any):
    /// the next position's reservation starts at or after it.
    walk_end: u64,
    /// The runs of the prefix in stream order ([`Run`]), each validated
    /// once: from the one holding `released` (or the last one walked, kept
    /// for the next walk's comparisons) to the one ending at `avail_end`.
    /// At most `capacity + 1`, so never grown after the start.
    runs: VecDeque<Run>,
    /// How many runs were dropped from the front of `runs`: a run's number
    /// minus this is its index.
    dropped: u64,
    /// The number of the run found last (`ConsumerRing::run`), tried first:
    /// items are mostly looked up in order.
    hint: Cell<u64>,
    /// By slot: the id of the position last asked for there, read from
    /// the side table and checked. The walk never touches it (a store per
    /// item into a cold array costs a cache miss per item): the tag says
    /// which position the copy belongs to.
    ids: Box<[IdCache]>,
}

/// Positions `head .. head + count`, published by one `seq` store with one
/// descriptor (the head's), checked once: item `head + k` has the head's
/// dtype, shape and reservation length, at `meta.offset + k * stride`.
#[derive(Clone, Copy, Debug)]
struct Run {
    head: u64,
    count: u64,
    /// The head's validated copy.
    meta: ItemMeta,
    /// Between consecutive items (0 for one item).
    stride: u64,
    /// The first position of the longest stretch ending in this run whose
    /// items stack (same dtype and shape, `stack_stride` apart): a stacked
    /// view of a window inside it is checked in O(1).
    stack_start: u64,
    stack_stride: u64,
}

impl Run {
    fn end(&self) -> u64 {
        self.head + self.count
    }

    fn offset(&self, position: u64) -> u64 {
        self.meta.offset + (position - self.head) * self.stride
    }

    /// Whether `next`, the run after this one, continues its stack: same
    /// shape, and one distance between all items of both stretches.
    fn stack_continues(&self, next: &Run, same_shape: bool) -> Option<u64> {
        let last = self.offset(self.end() - 1);
        let distance = next.meta.offset - last;
        let shape = same_shape || next.meta.stacks_with(&self.meta);
        let mine = self.stack_start + 1 >= self.end() || self.stack_stride == distance;
        let theirs = next.count == 1 || next.stride == distance;
        (shape && mine && theirs).then_some(distance)
    }
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
        mem.set_flag(FLAG_CONSUMER_ATTACHED);
        ConsumerRing {
            mem,
            cur: Cursors {
                consumed: 0,
                avail_end: 0,
                cached_registered: 0,
                idle: 0,
                bad_registered: None,
                released: 0,
                walk_end: 0,
                runs: VecDeque::with_capacity(capacity + 1),
                dropped: 0,
                hint: Cell::new(0),
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
        self.cur.poll(&self.mem, false)
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
        self.run(position);
        let cache = &self.cur.ids[(position & (self.mem.capacity - 1)) as usize];
        if cache.tag.get() == position + 1 {
            // SAFETY: only the branch below writes `id`, and only while
            // the tag names another position; shared borrows of `id` are
            // handed out only for the position the tag names.
            return Ok(unsafe { &*cache.id.get() }.as_str());
        }
        // After a corrupt id, every id not read before fails the same way:
        // the memory is not re-read, so asking twice gives one answer.
        self.check_ids()?;
        // The position is committed and unreleased (`run` checked it): a
        // correct producer does not write its side entry, nor the id
        // length its registration left in the descriptor, now.
        let info = self.mem.descriptor(position).info.load(Ordering::Relaxed);
        match ItemId::read(self.mem.side(position), position, (info >> 24) as u8) {
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
        // Set once the wait is about to sleep: the re-checks from then on
        // load `registered` even on an empty poll (an idle consumer can
        // afford the cache miss).
        let sleeping = Cell::new(false);
        let waited = wait_for(
            &mem.control().data_bell,
            timeout,
            || match cur.poll(mem, sleeping.get()) {
                Ok(s) => ready(s).then_some(s),
                Err(e) => {
                    failure = Some(e);
                    Some(Snapshot {
                        available: 0,
                        all_in: false,
                    })
                }
            },
            || {
                sleeping.set(true);
                producer_gone(mem)
            },
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

    /// The run holding `position`, which must be in the prefix and not
    /// released.
    #[inline]
    fn run(&self, position: u64) -> &Run {
        // A hard check: a position outside the unreleased prefix may be
        // rewritten by the producer at any time.
        assert!(
            position >= self.cur.released && position < self.cur.avail_end,
            "position {position} is outside the unreleased prefix {}..{}",
            self.cur.released,
            self.cur.avail_end
        );
        let index = self.cur.index_of(position);
        &self.cur.runs[index]
    }

    /// The validated metadata of `position`, which must be in the prefix and
    /// not released: its payload byte position and its run's dtype, shape,
    /// byte count and reservation length (whose `offset` is the run's head's).
    #[inline]
    pub(crate) fn meta(&self, position: u64) -> (u64, &ItemMeta) {
        let run = self.run(position);
        (run.offset(position), &run.meta)
    }

    /// The row stride of a stacked view of the `n` items ending at `last`:
    /// `Some` when they share dtype and shape and lie at one constant
    /// distance (the item size for `n == 1`).
    pub(crate) fn stack_stride(&self, last: u64, n: u64) -> Option<u64> {
        let run = self.run(last);
        if n <= 1 {
            return Some(run.meta.nbytes);
        }
        (last + 1 - n >= run.stack_start).then_some(run.stack_stride)
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
        self.cur.drop_released();
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
    /// Drops the runs wholly released, but not the last one walked: the
    /// next walk compares with it. Then the first run holds `released`
    /// unless every run is released.
    fn drop_released(&mut self) {
        let len = self.runs.len();
        if len <= 1 || self.runs[0].end() > self.released {
            return;
        }
        // All at once: a drain from the front moves no element.
        let keep_from = if self.released < self.avail_end {
            self.index_of(self.released)
        } else {
            len - 1
        };
        self.runs.drain(..keep_from);
        self.dropped += keep_from as u64;
    }

    /// The index in `runs` of the run holding `position` (which one holds).
    #[inline]
    fn index_of(&self, position: u64) -> usize {
        // In-order lookups: the run found last, or the next one, which
        // starts where it ends (the runs are contiguous). One record read,
        // inlined: one lookup per item of a stream of single commits.
        let hint = self.hint.get().wrapping_sub(self.dropped) as usize;
        if let Some(run) = self.runs.get(hint) {
            if run.head <= position {
                if position < run.end() {
                    return hint;
                }
                // A position below `avail_end` past this run is in the next.
                if position == run.end() {
                    self.hint.set(self.hint.get() + 1);
                    return hint + 1;
                }
            }
        }
        self.index_far(position)
    }

    /// [`index_of`](Self::index_of) away from the last run found.
    #[inline(never)]
    fn index_far(&self, position: u64) -> usize {
        let runs = &self.runs;
        let holds = |i: u64| {
            runs.get(i as usize)
                .is_some_and(|r| r.head <= position && position < r.end())
        };
        // Where the run would be if all were of one length (exact for a
        // stream of same-sized batches or of single items), then a binary
        // search: no walk over a cold deque per lookup.
        let first = runs[0].head;
        let span = runs[runs.len() - 1].end() - first;
        let guess = ((position - first) as u128 * runs.len() as u128 / span as u128) as u64;
        let index = if holds(guess) {
            guess
        } else {
            runs.partition_point(|r| r.end() <= position) as u64
        };
        self.hint.set(self.dropped + index);
        index as usize
    }

    /// See [`ConsumerRing::poll`]; `idle_check`: an empty poll loads
    /// `registered` whatever [`IDLE_CHECK`] says (a wait about to sleep).
    fn poll(&mut self, mem: &RingMem, idle_check: bool) -> Result<Snapshot, StreamError> {
        if let Some(msg) = &self.bad_registered {
            return Err(StreamError::Corrupt(msg.clone()));
        }
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
        // The walk looks at `registered` only for a run that reaches past
        // the count it loaded last: a published completion implies its
        // registration (the producer registers, then commits), and a slot
        // not yet published in this lap still holds an older lap's
        // sequence, which is at most its position. Leaving `registered`
        // alone keeps its cache line with the producer. The walk is bounded
        // by what we ourselves released: at most `capacity` items.
        let limit = self.released + mem.capacity;
        let start = self.avail_end;
        while self.avail_end < limit {
            let position = self.avail_end;
            let desc = mem.descriptor(position);
            // Acquire: pairs with the producer's Release store in
            // `publish_run`; the metadata and payload of the whole run are
            // visible, and so is the `registered` count stored before it.
            let seq = desc.seq.load(Ordering::Acquire);
            // Not published: a run the producer staged here (adaptive
            // batching, `staged.rs`) is taken and read as its `seq`.
            let seq = if seq <= position {
                staged::take(mem, position, limit, self.cached_registered)?.unwrap_or(seq)
            } else {
                seq
            };
            // The count is checked before anything trusts it: against the
            // window first (no load), then, for a run that reaches past the
            // registered count we know, against a fresh one.
            let Some(n) = run_count(position, seq, mem.capacity, limit)? else {
                break;
            };
            if n > 1 && position + n > self.cached_registered {
                let registered = self.load_registered(mem)?;
                run_count(position, seq, mem.capacity, registered.min(limit))?;
            }
            // The oldest unreleased position is in the prefix (its run's
            // copy is kept until a release passes it), or it is this one.
            self.drop_released();
            let oldest_start = (self.released < position).then(|| {
                let run = self.runs.front().expect("the unreleased prefix has runs");
                run.offset(self.released)
            });
            let bounds = Bounds {
                walk_end: self.walk_end,
                oldest_start,
                payload_bytes: mem.payload_bytes,
                mirrored: mem.mirrored,
            };
            // The run's record is checked in place, in the deque (read
            // back at once, a copy of fields just stored one by one would
            // stall on store forwarding), and taken back if it fails.
            self.runs.push_back(Run {
                head: position,
                count: n,
                meta: ItemMeta::EMPTY,
                stride: 0,
                stack_start: position,
                stack_stride: 0,
            });
            let len = self.runs.len();
            let mut tail = self.runs.range_mut(len.saturating_sub(2)..);
            let prev = if len >= 2 {
                tail.next().map(|r| &*r)
            } else {
                None
            };
            let run = tail.next().expect("just pushed");
            let read = match check_run_head(prev, run, desc, mem, &bounds) {
                Ok(read) => read,
                Err(e) => {
                    self.runs.pop_back();
                    return Err(e);
                }
            };
            let end = run.offset(run.end() - 1) + run.meta.len;
            if read.status == STATUS_ABANDONED {
                let id_len = run.meta.id_len;
                self.runs.pop_back();
                if n > 1 {
                    return Err(StreamError::Corrupt(format!(
                        "descriptor of position {position}: completion sequence {seq} claims an abandoned run of {n} items (only one item is abandoned at a time)"
                    )));
                }
                if self.avail_end == self.consumed {
                    // The one id read at poll: the error names the item.
                    let id = ItemId::read(mem.side(position), position, id_len)?;
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
            self.walk_end = end;
            self.avail_end = position + n;
        }
        // After done `registered` decides `all_in`. Otherwise an empty poll
        // checks it (so that a corrupt count is reported while nothing
        // else would look at it) only on every `IDLE_CHECK`-th poll in a
        // row that found nothing new, or before a wait sleeps: a spinning
        // consumer that loaded it on every empty poll took its line from
        // the producer, which stores it at every registration, once per
        // item (measured: issue 24 in docs/design.md).
        let found_nothing = self.avail_end == start;
        self.idle = if found_nothing {
            self.idle.wrapping_add(1)
        } else {
            0
        };
        let idle_check = found_nothing && (idle_check || self.idle % IDLE_CHECK == 0);
        let registered = if flags & FLAG_DONE != 0 || idle_check {
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

    /// Loads `registered` (after done, for a run past the count loaded
    /// last, or on an idle poll) and checks it: monotonic, not behind the
    /// completed prefix, at most `capacity` past `released`. A corrupt
    /// count is reported by every later poll too.
    fn load_registered(&mut self, mem: &RingMem) -> Result<u64, StreamError> {
        // Acquire: pairs with the producer's Release store in `reserve`.
        let registered = mem.control().registered.load(Ordering::Acquire);
        if registered < self.cached_registered.max(self.avail_end)
            || registered - self.released > mem.capacity
        {
            let msg = format!(
                "registered count {registered} is outside {}..={}",
                self.cached_registered.max(self.avail_end),
                self.released + mem.capacity
            );
            self.bad_registered = Some(msg.clone());
            return Err(StreamError::Corrupt(msg));
        }
        self.cached_registered = registered;
        Ok(registered)
    }
}

/// Reads and checks the head descriptor `desc` of `run` (its position
/// and count set) into the run's record, and the run's span, after the
/// previous run `prev` (the walk's bounds in `bounds`). An abandoned head
/// is read (its id length kept) but its span is not checked: the caller
/// reports it.
fn check_run_head(
    prev: Option<&Run>,
    run: &mut Run,
    desc: &crate::protocol::descriptor::Descriptor,
    mem: &RingMem,
    bounds: &Bounds,
) -> Result<crate::protocol::descriptor::Read, StreamError> {
    let position = run.head;
    let read = ItemMeta::read_into(
        desc,
        mem.side(position),
        position,
        bounds,
        prev.map(|r| &r.meta),
        &mut run.meta,
    )?;
    if read.status == STATUS_ABANDONED {
        return Ok(read);
    }
    // A run of one is its head: `check_run` has nothing more to check.
    let stride = if run.count == 1 {
        0
    } else {
        run.meta.check_run(position, run.count, bounds)?.0
    };
    run.stride = stride;
    run.stack_stride = stride;
    // The stretch of stackable items goes on from the previous run when
    // it can, so that a stacked view is checked in O(1), whatever the
    // window.
    if let Some(prev) = prev {
        if let Some(distance) = prev.stack_continues(run, read.same_shape) {
            run.stack_start = prev.stack_start;
            run.stack_stride = distance;
        }
    }
    Ok(read)
}

impl Drop for ConsumerRing {
    fn drop(&mut self) {
        self.mem.set_flag(FLAG_CONSUMER_GONE);
        self.mem.control().space_bell.wake();
    }
}
