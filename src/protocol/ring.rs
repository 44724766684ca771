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
//!
//! Here: the ring's memory (`RingMem`) and what backs it; the two sides are
//! `ring_producer.rs` and `ring_consumer.rs`, their wait loop `wait.rs`.

use crate::protocol::descriptor::{Descriptor, SideEntry};
use crate::protocol::layout::{Control, Geometry};
use crate::sync::{Ordering, ReadGuard, WriteGuard};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

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

    /// Whether the peer may die without setting its gone flag (it is
    /// another process): a wait must then look at `peer_alive` in slices.
    fn peer_elsewhere(&self) -> bool {
        true
    }

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
    pub(crate) capacity: u64,
    /// What a registration without a size reserves.
    item_bytes: u64,
    /// Bytes of the payload area: a power of two.
    pub(crate) payload_bytes: u64,
    /// The payload is mapped twice back to back: a range of at most
    /// `payload_bytes` from any start is contiguous.
    pub(crate) mirrored: bool,
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

    pub(crate) fn descriptor(&self, position: u64) -> &Descriptor {
        let slot = (position & (self.capacity - 1)) as usize;
        // SAFETY: `slot < capacity` and the table holds `capacity` entries.
        unsafe { &*self.descriptors.as_ptr().add(slot) }
    }

    /// The side entry of `position`'s slot (ids, wide shapes).
    pub(crate) fn side(&self, position: u64) -> &SideEntry {
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

    /// What keeps this memory alive, for a wait on one of its bells made
    /// outside the ring (an event loop's io_uring `FUTEX_WAIT`), and whether
    /// that wait must be sliced to notice a peer's death.
    pub(crate) fn backing(&self) -> (Arc<dyn Backing>, bool) {
        (self.backing.clone(), self.backing.peer_elsewhere())
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
