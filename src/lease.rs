//! Leased chunks: a chunk popped without a borrow of its buffer, whose
//! slots stay unreleased until the lease is handed back.
//!
//! A [`StreamChunk`](crate::StreamChunk) borrows its buffer mutably, so the
//! borrow checker proves that its views never outlive its slots. A binding
//! whose views live as long as a garbage collector decides (Python's numpy
//! arrays and DLPack capsules) cannot hold such a borrow. It pops a
//! [`ChunkLease`] instead: a plain value naming the chunk's window. The
//! buffer advances as for any chunk, but releases slots only up to the
//! oldest position a live lease shows, so the producer never reuses them;
//! [`StreamBuffer::release_lease`] hands the lease back.
//!
//! The buffer's lease table is the authority: a view is given only for a
//! lease the table holds, by the window the table recorded, so a lease from
//! another buffer (or a forged one) finds nothing rather than memory that
//! is being reused.

use crate::buffer::StreamBuffer;
use crate::consumer::stacked;
use crate::error::StreamError;
use crate::protocol::ring_consumer::ConsumerRing;
use crate::view::{ItemView, TensorView};
use std::sync::Mutex;
use std::time::Duration;

/// Serial numbers of leases, unique in the process, so that a lease is
/// recognised only by the buffer that issued it.
static NEXT_SERIAL: Mutex<u64> = Mutex::new(1);

fn next_serial() -> u64 {
    // A poisoned lock still holds a valid counter (the increment cannot
    // panic halfway).
    let mut next = NEXT_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let serial = *next;
    *next += 1;
    serial
}

/// A chunk popped by [`StreamBuffer::pop_lease`]: its window's slots stay
/// unreleased until it is handed back with [`StreamBuffer::release_lease`].
/// It does not borrow the buffer; its items are read through the buffer
/// ([`StreamBuffer::lease_item`], [`StreamBuffer::lease_stacked`]).
///
/// Not `Clone`: one lease, one hand-back. A lease dropped without being
/// handed back keeps its slots for the buffer's life (the producer then
/// runs out of room; nothing unsound happens).
///
/// # Examples
///
/// ```
/// use shmstream::{in_process_buffer, policy::Fixed, DType, StreamConfig, StreamId, TensorMeta};
/// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(4);
/// let (producer, mut buffer) = in_process_buffer::<()>(&cfg, Fixed::new(2).unwrap()).unwrap();
/// for i in 0..4u32 {
///     let meta = TensorMeta::new(DType::U32, &[1]).unwrap();
///     producer.register(&format!("t{i}")).unwrap().write(meta, &i.to_le_bytes()).unwrap();
/// }
/// let first = buffer.pop_lease().unwrap();
/// let second = buffer.pop_lease().unwrap();    // the first is still readable
/// assert_eq!(buffer.lease_stacked(&first).unwrap().item(1).unwrap(), 1u32.to_le_bytes());
/// assert_eq!(buffer.lease_item(&second, 0).unwrap().bytes(), 2u32.to_le_bytes());
/// // The ring is full and nothing is released while `first` is out.
/// assert!(producer.try_register("t4").is_err());
/// buffer.release_lease(first).unwrap();
/// assert!(producer.try_register("t4").is_ok()); // (abandoned at once: dropped)
/// buffer.release_lease(second).unwrap();
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lease keeps its slots until it is handed back with release_lease"]
pub struct ChunkLease {
    serial: u64,
    chunk_index: u64,
    start_offset: u64,
    len: usize,
    is_final: bool,
    context_items: usize,
}

impl ChunkLease {
    /// Counts popped chunks from 0 (leased or not).
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

    /// Leading items that an earlier chunk already showed (or primed).
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
}

/// [`StreamBuffer::release_lease`] was handed a lease this buffer did not
/// issue (or no longer holds); it comes back untouched.
#[derive(Debug, PartialEq, Eq)]
pub struct ForeignLease(pub ChunkLease);

impl std::fmt::Display for ForeignLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chunk {} (lease {}) was not issued by this stream buffer",
            self.0.chunk_index, self.0.serial
        )
    }
}

impl std::error::Error for ForeignLease {}

impl<E> StreamBuffer<E> {
    /// Pops the next chunk (as [`pop_chunk`](Self::pop_chunk)) as a lease:
    /// the buffer advances, but the chunk's slots stay unreleased until the
    /// lease is handed back with [`release_lease`](Self::release_lease).
    ///
    /// # Errors
    ///
    /// [`StreamError::NotReady`] when `has_chunk_ready()` is false (nothing
    /// changes), and as [`Consumer::poll`](crate::Consumer::poll).
    pub fn pop_lease(&mut self) -> Result<ChunkLease, StreamError> {
        let available = self.consumer.poll()?;
        self.lease_planned(available)
    }

    /// As [`next_chunk_timeout`](Self::next_chunk_timeout), popping a
    /// lease: waits at most `timeout` (`None`: for ever) for a chunk;
    /// `Ok(None)` once the final chunk was popped.
    ///
    /// # Errors
    ///
    /// As [`next_chunk`](Self::next_chunk).
    pub fn next_lease_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ChunkLease>, StreamError> {
        match self.wait_chunk(timeout)? {
            Some(available) => self.lease_planned(available).map(Some),
            None => Ok(None),
        }
    }

    fn lease_planned(&mut self, available: u64) -> Result<ChunkLease, StreamError> {
        let all_in = self.consumer.is_all_in();
        let plan = self
            .chunker
            .pop(available as usize, all_in)
            .ok_or(StreamError::NotReady)?;
        let ring = &mut self.consumer.ring;
        assert_eq!(
            plan.start_offset,
            ring.consumed(),
            "chunker and ring disagree"
        );
        let serial = next_serial();
        self.leases
            .live
            .insert(serial, (plan.start_offset, plan.window));
        if plan.window > 0 {
            *self.leases.holds.entry(plan.start_offset).or_insert(0) += 1;
        }
        // The hold is set before the advance can release anything: the
        // window (at or after `consumed`, so at or after `released`) stays.
        ring.set_hold(self.leases.hold());
        ring.advance(plan.advance as u64);
        ring.release();
        Ok(ChunkLease {
            serial,
            chunk_index: plan.chunk_index,
            start_offset: plan.start_offset,
            len: plan.window,
            is_final: plan.is_final,
            context_items: plan.context_items,
        })
    }

    /// Hands a lease back: its slots are released as soon as no older live
    /// lease holds them (and the buffer has moved past them), and a waiting
    /// producer is woken.
    ///
    /// # Errors
    ///
    /// [`ForeignLease`] (with the lease) when this buffer did not issue it.
    pub fn release_lease(&mut self, lease: ChunkLease) -> Result<(), ForeignLease> {
        if !self.leases.live.contains_key(&lease.serial) {
            return self.release_retired(lease);
        }
        self.leases.forget(lease.serial);
        let ring = &mut self.consumer.ring;
        ring.set_hold(self.leases.hold());
        ring.release();
        Ok(())
    }

    /// Hands back a lease of a ring the stream moved away from
    /// (`grow.rs`); the ring goes with its last lease.
    fn release_retired(&mut self, lease: ChunkLease) -> Result<(), ForeignLease> {
        let Some(i) = self
            .retired
            .iter()
            .position(|r| r.leases.live.contains_key(&lease.serial))
        else {
            return Err(ForeignLease(lease));
        };
        self.retired[i].leases.forget(lease.serial);
        if self.retired[i].leases.live.is_empty() {
            self.retired.remove(i);
        }
        Ok(())
    }

    /// Live leases: popped and not yet handed back.
    pub fn live_leases(&self) -> usize {
        self.leases.live.len()
            + self
                .retired
                .iter()
                .map(|r| r.leases.live.len())
                .sum::<usize>()
    }

    /// The ring a live lease reads from, and its window.
    fn lease_home(&self, serial: u64) -> Option<(&ConsumerRing, (u64, usize))> {
        if let Some(window) = self.leases.window(serial) {
            return Some((&self.consumer.ring, window));
        }
        self.retired
            .iter()
            .find_map(|r| r.leases.window(serial).map(|w| (&r.ring, w)))
    }

    /// Item `i` of a leased chunk, in place; `None` past its end or for a
    /// lease this buffer does not hold.
    pub fn lease_item(&self, lease: &ChunkLease, i: usize) -> Option<ItemView<'_>> {
        let (ring, (start, len)) = self.lease_home(lease.serial)?;
        (i < len).then(|| {
            let position = start + i as u64;
            // SAFETY: the position is in the window of a live lease: it was
            // in the available prefix when popped, and the ring's hold keeps
            // it unreleased until the lease is handed back, which needs
            // `&mut self`, so not while this borrow lives. A ring the
            // stream moved away from (`grow.rs`) has no producer left: its
            // ring, kept with the lease, is never written again.
            unsafe { ItemView::new(ring, position) }
        })
    }

    /// A leased chunk's window as one tensor `[n, *shape]` in place, when
    /// its items share dtype and shape; `None` for an empty chunk, mixed
    /// items, or a lease this buffer does not hold.
    pub fn lease_stacked(&self, lease: &ChunkLease) -> Option<TensorView<'_>> {
        let (ring, (start, len)) = self.lease_home(lease.serial)?;
        // The window is held unreleased (see `lease_item`).
        stacked(ring, start, len as u64)
    }

    /// The tensor ids of a leased chunk's window, in order (empty for a
    /// lease this buffer does not hold; an id is empty when corrupt, see
    /// [`ItemView::id`]).
    pub fn lease_ids(&self, lease: &ChunkLease) -> impl ExactSizeIterator<Item = &str> + '_ {
        let (ring, (start, len)) = self
            .lease_home(lease.serial)
            .unwrap_or((&self.consumer.ring, (0, 0)));
        (0..len).map(move |i| ring.id(start + i as u64).unwrap_or_default())
    }
}
