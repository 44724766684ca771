//! The consumer's low-level handle: the available prefix, items in place,
//! and advancing. [`StreamBuffer`](crate::StreamBuffer) builds the chunk
//! policies on top of it.

use crate::error::StreamError;
use crate::ring::{ConsumerRing, Snapshot};
use crate::view::{ItemView, TensorView};
use std::fmt;
use std::time::Duration;

/// The reading end of a stream: sees the in-order available prefix and
/// reads its items where they lie.
pub struct Consumer {
    pub(crate) ring: ConsumerRing,
    pub(crate) timeout: Option<Duration>,
    last: Snapshot,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("position", &self.ring.consumed())
            .field("available", &self.ring.available())
            .field("all_in", &self.last.all_in)
            .finish()
    }
}

impl Consumer {
    pub(crate) fn from_ring(ring: ConsumerRing, timeout: Option<Duration>) -> Self {
        Consumer {
            ring,
            timeout,
            last: Snapshot {
                available: 0,
                all_in: false,
            },
        }
    }

    /// Looks for newly completed items; returns how many items are
    /// available (in order, not yet consumed).
    ///
    /// # Errors
    ///
    /// [`StreamError::Corrupt`] when shared memory holds an impossible
    /// value, [`StreamError::Abandoned`] when the next item was given up.
    pub fn poll(&mut self) -> Result<u64, StreamError> {
        self.ring.release();
        self.last = self.ring.poll()?;
        Ok(self.last.available)
    }

    /// Waits until at least `min_items` are available or the stream is all
    /// in (done, and every registered item available).
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`], [`StreamError::ProducerGone`], and as
    /// [`poll`](Self::poll).
    pub fn wait_for(
        &mut self,
        min_items: u64,
        timeout: Option<Duration>,
    ) -> Result<u64, StreamError> {
        let snap = self.wait_until(timeout, |s| s.available >= min_items || s.all_in)?;
        Ok(snap.available)
    }

    /// Waits until `ready` accepts a snapshot of the counters.
    pub(crate) fn wait_until(
        &mut self,
        timeout: Option<Duration>,
        ready: impl FnMut(Snapshot) -> bool,
    ) -> Result<Snapshot, StreamError> {
        self.ring.release();
        self.last = self.ring.wait(timeout, ready)?;
        Ok(self.last)
    }

    /// Items available at the last poll.
    pub fn available(&self) -> u64 {
        self.ring.available()
    }

    /// At the last poll: the producer was done and every item was in.
    pub fn is_all_in(&self) -> bool {
        self.last.all_in
    }

    /// The stream position of the first available item.
    pub fn position(&self) -> u64 {
        self.ring.consumed()
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.ring.mem().capacity()
    }

    /// Bytes per slot.
    pub fn slot_bytes(&self) -> u64 {
        self.ring.mem().slot_bytes()
    }

    /// The payload area as this process maps it: `capacity * slot_bytes`
    /// bytes (a shared segment maps the same bytes again right after it).
    pub fn payload_region(&self) -> (*const u8, usize) {
        let mem = self.ring.mem();
        (
            mem.payload_base(),
            (mem.capacity() * mem.slot_bytes()) as usize,
        )
    }

    /// Item `i` of the available prefix (0 is the oldest), in place.
    pub fn item(&self, i: u64) -> Option<ItemView<'_>> {
        (i < self.ring.available()).then(|| {
            let position = self.ring.consumed() + i;
            // SAFETY: the position is in the prefix; it is released only by
            // `consume`, which needs `&mut self`, so not while this borrow
            // lives.
            unsafe { ItemView::new(self.ring.mem(), self.ring.meta(position), position) }
        })
    }

    /// Items `i .. i + n` of the available prefix as one stacked tensor,
    /// when they share dtype and shape (see [`TensorView`]).
    pub fn window(&self, i: u64, n: u64) -> Option<TensorView<'_>> {
        if i.checked_add(n)? > self.ring.available() {
            return None;
        }
        stacked(&self.ring, self.ring.consumed() + i, n)
    }

    /// Moves past the first `n` available items (at most all of them) and
    /// lets the producer reuse their slots.
    pub fn consume(&mut self, n: u64) {
        self.ring.advance(n.min(self.ring.available()));
        self.ring.release();
    }
}

/// `n` items from `start` as one tensor view, when they share dtype and
/// shape and are contiguous in the mapping (always, with the mirror).
pub(crate) fn stacked(ring: &ConsumerRing, start: u64, n: u64) -> Option<TensorView<'_>> {
    if n == 0 {
        return None;
    }
    let mem = ring.mem();
    let first = ring.meta(start);
    let slot = start & (mem.capacity() - 1);
    if slot + n > mem.capacity() && !mem.mirrored() {
        return None;
    }
    if !ring.stackable(start + n - 1, n) {
        return None;
    }
    // Loom: the view reads every slot of the window (see `ItemView::new`).
    #[cfg(loom)]
    for position in start..start + n {
        drop(mem.track_read(position));
    }
    // SAFETY: the `n` positions are in the prefix and unreleased for the
    // borrow of `ring` (released only through `&mut`); their slots are
    // consecutive in memory, across the wrap thanks to the mirror (checked
    // above), `slot_bytes` apart, each holding `first.nbytes` valid bytes.
    Some(unsafe {
        TensorView::new(
            mem.slot_ptr(start),
            n as usize,
            first,
            mem.slot_bytes() as usize,
        )
    })
}
