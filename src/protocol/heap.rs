//! A ring on the heap: both sides in one process. This is what loom, Miri
//! and the in-process tests run the protocol on, and what
//! the in-process constructors hand out. No OS call, no mirror: a
//! stacked view of a window that wraps around the ring is not available
//! here (a shared-memory segment maps its payload twice and has it).

use crate::protocol::descriptor::{Descriptor, SideEntry};
use crate::protocol::layout::{Control, Geometry};
use crate::protocol::ring::{Backing, RingMem, Side};
use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

#[derive(Debug)]
struct HeapBacking {
    control: NonNull<Control>,
    descriptors: NonNull<[Descriptor]>,
    side: NonNull<[SideEntry]>,
    payload: NonNull<u8>,
    payload_layout: Layout,
    #[cfg(loom)]
    trackers: Box<[crate::sync::AccessTracker]>,
}

// SAFETY: the backing owns its allocations and never touches them except
// to free them in `drop`, after both sides are gone; the two sides reach
// them through `RingMem`, under the protocol.
unsafe impl Send for HeapBacking {}
// SAFETY: as above: shared references to the backing give no access.
unsafe impl Sync for HeapBacking {}

impl Backing for HeapBacking {
    fn peer_alive(&self, _peer: Side) -> bool {
        // In one process a peer cannot die alone; dropping a handle sets
        // the gone flag, which the ring checks before asking us.
        true
    }

    fn peer_elsewhere(&self) -> bool {
        false
    }

    #[cfg(loom)]
    fn trackers(&self) -> &[crate::sync::AccessTracker] {
        &self.trackers
    }
}

impl Drop for HeapBacking {
    fn drop(&mut self) {
        // SAFETY: these came from `Box::into_raw` and `alloc_zeroed` with
        // `payload_layout` in `heap_ring`, and are freed once, here, when
        // the last `RingMem` (holding an `Arc` of us) is gone.
        unsafe {
            drop(Box::from_raw(self.control.as_ptr()));
            drop(Box::from_raw(self.descriptors.as_ptr()));
            drop(Box::from_raw(self.side.as_ptr()));
            alloc::dealloc(self.payload.as_ptr(), self.payload_layout);
        }
    }
}

/// Allocates a ring of the checked `geometry` (`capacity` items over
/// `payload_bytes` of payload, both powers of two, the payload at least a
/// page) and returns the producer's and the consumer's view of it.
pub(crate) fn heap_ring(geometry: &Geometry) -> (RingMem, RingMem) {
    let (capacity, payload_bytes) = (geometry.capacity, geometry.payload_bytes);
    let control = NonNull::from(Box::leak(Box::new(Control::new())));
    let table: Box<[Descriptor]> = (0..capacity).map(|_| Descriptor::new()).collect();
    let descriptors = NonNull::from(Box::leak(table));
    let side: Box<[SideEntry]> = (0..capacity).map(|_| SideEntry::new()).collect();
    let side = NonNull::from(Box::leak(side));
    let payload_layout = Layout::from_size_align(payload_bytes as usize, 4096)
        .expect("payload size was checked by the caller");
    // SAFETY: the layout has a non-zero size (the payload is at least a
    // page).
    let payload = NonNull::new(unsafe { alloc::alloc_zeroed(payload_layout) })
        .unwrap_or_else(|| alloc::handle_alloc_error(payload_layout));
    let backing: Arc<dyn Backing> = Arc::new(HeapBacking {
        control,
        descriptors,
        side,
        payload,
        payload_layout,
        #[cfg(loom)]
        trackers: (0..payload_bytes / crate::sync::TRACK_GRANULE)
            .map(|_| Default::default())
            .collect(),
    });
    let side = || {
        // SAFETY: the pointers come from the allocations above, sized for
        // `capacity` descriptors, as many side entries and `payload_bytes`,
        // owned by `backing`,
        // which each view keeps alive.
        unsafe {
            RingMem::new(
                control,
                descriptors.cast(),
                side.cast(),
                payload,
                &geometry,
                false,
                backing.clone(),
            )
        }
    };
    (side(), side())
}
