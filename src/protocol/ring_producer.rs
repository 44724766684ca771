//! The producer's side of the ring: reserve in order (slot and payload
//! bytes), commit or abandon in any order, publish the in-order prefix,
//! wait for space.

use crate::error::{AbandonReason, Resource, StreamError};
use crate::protocol::descriptor::{write_id, Descriptor};
use crate::protocol::layout::{
    placement_align, FLAG_CONSUMER_ATTACHED, FLAG_CONSUMER_GONE, FLAG_DONE, FLAG_PRODUCER_GONE,
    MAX_ID_LEN, STATUS_COMMITTED,
};
use crate::protocol::reason;
use crate::protocol::ring::{RingMem, Side};
use crate::protocol::run::run_stride;
use crate::protocol::staged;
use crate::protocol::tensor::{DType, TensorMeta};
use crate::protocol::wait::{wait_for, Waited};
use crate::protocol::wake::Wake;
use crate::sync::Ordering;
use std::time::Duration;

/// A `run_ends` entry: the position was committed alone (a run of one).
const ALONE: u64 = u64::MAX;

/// Where a reserved position stands on the producer's side. A position
/// has at most one live write handle: only `Free -> Held` (reserve),
/// `Pending -> Held` (a by-id call takes it up again) and back are allowed,
/// and each transition is checked here, whatever the public call sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Published (committed or abandoned), or never reserved in this lap.
    Free,
    /// Reserved; one `Slot` handle writes it.
    Held,
    /// Reserved by `pre_read_register`; no handle, a by-id call finds it.
    Pending,
}

/// Where a registration landed: its stream position and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub(crate) position: u64,
    /// Payload byte position (never wraps).
    pub(crate) offset: u64,
    /// Bytes reserved.
    pub(crate) len: u64,
}

/// The producer's side of the protocol. Its cursors are private; only
/// `registered` and the descriptors are published.
#[derive(Debug)]
pub(crate) struct ProducerRing {
    mem: RingMem,
    /// Next position to reserve (the value of `registered` we published).
    next: u64,
    /// Last `released` we loaded; reloaded only when the ring looks full.
    cached_released: u64,
    /// By slot: where the reservation of the position that last reserved it
    /// starts. The oldest unreleased position's start is the floor of free
    /// space: nothing may be placed past it plus the payload length.
    starts: Box<[u64]>,
    /// By slot: the reservation's length and the id's length of the
    /// position that last reserved it. The descriptor gets them (and the
    /// start) only when the position is published: see `reserve_quiet`.
    lens: Box<[(u64, u8)]>,
    /// End of the newest reservation: the next one starts at or after it.
    head: u64,
    /// By slot: the state of the position that last reserved it.
    states: Box<[SlotState]>,
    /// No position below it is `Held` or `Pending`; at most `next`. The
    /// consumer cannot have released past it (it never saw it complete), so
    /// a `released` beyond it is corrupt, not a licence to reuse the slot.
    oldest_open: u64,
    /// By slot: the last position of the run the position there was
    /// committed in (only the head's descriptor says, in shared memory),
    /// or [`ALONE`] for a position committed alone.
    run_ends: Box<[u64]>,
    /// By slot of a run's last position: the run's tensor metadata. Kept
    /// there because that slot is the run's last to be reused: while any
    /// position of the run is unreleased, so is the last (`carry.rs`).
    run_metas: Box<[TensorMeta]>,
    /// A stream of a worker hub: marks the stream ready in the hub at every
    /// publication (after the stream's own bell), so the worker waiting on
    /// all its streams at once wakes up. The ring knows only the hook.
    notifier: Option<Box<dyn Wake>>,
    /// Adaptive batching (issue 24): the longest run an in-order commit
    /// may stage (0: off, every commit publishes).
    batch_max: u64,
    /// The run staged in `Control::staged` and not yet taken as far as we
    /// know (`staged.rs`).
    held: Option<Held>,
    /// Commits left to publish directly, without staging: set when the
    /// consumer took a run of one before the next commit could extend it
    /// (it is looking all the time, so staging only adds RMWs).
    direct: u64,
}

/// The producer's staged run: `n` positions from `head`, all of `meta`
/// and of `len` reserved bytes, lying a run's stride apart.
#[derive(Clone, Copy, Debug)]
struct Held {
    head: u64,
    n: u64,
    meta: TensorMeta,
    len: u64,
}

impl ProducerRing {
    pub(crate) fn new(mem: RingMem) -> Self {
        let capacity = mem.capacity as usize;
        ProducerRing {
            mem,
            next: 0,
            cached_released: 0,
            starts: vec![0; capacity].into_boxed_slice(),
            lens: vec![(0, 0); capacity].into_boxed_slice(),
            head: 0,
            states: vec![SlotState::Free; capacity].into_boxed_slice(),
            oldest_open: 0,
            run_ends: vec![0; capacity].into_boxed_slice(),
            run_metas: vec![TensorMeta::new(DType::U8, &[]).expect("a scalar"); capacity]
                .into_boxed_slice(),
            notifier: None,
            batch_max: 0,
            held: None,
            direct: 0,
        }
    }

    /// A ring whose first position is `start` (a stream moved to a bigger
    /// ring, `carry.rs`): its counters are set to `start` before either
    /// side runs.
    pub(crate) fn starting_at(mem: RingMem, start: u64) -> Self {
        let mut ring = ProducerRing::new(mem);
        ring.next = start;
        ring.cached_released = start;
        ring.oldest_open = start;
        ring
    }

    /// The hub hook, handed on to the ring that takes the stream over.
    pub(crate) fn take_notifier(&mut self) -> Option<Box<dyn Wake>> {
        self.notifier.take()
    }

    /// Makes every publication also mark the stream ready in a hub.
    pub(crate) fn set_notifier(&mut self, notifier: Box<dyn Wake>) {
        self.notifier = Some(notifier);
    }

    /// Tells the hub, if any, that the stream has news for its consumer.
    #[inline]
    fn notify_hub(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.notify();
        }
    }

    /// The state of a position of the current lap (`position < next` and
    /// at most `capacity` behind it; older positions read as `Free`).
    pub(crate) fn state(&self, position: u64) -> SlotState {
        if position >= self.next || self.next - position > self.mem.capacity {
            return SlotState::Free;
        }
        self.states[(position & (self.mem.capacity - 1)) as usize]
    }

    /// Moves `position` from `from` to `to`; false (and no change) when it
    /// is not in `from`.
    pub(crate) fn transition(&mut self, position: u64, from: SlotState, to: SlotState) -> bool {
        if self.state(position) != from {
            return false;
        }
        self.states[(position & (self.mem.capacity - 1)) as usize] = to;
        true
    }

    /// The oldest position still reserved and unpublished (or `next`).
    pub(crate) fn oldest_open(&mut self) -> u64 {
        while self.oldest_open < self.next && self.state(self.oldest_open) == SlotState::Free {
            self.oldest_open += 1;
        }
        self.oldest_open
    }

    pub(crate) fn mem(&self) -> &RingMem {
        &self.mem
    }

    pub(crate) fn registered(&self) -> u64 {
        self.next
    }

    /// Where a reservation of `len` bytes would start: after the newest
    /// one, aligned for its size; without a mirror, not across the end of
    /// the payload area (it moves to the start of the next lap instead).
    #[inline(always)]
    fn place(&self, len: u64) -> u64 {
        // Both are powers of two: round up with masks, not a division (this
        // runs twice per registration).
        let align = placement_align(len);
        let offset = (self.head + align - 1) & !(align - 1);
        let size = self.mem.payload_bytes;
        if !self.mem.mirrored && (offset & (size - 1)) + len > size {
            (offset + size - 1) & !(size - 1)
        } else {
            offset
        }
    }

    /// Which resource is short for one more reservation of `len` bytes if
    /// the consumer has released `released` positions (`None`: it fits).
    /// The bytes in use run from the start of the oldest unreleased
    /// reservation (padding before it is free); with none unreleased, any
    /// reservation of at most the payload length fits.
    #[inline(always)]
    fn short_of(&self, released: u64, len: u64) -> Option<Resource> {
        if self.next - released >= self.mem.capacity {
            return Some(Resource::Items);
        }
        let offset = self.place(len);
        let floor = if released < self.next {
            self.starts[(released & (self.mem.capacity - 1)) as usize]
        } else {
            offset
        };
        (offset + len - floor > self.mem.payload_bytes).then_some(Resource::PayloadBytes)
    }

    #[inline(always)]
    fn has_space(&mut self, len: u64) -> Result<Option<Resource>, StreamError> {
        if self.short_of(self.cached_released, len).is_none() {
            return Ok(None);
        }
        let high = self.oldest_open();
        let released = load_released(&self.mem, self.cached_released, high)?;
        self.cached_released = released;
        Ok(self.short_of(released, len))
    }

    #[inline(always)]
    fn check_open(&self) -> Result<(), StreamError> {
        let flags = self.mem.flags();
        if flags & FLAG_DONE != 0 {
            return Err(StreamError::AfterDone);
        }
        if flags & FLAG_CONSUMER_GONE != 0 {
            return Err(StreamError::ConsumerGone);
        }
        Ok(())
    }

    /// Reserves the next position for `id` and `len` payload bytes without
    /// waiting.
    #[inline(always)]
    pub(crate) fn try_reserve(&mut self, id: &[u8], len: u64) -> Result<Reservation, StreamError> {
        check_id(id)?;
        if let Some(resource) = self.fits(len)? {
            return Err(StreamError::Full {
                resource,
                capacity: match resource {
                    Resource::Items => self.mem.capacity,
                    Resource::PayloadBytes => self.mem.payload_bytes,
                },
            });
        }
        Ok(self.reserve_unchecked(id, len))
    }

    /// Reserves the next position for `id` and `len` bytes, waiting up to
    /// `timeout` (`None`: for ever) for the consumer to release room.
    #[inline(always)]
    pub(crate) fn reserve(
        &mut self,
        id: &[u8],
        len: u64,
        timeout: Option<Duration>,
    ) -> Result<Reservation, StreamError> {
        let resource = match self.try_reserve(id, len) {
            Err(StreamError::Full { resource, .. }) => resource,
            other => return other,
        };
        self.wait_for_space(resource, len, timeout)?;
        self.try_reserve(id, len)
    }

    /// Waits up to `timeout` until one more reservation of `len` bytes
    /// fits (or the consumer left: the next try says so), after a try that
    /// found `resource` short. Publishes nothing: a caller that published
    /// before waiting has rung the data bell already (a consumer asleep on
    /// it while we sleep on the space bell would be a deadlock).
    pub(crate) fn wait_for_space(
        &mut self,
        resource: Resource,
        len: u64,
        timeout: Option<Duration>,
    ) -> Result<(), StreamError> {
        // The held run is published before we sleep (a consumer takes it
        // anyway when it looks; this leaves shared memory as it would be
        // without batching while we wait).
        self.flush();
        let high = self.oldest_open();
        let waited = self.wait_for_consumer(high, timeout, |released, gone| {
            released.map_or(true, |r| self.short_of(r, len).is_none()) || gone
        });
        match waited? {
            Waited::Ready(()) => Ok(()),
            Waited::TimedOut => Err(StreamError::Timeout {
                what: match resource {
                    Resource::Items => "a free item slot (the consumer has not released any)",
                    Resource::PayloadBytes => {
                        "free payload bytes (the consumer has not released enough)"
                    }
                },
                waited: timeout.unwrap_or_default(),
            }),
            Waited::PeerGone => Err(StreamError::ConsumerGone),
        }
    }

    #[inline(always)]
    fn reserve_unchecked(&mut self, id: &[u8], len: u64) -> Reservation {
        let reservation = self.reserve_quiet(id, len);
        self.publish_registered();
        reservation
    }

    /// Takes the next position for `id` and `len` bytes (which the caller
    /// checked: `check_id`, `check_open`, `fits`) and makes it `Held`,
    /// without publishing `registered`: a batch publishes it once, with
    /// [`publish_registered`](Self::publish_registered), before it
    /// publishes any of the batch's completions.
    #[inline(always)]
    pub(crate) fn reserve_quiet(&mut self, id: &[u8], len: u64) -> Reservation {
        let position = self.next;
        let offset = self.place(len);
        // The id goes to the side table now (its line is ours until the
        // consumer asks for an id); the reservation waits for the commit
        // (`write_reservation`): a spinning consumer holds the descriptor's
        // line (it loads the next `seq` on every poll), and writing it here
        // and again at commit cost two transfers of that line per item.
        write_id(self.mem.side(position), id);
        let slot = (position & (self.mem.capacity - 1)) as usize;
        self.head = offset + len;
        self.starts[slot] = offset;
        self.lens[slot] = (len, id.len() as u8);
        self.states[slot] = SlotState::Held;
        self.next = position + 1;
        Reservation {
            position,
            offset,
            len,
        }
    }

    /// Publishes how many positions are registered. Must come before the
    /// completion of any of them is published: a consumer that sees a
    /// completion past `registered` reports the count as corrupt.
    #[inline(always)]
    pub(crate) fn publish_registered(&self) {
        // Release: pairs with the consumer's Acquire load of `registered`;
        // the ids written before are visible to it. Program order puts it
        // before the Release stores of the positions' `seq`, so a consumer
        // that acquired one of those sees this count or a later one.
        self.mem
            .control()
            .registered
            .store(self.next, Ordering::Release);
    }

    /// Checks, before a reservation of `len` bytes, that the stream is
    /// open and the bytes fit the payload at all; `Ok(Some(resource))` when
    /// they fit only after the consumer releases `resource` (reloading its
    /// `released` only when the cached value says short).
    #[inline(always)]
    pub(crate) fn fits(&mut self, len: u64) -> Result<Option<Resource>, StreamError> {
        if len > self.mem.payload_bytes {
            return Err(StreamError::ExceedsPayload {
                nbytes: len,
                payload_bytes: self.mem.payload_bytes,
            });
        }
        self.check_open()?;
        self.has_space(len)
    }

    /// Publishes the slot of `position` (`len` bytes reserved) as complete
    /// with `meta`, whose size the caller checked against the slot, or,
    /// with batching on, stages it (`stage`). The position must be `Held`.
    pub(crate) fn commit(&mut self, position: u64, len: u64, meta: &TensorMeta) {
        if self.batch_max == 0 || self.publish_directly() || !self.stage(position, len, meta) {
            self.commit_quiet(position, meta);
        }
        // A staged commit rings too: a sleeping consumer wakes at once and
        // its poll takes the run (no latency when the consumer is idle).
        self.ring_bells();
    }

    /// Turns adaptive batching on (`max_items` > 0: the longest staged
    /// run, at most the capacity) or off (0, publishing the held run).
    pub(crate) fn set_batching(&mut self, max_items: u64) {
        if max_items == 0 {
            self.flush();
        }
        self.batch_max = max_items.min(self.mem.capacity).min(staged::MAX_COUNT);
        self.direct = 0;
    }

    /// Whether this commit skips staging: `batch_max` commits in all from
    /// the one that found a run of one taken (see `direct`), then staging
    /// is tried again.
    fn publish_directly(&mut self) -> bool {
        if self.direct == 0 {
            return false;
        }
        self.direct -= 1;
        true
    }

    /// The longest run a commit may stage (0: batching is off).
    pub(crate) fn batching(&self) -> u64 {
        self.batch_max
    }

    /// Stages the held `position` (`len` bytes, `meta`) instead of
    /// publishing it: it extends the held run when it continues it, or
    /// starts a run when every position before it is published. False when
    /// it must be published the usual way (out of order). A held run it
    /// does not continue is published first.
    fn stage(&mut self, position: u64, len: u64, meta: &TensorMeta) -> bool {
        let mask = self.mem.capacity - 1;
        if let Some(held) = self.held {
            let continues = position == held.head + held.n
                && *meta == held.meta
                && len == held.len
                && held.n < self.batch_max
                && self.continues_run(held.head, held.n, len);
            if continues {
                // Its registration goes into its descriptor before the
                // extension (Release) offers it: the consumer reads its id
                // length there.
                self.write_reservation(position);
                if staged::extend(&self.mem.control().staged, held.head, held.n) {
                    self.close(position);
                    // Its own copy of the metadata, for `committed_meta`:
                    // the run's last position is not known yet.
                    self.run_ends[(position & mask) as usize] = position;
                    self.run_metas[(position & mask) as usize] = *meta;
                    self.held = Some(Held {
                        n: held.n + 1,
                        ..held
                    });
                    return true;
                }
                // The consumer took the run: its `seq` says so now (no
                // claim needed: the word is taken).
                self.held = None;
                let desc = self.mem.descriptor(held.head);
                self.publish_run(desc, held.head, held.n);
                if held.n == 1 {
                    // Taken before a second item came: the consumer looks
                    // all the time. Publish directly for a while: this
                    // commit and `batch_max - 1` more.
                    self.direct = self.batch_max - 1;
                    return false;
                }
                // This item starts the next run.
                self.close(position);
                self.run_ends[(position & mask) as usize] = ALONE;
                self.start_staged(position, len, meta);
                return true;
            }
            self.flush_quiet();
        }
        // A run starts only where the consumer's walk can stop: every
        // position before it published (the `take` in `poll` relies on it).
        if self.oldest_open() != position {
            return false;
        }
        self.close(position);
        self.run_ends[(position & mask) as usize] = ALONE;
        self.start_staged(position, len, meta);
        true
    }

    /// Writes the head's metadata and stages a run of one at `position`
    /// (closed by the caller).
    fn start_staged(&mut self, position: u64, len: u64, meta: &TensorMeta) {
        self.write_head(position, meta);
        staged::start(&self.mem.control().staged, position);
        self.held = Some(Held {
            head: position,
            n: 1,
            meta: *meta,
            len,
        });
    }

    /// Publishes the held run by its head's `seq`; rings nothing (the
    /// commit that staged each item rang). True when the run was still
    /// staged; false when the consumer had taken it, whose `seq` is then
    /// stored only so that shared memory reads as published (the consumer
    /// cannot store it: it maps the descriptors read-only).
    fn flush_quiet(&mut self) -> bool {
        let Some(held) = self.held.take() else {
            return false;
        };
        let claimed = staged::claim(&self.mem.control().staged, held.head, held.n);
        let desc = self.mem.descriptor(held.head);
        self.publish_run(desc, held.head, held.n);
        claimed
    }

    /// Publishes the held run (if the consumer has not taken it) and rings.
    pub(crate) fn flush(&mut self) {
        if self.flush_quiet() {
            self.ring_bells();
        }
    }

    /// As [`commit`](Self::commit), without ringing: the `seq` store only.
    /// A batch commits its items this way and then calls
    /// [`ring_bells`](Self::ring_bells) once, before it returns.
    pub(crate) fn commit_quiet(&mut self, position: u64, meta: &TensorMeta) {
        self.commit_run(position, 1, meta);
    }

    /// Whether `head + n`, reserved with `len` bytes like the `n` positions
    /// from `head`, lies where a run of them puts it (at `n` strides from
    /// the head's start), so that the `n + 1` can be committed as one run.
    /// Without a mirror a run also stops at the end of the payload: the
    /// consumer reads a run as one stretch of the mapping.
    pub(crate) fn continues_run(&self, head: u64, n: u64, len: u64) -> bool {
        let mask = self.mem.capacity - 1;
        let first = self.starts[(head & mask) as usize];
        let next = self.starts[((head + n) & mask) as usize];
        let Some(stride) = run_stride(len) else {
            return false;
        };
        let in_lap = self.mem.mirrored
            || (first & (self.mem.payload_bytes - 1)) + n * stride + len <= self.mem.payload_bytes;
        n < self.mem.capacity && next == first + n * stride && in_lap
    }

    /// Publishes the `n` held positions from `head`, whose reservations
    /// follow each other ([`continues_run`](Self::continues_run)), as one
    /// run of items of `meta` (checked by the caller against each
    /// reservation): the head's descriptor alone carries the metadata, one
    /// Release store of its `seq` (`head + n`) publishes them all.
    pub(crate) fn commit_run(&mut self, head: u64, n: u64, meta: &TensorMeta) {
        debug_assert!(n >= 1 && n <= self.mem.capacity);
        // A held run goes first: the shared state then says what a
        // producer without batching would have published.
        if self.held.is_some() {
            self.flush_quiet();
        }
        let mask = self.mem.capacity - 1;
        if n == 1 {
            // Every single commit: its own descriptor keeps the metadata
            // while it is unreleased, so no private copy (an 80-byte store
            // per item, measured in the one-by-one stream).
            self.close(head);
            self.run_ends[(head & mask) as usize] = ALONE;
        } else {
            for position in head..head + n {
                self.close(position);
                self.run_ends[(position & mask) as usize] = head + n - 1;
            }
            self.run_metas[((head + n - 1) & mask) as usize] = *meta;
            // The run's other descriptors carry their registration only
            // (the consumer reads their id length; `carry.rs` their start).
            for position in head + 1..head + n {
                self.write_reservation(position);
            }
        }
        let desc = self.write_head(head, meta);
        self.publish_run(desc, head, n);
    }

    /// The tensor metadata of the committed `position` when it was
    /// committed in a run of more than one (for `carry.rs`: the descriptors
    /// of a run's other positions do not carry it); `None` for a position
    /// committed alone, whose own descriptor has it.
    pub(crate) fn committed_meta(&self, position: u64) -> Option<TensorMeta> {
        let mask = self.mem.capacity - 1;
        let last = self.run_ends[(position & mask) as usize];
        (last != ALONE).then(|| self.run_metas[(last & mask) as usize])
    }

    /// Publishes the slot of `position` as given up: the consumer reports it
    /// instead of waiting for it for ever.
    // Without a reason: for code that gives positions up on its own
    // account (a buffer copying abandoned positions into a new ring).
    #[allow(dead_code)]
    pub(crate) fn abandon(&mut self, position: u64) {
        self.abandon_with(position, &AbandonReason::default());
    }

    /// As [`abandon`](Self::abandon), telling the consumer why: the reason
    /// goes into the position's descriptor and side entry before the
    /// Release store of its `seq` publishes it.
    pub(crate) fn abandon_with(&mut self, position: u64, reason: &AbandonReason) {
        self.flush_quiet();
        self.close(position);
        let desc = self.write_reservation(position);
        reason::write(reason, desc, self.mem.side(position));
        self.publish(desc, position);
    }

    /// Writes a run's head record: the registration of `position`, then
    /// `meta` as committed (first the registration: `write_meta` keeps the
    /// id length it wrote).
    fn write_head(&self, position: u64, meta: &TensorMeta) -> &Descriptor {
        let desc = self.write_reservation(position);
        desc.write_meta(
            self.mem.side(position),
            STATUS_COMMITTED,
            meta.dtype().code(),
            meta.dims_raw(),
            meta.ndim(),
            meta.nbytes(),
        );
        desc
    }

    /// Writes the registration of the reserved `position` (its start and
    /// length, its id's length) into its descriptor, from our private
    /// copies, before the position is published.
    fn write_reservation(&self, position: u64) -> &Descriptor {
        let slot = (position & (self.mem.capacity - 1)) as usize;
        let (len, id_len) = self.lens[slot];
        let desc = self.mem.descriptor(position);
        desc.write_reservation(self.starts[slot], len, id_len);
        desc
    }

    /// The length reserved at `position` and its id's length, as its
    /// registration left them (`position` registered and not released).
    pub(crate) fn reserved(&self, position: u64) -> (u64, u8) {
        self.lens[(position & (self.mem.capacity - 1)) as usize]
    }

    /// Marks a held position published. Anything else is a bug in this
    /// crate: publishing twice would overwrite a later lap's completion.
    fn close(&mut self, position: u64) {
        let closed = self.transition(position, SlotState::Held, SlotState::Free);
        assert!(
            closed,
            "position {position} published without a live handle"
        );
    }

    fn publish(&self, desc: &Descriptor, position: u64) {
        self.publish_run(desc, position, 1);
        self.ring_bells();
    }

    /// The completion store alone: `head + n` publishes the run of `n`
    /// positions from `head` (an older lap's `seq` in the slot is at most
    /// `head`, so the consumer tells the two apart).
    fn publish_run(&self, desc: &Descriptor, head: u64, n: u64) {
        // Release: pairs with the consumer's Acquire load of `seq` in `poll`:
        // the payload bytes and the metadata of the whole run, written
        // before, are visible to a consumer that sees the sequence.
        // `--cfg shmstream_weaken="commit_release"` makes it Relaxed to
        // show loom catching it.
        #[cfg(not(shmstream_weaken = "commit_release"))]
        desc.seq.store(head + n, Ordering::Release);
        #[cfg(shmstream_weaken = "commit_release")]
        desc.seq.store(head + n, Ordering::Relaxed);
    }

    /// Tells a sleeping consumer (and the worker hub, if any) about every
    /// completion stored before: the handshake's fence orders all of them
    /// before the look at `sleepers`, so one ring after the last store of a
    /// batch covers the whole batch.
    pub(crate) fn ring_bells(&self) {
        self.mem.control().data_bell.ring();
        self.notify_hub();
    }

    /// Publishes the held run, marks the stream done and wakes the consumer.
    pub(crate) fn signal_done(&mut self) {
        self.flush_quiet();
        self.mem.set_flag(FLAG_DONE);
        self.mem.control().data_bell.ring();
        self.notify_hub();
    }

    /// Waits until the consumer released everything registered (or left).
    pub(crate) fn wait_drained(&mut self, timeout: Option<Duration>) -> Result<(), StreamError> {
        self.flush();
        let next = self.next;
        // The producer is one thread: a position it has not published now
        // will not be published while it waits here.
        let open = self.oldest_open();
        if open < next {
            return Err(StreamError::Unpublished { position: open });
        }
        let waited = self.wait_for_consumer(open, timeout, |released, gone| {
            released.is_none() || released == Some(next) || gone
        })?;
        // A consumer that released everything and then left is a normal end.
        let drained = self.mem.control().released.load(Ordering::Acquire) == next;
        match waited {
            Waited::Ready(()) if drained => Ok(()),
            Waited::Ready(()) | Waited::PeerGone => Err(StreamError::ConsumerGone),
            Waited::TimedOut => Err(StreamError::Timeout {
                what: "the consumer to release every item",
                waited: timeout.unwrap_or_default(),
            }),
        }
    }
}

impl ProducerRing {
    /// Sleeps on the space bell until `done(released, consumer_gone)`
    /// holds; `released` is `None` when the value read was corrupt, which
    /// ends the wait with that error.
    /// `high` is the oldest open position (`released` may not pass it).
    fn wait_for_consumer(
        &self,
        high: u64,
        timeout: Option<Duration>,
        mut done: impl FnMut(Option<u64>, bool) -> bool,
    ) -> Result<Waited<()>, StreamError> {
        let mem = &self.mem;
        let mut failure = None;
        let waited = wait_for(
            &mem.control().space_bell,
            timeout,
            || {
                let released = load_released(mem, self.cached_released, high)
                    .map_err(|e| failure = Some(e))
                    .ok();
                let gone = mem.flags() & FLAG_CONSUMER_GONE != 0;
                done(released, gone).then_some(())
            },
            || consumer_gone(mem),
        );
        match failure {
            Some(e) => Err(e),
            None => Ok(waited),
        }
    }
}

/// Loads the consumer's `released` and checks it lies in `low..=high` (it
/// never decreases and never passes a position the producer has not
/// published: `high` is the oldest one still open).
pub(crate) fn load_released(mem: &RingMem, low: u64, high: u64) -> Result<u64, StreamError> {
    // Acquire: pairs with the consumer's Release store in `release`, so its
    // reads of the slots it released happen before we reuse them.
    let released = mem.control().released.load(Ordering::Acquire);
    if released < low || released > high {
        return Err(StreamError::Corrupt(format!(
            "released count {released} is outside {low}..={high}"
        )));
    }
    Ok(released)
}

impl Drop for ProducerRing {
    fn drop(&mut self) {
        self.flush_quiet();
        self.mem.set_flag(FLAG_PRODUCER_GONE);
        self.mem.control().data_bell.wake();
        self.notify_hub();
        if self.notifier.as_ref().is_some_and(|n| !n.worker_alive()) {
            self.mem.cancel_hand_over();
        }
    }
}

pub(crate) fn consumer_gone(mem: &RingMem) -> bool {
    let flags = mem.flags();
    flags & FLAG_CONSUMER_GONE != 0
        || (flags & FLAG_CONSUMER_ATTACHED != 0 && !mem.peer_alive(Side::Consumer))
}

pub(crate) fn check_id(id: &[u8]) -> Result<(), StreamError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(StreamError::BadId {
            len: id.len(),
            max: MAX_ID_LEN,
        });
    }
    Ok(())
}
