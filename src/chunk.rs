//! `StreamChunk`: what `pop_chunk` hands the model, its items in place.

use crate::consumer::stacked;
use crate::protocol::ring_consumer::ConsumerRing;
use crate::view::{ItemView, TensorView};
use std::fmt;

/// A chunk popped from a [`StreamBuffer`](crate::StreamBuffer). It borrows
/// its window's slots: while it lives they are not reused; when it is
/// dropped, the slots the stride moved past are released to the producer.
///
/// A chunk cannot outlive the buffer, nor coexist with the next pop:
///
/// ```compile_fail
/// use shmstream::{in_process_buffer, StreamConfig, StreamId, policy::Fixed};
/// let (p, mut buf) = in_process_buffer::<()>(&StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(4), Fixed::new(1).unwrap()).unwrap();
/// p.signal_done();
/// let a = buf.pop_chunk().unwrap();
/// let b = buf.pop_chunk().unwrap(); // error: `buf` is still borrowed by `a`
/// drop((a, b));
/// ```
#[must_use = "a chunk releases its slots when dropped; popping one and dropping it at once skips its items"]
pub struct StreamChunk<'a> {
    ring: &'a mut ConsumerRing,
    chunk_index: u64,
    start_offset: u64,
    len: usize,
    is_final: bool,
    context_items: usize,
    #[cfg(loom)]
    _guards: Vec<crate::sync::ReadGuard>,
}

impl fmt::Debug for StreamChunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamChunk")
            .field("chunk_index", &self.chunk_index)
            .field("start_offset", &self.start_offset)
            .field("len", &self.len)
            .field("is_final", &self.is_final)
            .field("context_items", &self.context_items)
            .finish()
    }
}

impl<'a> StreamChunk<'a> {
    pub(crate) fn new(
        ring: &'a mut ConsumerRing,
        chunk_index: u64,
        start_offset: u64,
        len: usize,
        is_final: bool,
        context_items: usize,
    ) -> Self {
        #[cfg(loom)]
        let _guards = (start_offset..start_offset + len as u64)
            .map(|p| {
                let (offset, meta) = ring.meta(p);
                ring.mem().track_read(offset, meta.nbytes)
            })
            .collect();
        StreamChunk {
            ring,
            chunk_index,
            start_offset,
            len,
            is_final,
            context_items,
            #[cfg(loom)]
            _guards,
        }
    }

    /// Counts popped chunks from 0.
    pub fn chunk_index(&self) -> u64 {
        self.chunk_index
    }

    /// Stream position of the chunk's first item.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// The stream's last chunk: done, every item shown.
    pub fn is_final(&self) -> bool {
        self.is_final
    }

    /// Leading items that an earlier chunk already showed (or that the
    /// policy primed): the consumer trims that many from its output.
    pub fn context_items(&self) -> usize {
        self.context_items
    }

    /// Items in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// A chunk with no items carries no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Item `i` of the window, in place.
    pub fn item(&self, i: usize) -> Option<ItemView<'_>> {
        (i < self.len).then(|| {
            let position = self.start_offset + i as u64;
            // SAFETY: the window's positions are in the prefix and are not
            // released while this chunk (which holds the only `&mut` to the
            // ring) lives.
            unsafe { ItemView::new(self.ring, position) }
        })
    }

    /// The window's items in order.
    pub fn items(&self) -> impl ExactSizeIterator<Item = ItemView<'_>> + '_ {
        (0..self.len).map(move |i| self.item(i).expect("i < len"))
    }

    /// The window's tensor ids in order, read from the side table (see
    /// [`ItemView::id`]: empty for a corrupt one, which the next poll
    /// reports).
    pub fn ids(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len).map(move |i| {
            self.ring
                .id(self.start_offset + i as u64)
                .unwrap_or_default()
        })
    }

    /// The window as one tensor `[n, *shape]` in place, when its items
    /// share dtype and shape; `None` for an empty chunk or mixed items.
    pub fn stacked(&self) -> Option<TensorView<'_>> {
        stacked(self.ring, self.start_offset, self.len as u64)
    }
}

impl Drop for StreamChunk<'_> {
    fn drop(&mut self) {
        // The reads end before the slots are handed back.
        #[cfg(loom)]
        self._guards.clear();
        self.ring.release();
    }
}
