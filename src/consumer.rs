//! The consumer's low-level handle: the available prefix, items in place,
//! and advancing. [`StreamBuffer`](crate::StreamBuffer) builds the chunk
//! policies on top of it.

use crate::error::StreamError;
use crate::protocol::ring_consumer::{ConsumerRing, Snapshot};
use crate::view::{ItemView, TensorView};
use std::fmt;
use std::time::Duration;

/// The reading end of a stream: sees the in-order available prefix and
/// reads its items where they lie.
pub struct Consumer {
    pub(crate) ring: ConsumerRing,
    pub(crate) timeout: Option<Duration>,
    pub(crate) last: Snapshot,
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
    /// in (done, and every registered item available), at most `timeout`
    /// (`None`: until then or the producer's death).
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

    /// Items the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.ring.mem().capacity()
    }

    /// Bytes a registration without a size reserves.
    pub fn item_bytes(&self) -> u64 {
        self.ring.mem().item_bytes()
    }

    /// Bytes of the payload ring.
    pub fn payload_bytes(&self) -> u64 {
        self.ring.mem().payload_bytes()
    }

    /// The payload area as this process maps it: `payload_bytes`, twice
    /// that when it is mapped twice back to back (a shared segment or an
    /// in-process stream outside loom and Miri).
    pub fn payload_region(&self) -> (*const u8, usize) {
        let mem = self.ring.mem();
        (mem.payload_base(), mem.mapped_payload_bytes() as usize)
    }

    /// Item `i` of the available prefix (0 is the oldest), in place.
    pub fn item(&self, i: u64) -> Option<ItemView<'_>> {
        (i < self.ring.available()).then(|| {
            let position = self.ring.consumed() + i;
            // SAFETY: the position is in the prefix; it is released only by
            // `consume`, which needs `&mut self`, so not while this borrow
            // lives.
            unsafe { ItemView::new(&self.ring, position) }
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
/// shape and lie at one constant distance (back to back for sizes that are
/// multiples of 8), within one contiguous range of the mapping (always,
/// with the mirror).
pub(crate) fn stacked(ring: &ConsumerRing, start: u64, n: u64) -> Option<TensorView<'_>> {
    if n == 0 {
        return None;
    }
    let mem = ring.mem();
    let (first_offset, first) = ring.meta(start);
    let stride = ring.stack_stride(start + n - 1, n)?;
    let span = stride * (n - 1) + first.nbytes;
    if !mem.mirrored() && (first_offset & (mem.payload_bytes() - 1)) + span > mem.payload_bytes() {
        return None;
    }
    // Loom: the view reads every item of the window (see `ItemView::new`).
    #[cfg(loom)]
    for position in start..start + n {
        let (offset, meta) = ring.meta(position);
        drop(mem.track_read(offset, meta.nbytes));
    }
    // SAFETY: the `n` positions are in the prefix and unreleased for the
    // borrow of `ring` (released only through `&mut`). Their reservations
    // were checked at poll time to follow each other in the payload, each
    // within one payload length of the released bytes, so the whole span
    // (`stride * (n - 1) + nbytes <= payload_bytes`, the last item ending
    // within the reservations) lies in the mapping: across the wrap thanks
    // to the mirror, or checked above not to cross it. Each item holds
    // `first.nbytes` valid bytes, `stride` apart.
    Some(unsafe {
        TensorView::new(
            mem.payload_ptr(first_offset),
            n as usize,
            first,
            stride as usize,
        )
    })
}
