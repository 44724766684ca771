//! The single-producer single-consumer protocol over raw memory: reserve in
//! order, commit in any order, the in-order available prefix, release.
//!
//! No OS calls here beyond the clock and `sched_yield` of the wait loop
//! (sleeping is the doorbell's business, liveness the backing's), so loom,
//! Miri and unit tests run this code on heap memory and production runs the
//! same code on a mapped segment.
//!
//! Positions are 64-bit counters that never wrap; the descriptor of
//! position `p` is `p & mask`. Payload bytes are placed by 64-bit byte
//! positions that never wrap either: reservations follow each other in
//! registration order (FIFO), and releasing position `p` frees the bytes up
//! to the end of its reservation. The ring is full when `capacity` items
//! wait, or when the next reservation would reach past the released bytes
//! plus the payload length.

use crate::error::Resource;
use crate::error::StreamError;
use crate::protocol::layout::{
    placement_align, Bounds, Control, Descriptor, Geometry, ItemId, ItemMeta, SideEntry,
    FLAG_CONSUMER_ATTACHED, FLAG_CONSUMER_GONE, FLAG_DONE, FLAG_KNOWN, FLAG_PRODUCER_GONE,
    MAX_ID_LEN, STATUS_ABANDONED, STATUS_COMMITTED,
};
use crate::protocol::tensor::TensorMeta;
use crate::protocol::wake::Wake;
use crate::sync::{Ordering, ReadGuard, WriteGuard};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which side of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Producer,
    Consumer,
}

/// What holds a ring's memory alive and can tell whether the peer lives.
pub(crate) trait Backing: Send + Sync + fmt::Debug {
    /// Whether the peer process is alive, by a witness the kernel keeps (a
    /// lock it drops when the process dies). In-process memory: always true;
    /// the flags set on drop tell the rest.
    fn peer_alive(&self, peer: Side) -> bool;

    /// The producer is going and nobody will adopt its stream (its worker is
    /// gone): remove the name as usual rather than leave it to a consumer.
    fn cancel_hand_over(&self) {}

    /// The per-slot access trackers shared by both sides (loom only).
    #[cfg(loom)]
    fn trackers(&self) -> &[crate::sync::AccessTracker];
}

/// Where the shared parts of one ring are, as seen by one side.
pub(crate) struct RingMem {
    control: NonNull<Control>,
    descriptors: NonNull<Descriptor>,
    /// The side table: one entry per descriptor.
    side: NonNull<SideEntry>,
    payload: NonNull<u8>,
    /// Items (descriptors): a power of two.
    capacity: u64,
    /// What a registration without a size reserves.
    item_bytes: u64,
    /// Bytes of the payload area: a power of two.
    payload_bytes: u64,
    /// The payload is mapped twice back to back: a range of at most
    /// `payload_bytes` from any start is contiguous.
    mirrored: bool,
    backing: Arc<dyn Backing>,
}

// SAFETY: the pointers point into memory owned by `backing` (a mapping or a
// heap block) that lives as long as this value; every shared field behind
// them is an atomic, and payload bytes are only touched under the protocol
// (a reservation is written only between reserve and commit, read only
// between commit and release), which is what makes moving a side to another
// thread sound.
unsafe impl Send for RingMem {}

impl fmt::Debug for RingMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingMem")
            .field("capacity", &self.capacity)
            .field("item_bytes", &self.item_bytes)
            .field("payload_bytes", &self.payload_bytes)
            .field("mirrored", &self.mirrored)
            .finish()
    }
}

impl RingMem {
    /// # Safety
    ///
    /// `control` points at a `Control`, `descriptors` at `geometry.capacity`
    /// descriptors, `side` at as many side entries, and `payload` at `geometry.payload_bytes` bytes (twice that, the
    /// second half a mirror of the first, when `mirrored`), all valid for
    /// reads for as long as `backing` lives, and for writes where this side
    /// writes (the producer: descriptors, side table and payload; both: the control
    /// block; a consumer's table and payload may be mapped read-only), and
    /// shared only with the one peer that follows this protocol. (A
    /// `Geometry` is checked when built: powers of two, `item_bytes <=
    /// payload_bytes`.)
    pub(crate) unsafe fn new(
        control: NonNull<Control>,
        descriptors: NonNull<Descriptor>,
        side: NonNull<SideEntry>,
        payload: NonNull<u8>,
        geometry: &Geometry,
        mirrored: bool,
        backing: Arc<dyn Backing>,
    ) -> RingMem {
        RingMem {
            control,
            descriptors,
            side,
            payload,
            capacity: geometry.capacity,
            item_bytes: geometry.item_bytes,
            payload_bytes: geometry.payload_bytes,
            mirrored,
            backing,
        }
    }

    pub(crate) fn control(&self) -> &Control {
        // SAFETY: valid for the life of `backing` (constructor contract).
        unsafe { self.control.as_ref() }
    }

    fn descriptor(&self, position: u64) -> &Descriptor {
        let slot = (position & (self.capacity - 1)) as usize;
        // SAFETY: `slot < capacity` and the table holds `capacity` entries.
        unsafe { &*self.descriptors.as_ptr().add(slot) }
    }

    /// The side entry of `position`'s slot (ids, wide shapes).
    fn side(&self, position: u64) -> &SideEntry {
        let slot = (position & (self.capacity - 1)) as usize;
        // SAFETY: `slot < capacity` and the side table holds `capacity`
        // entries.
        unsafe { &*self.side.as_ptr().add(slot) }
    }

    /// Where payload byte position `offset` lies in this mapping.
    pub(crate) fn payload_ptr(&self, offset: u64) -> *mut u8 {
        let at = offset & (self.payload_bytes - 1);
        // SAFETY: `at < payload_bytes`, inside the payload area.
        unsafe { self.payload.as_ptr().add(at as usize) }
    }

    pub(crate) fn payload_base(&self) -> *mut u8 {
        self.payload.as_ptr()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn item_bytes(&self) -> u64 {
        self.item_bytes
    }

    pub(crate) fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    pub(crate) fn mirrored(&self) -> bool {
        self.mirrored
    }

    /// Bytes of the mapping a NIC or device may target: the payload, and
    /// its mirror when there is one (a reservation may cross the wrap).
    pub(crate) fn mapped_payload_bytes(&self) -> u64 {
        self.payload_bytes * if self.mirrored { 2 } else { 1 }
    }

    pub(crate) fn peer_alive(&self, peer: Side) -> bool {
        self.backing.peer_alive(peer)
    }

    pub(crate) fn cancel_hand_over(&self) {
        self.backing.cancel_hand_over()
    }

    pub(crate) fn flags(&self) -> u32 {
        // Acquire: pairs with the Release `fetch_or` of whoever set a bit, so
        // e.g. every registration before `done` is visible after seeing it.
        self.control().flags.load(Ordering::Acquire)
    }

    pub(crate) fn set_flag(&self, flag: u32) {
        self.control().flags.fetch_or(flag, Ordering::Release);
    }

    /// Loom: the trackers of the bytes `offset .. offset + len`.
    #[cfg(loom)]
    fn trackers(&self, offset: u64, len: u64) -> impl Iterator<Item = &crate::sync::AccessTracker> {
        use crate::sync::TRACK_GRANULE;
        let trackers = self.backing.trackers();
        let count = trackers.len() as u64;
        let first = offset / TRACK_GRANULE;
        let last = (offset + len).div_ceil(TRACK_GRANULE);
        (first..last).map(move |g| &trackers[(g % count) as usize])
    }

    pub(crate) fn track_write(&self, _offset: u64, _len: u64) -> WriteGuard {
        WriteGuard {
            #[cfg(loom)]
            _ptrs: self.trackers(_offset, _len).map(|t| t.write()).collect(),
        }
    }

    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn track_read(&self, _offset: u64, _len: u64) -> ReadGuard {
        ReadGuard {
            #[cfg(loom)]
            _ptrs: self.trackers(_offset, _len).map(|t| t.read()).collect(),
        }
    }
}

/// How long one sleep on a doorbell lasts at most (so a dead peer is
/// noticed within it).
pub(crate) const SLEEP_SLICE: Duration = Duration::from_millis(20);

/// How long a waiter spins (with short pauses between looks) before it
/// starts yielding, and how long it keeps looking in all before it sleeps:
/// about the cost of a futex sleep and wake-up on a VM (15-30 us).
#[cfg(not(loom))]
const SPIN_PHASE: Duration = Duration::from_micros(5);
#[cfg(not(loom))]
const SPIN_BUDGET: Duration = Duration::from_micros(30);

/// Result of waiting for a condition.
pub(crate) enum Waited<T> {
    Ready(T),
    TimedOut,
    PeerGone,
}

/// Spins briefly with growing pauses, then yields, then sleeps on `bell` in
/// slices, checking `peer_gone` between slices. `ready` is re-checked after
/// the peer is found gone, so what the peer completed before it died is not
/// lost. Never spins without yielding: on two cores a spinning waiter could
/// starve the peer it waits for.
pub(crate) fn wait_for<T>(
    bell: &crate::sync::doorbell::Doorbell,
    timeout: Option<Duration>,
    mut ready: impl FnMut() -> Option<T>,
    mut peer_gone: impl FnMut() -> bool,
) -> Waited<T> {
    let start = timeout.map(|_| Instant::now());
    // Under loom, straight to the doorbell: spinning only multiplies the
    // interleavings, the handshake is what must be checked.
    #[cfg(not(loom))]
    {
        let begun = Instant::now();
        // A short timeout shortens the spinning too.
        let budget = timeout.map_or(SPIN_BUDGET, |t| t.min(SPIN_BUDGET));
        let mut pauses = 1u32;
        loop {
            if let Some(v) = ready() {
                return Waited::Ready(v);
            }
            let waited = begun.elapsed();
            if waited < SPIN_PHASE.min(budget) {
                // Pauses that double up to 16 between looks: each look at
                // the writer's line takes it from the writer, so looking a
                // little less often lets it publish a batch, while a new
                // item is still seen within a fraction of a microsecond.
                for _ in 0..pauses {
                    std::hint::spin_loop();
                }
                pauses = (pauses * 2).min(16);
            } else if waited < budget {
                // Then look between yields, for about what a futex sleep and
                // wake-up cost here; only then sleep.
                std::thread::yield_now();
            } else {
                break;
            }
        }
    }
    loop {
        if let Some(v) = ready() {
            return Waited::Ready(v);
        }
        if peer_gone() {
            return match ready() {
                Some(v) => Waited::Ready(v),
                None => Waited::PeerGone,
            };
        }
        let slice = match (timeout, start) {
            (Some(t), Some(s)) => {
                let elapsed = s.elapsed();
                if elapsed >= t {
                    return Waited::TimedOut;
                }
                Some((t - elapsed).min(SLEEP_SLICE))
            }
            _ if cfg!(loom) => None,
            _ => Some(SLEEP_SLICE),
        };
        // The re-check covers the peer's departure too: a leaving peer sets
        // its flag and rings, and that ring must not fall between our look
        // at `peer_gone` above and the sleep.
        // Once the peer is gone, look again: what it completed before it
        // left is still delivered.
        let woke = bell.sleep(slice, || match ready() {
            Some(v) => Some(Some(v)),
            None if peer_gone() => Some(ready()),
            None => None,
        });
        match woke {
            Some(Some(v)) => return Waited::Ready(v),
            Some(None) => return Waited::PeerGone,
            None => {}
        }
    }
}

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
    /// End of the newest reservation: the next one starts at or after it.
    head: u64,
    /// By slot: the state of the position that last reserved it.
    states: Box<[SlotState]>,
    /// No position below it is `Held` or `Pending`; at most `next`. The
    /// consumer cannot have released past it (it never saw it complete), so
    /// a `released` beyond it is corrupt, not a licence to reuse the slot.
    oldest_open: u64,
    /// A stream of a worker hub: marks the stream ready in the hub at every
    /// publication (after the stream's own bell), so the worker waiting on
    /// all its streams at once wakes up. The ring knows only the hook.
    notifier: Option<Box<dyn Wake>>,
}

impl ProducerRing {
    pub(crate) fn new(mem: RingMem) -> Self {
        let capacity = mem.capacity as usize;
        ProducerRing {
            mem,
            next: 0,
            cached_released: 0,
            starts: vec![0; capacity].into_boxed_slice(),
            head: 0,
            states: vec![SlotState::Free; capacity].into_boxed_slice(),
            oldest_open: 0,
            notifier: None,
        }
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

    fn has_space(&mut self, len: u64) -> Result<Option<Resource>, StreamError> {
        if self.short_of(self.cached_released, len).is_none() {
            return Ok(None);
        }
        let high = self.oldest_open();
        let released = load_released(&self.mem, self.cached_released, high)?;
        self.cached_released = released;
        Ok(self.short_of(released, len))
    }

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
    pub(crate) fn reserve_quiet(&mut self, id: &[u8], len: u64) -> Reservation {
        let position = self.next;
        let offset = self.place(len);
        self.mem
            .descriptor(position)
            .write_registration(self.mem.side(position), id, offset, len);
        self.head = offset + len;
        self.starts[(position & (self.mem.capacity - 1)) as usize] = offset;
        self.states[(position & (self.mem.capacity - 1)) as usize] = SlotState::Held;
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

    /// Publishes the slot of `position` as complete with `meta`, whose size
    /// the caller checked against the slot. The position must be `Held`.
    pub(crate) fn commit(&mut self, position: u64, meta: &TensorMeta) {
        self.commit_quiet(position, meta);
        self.ring_bells();
    }

    /// As [`commit`](Self::commit), without ringing: the `seq` store only.
    /// A batch commits its items this way and then calls
    /// [`ring_bells`](Self::ring_bells) once, before it returns.
    pub(crate) fn commit_quiet(&mut self, position: u64, meta: &TensorMeta) {
        self.close(position);
        let desc = self.mem.descriptor(position);
        desc.write_meta(
            self.mem.side(position),
            STATUS_COMMITTED,
            meta.dtype().code(),
            meta.dims_raw(),
            meta.ndim(),
            meta.nbytes(),
        );
        self.publish_quiet(desc, position);
    }

    /// Publishes the slot of `position` as given up: the consumer reports it
    /// instead of waiting for it for ever.
    pub(crate) fn abandon(&mut self, position: u64) {
        self.close(position);
        let desc = self.mem.descriptor(position);
        desc.write_meta(self.mem.side(position), STATUS_ABANDONED, 0, &[0; 8], 0, 0);
        self.publish(desc, position);
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
        self.publish_quiet(desc, position);
        self.ring_bells();
    }

    /// The completion store alone.
    fn publish_quiet(&self, desc: &Descriptor, position: u64) {
        // Release: pairs with the consumer's Acquire load of `seq` in `poll`:
        // the payload bytes and the metadata written before are visible to a
        // consumer that sees the sequence. `--cfg shmstream_weaken=
        // "commit_release"` makes it Relaxed to show loom catching it.
        #[cfg(not(shmstream_weaken = "commit_release"))]
        desc.seq.store(position + 1, Ordering::Release);
        #[cfg(shmstream_weaken = "commit_release")]
        desc.seq.store(position + 1, Ordering::Relaxed);
    }

    /// Tells a sleeping consumer (and the worker hub, if any) about every
    /// completion stored before: the handshake's fence orders all of them
    /// before the look at `sleepers`, so one ring after the last store of a
    /// batch covers the whole batch.
    pub(crate) fn ring_bells(&self) {
        self.mem.control().data_bell.ring();
        self.notify_hub();
    }

    /// Marks the stream done and wakes the consumer.
    pub(crate) fn signal_done(&self) {
        self.mem.set_flag(FLAG_DONE);
        self.mem.control().data_bell.ring();
        self.notify_hub();
    }

    /// Waits until the consumer released everything registered (or left).
    pub(crate) fn wait_drained(&mut self, timeout: Option<Duration>) -> Result<(), StreamError> {
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
fn load_released(mem: &RingMem, low: u64, high: u64) -> Result<u64, StreamError> {
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
        self.mem.set_flag(FLAG_PRODUCER_GONE);
        self.mem.control().data_bell.wake();
        self.notify_hub();
        if self.notifier.as_ref().is_some_and(|n| !n.worker_alive()) {
            self.mem.cancel_hand_over();
        }
    }
}

fn consumer_gone(mem: &RingMem) -> bool {
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
struct Cursors {
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
struct IdCache {
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
fn producer_gone(mem: &RingMem) -> bool {
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
                    return Err(StreamError::Abandoned {
                        position,
                        id: id.as_str().to_string(),
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
