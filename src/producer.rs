//! The producer's handle: registers tensor ids in stream order, hands out
//! writable slots, commits them in any order, and signals done.

use crate::error::StreamError;
use crate::layout::MAX_ID_LEN;
use crate::ring::{check_id, ProducerRing};
use crate::sync::WriteGuard;
use crate::tensor::TensorMeta;
use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

/// The writing end of a stream. One per stream; it is `Send` but not
/// `Sync`: registration must happen from one thread at a time, in order.
/// Several [`Slot`]s may be outstanding at once and be committed in any
/// order, as RDMA completions arrive.
///
/// # Examples
///
/// ```
/// use shmstream::{in_process, DType, StreamConfig, TensorMeta};
/// let (producer, mut consumer) = in_process(&StreamConfig::new("r", "e", "p").capacity(4)).unwrap();
/// let mut a = producer.register("t0").unwrap();
/// let mut b = producer.register("t1").unwrap();
/// b.payload_mut()[..4].copy_from_slice(&2f32.to_le_bytes());
/// b.commit(TensorMeta::new(DType::F32, &[1]).unwrap()).unwrap(); // lands first
/// assert_eq!(consumer.poll().unwrap(), 0); // t1 waits, invisible, for t0
/// a.payload_mut()[..4].copy_from_slice(&1f32.to_le_bytes());
/// a.commit(TensorMeta::new(DType::F32, &[1]).unwrap()).unwrap();
/// assert_eq!(consumer.poll().unwrap(), 2);
/// ```
pub struct Producer {
    ring: RefCell<ProducerRing>,
    pending: RefCell<Pending>,
    timeout: Option<Duration>,
    /// Removes the segment's name when the producer goes (shared memory only).
    #[cfg(not(loom))]
    pub(crate) unlink_on_drop: Option<String>,
}

/// The producer's private record of registered slots that wait for their
/// bytes, for the by-id calls (`pre_read_register`, `put`).
struct Pending {
    /// By slot: the id registered there and whether it still waits.
    entries: Box<[PendingEntry]>,
    /// No position below it waits.
    oldest: u64,
}

#[derive(Clone, Copy)]
struct PendingEntry {
    waiting: bool,
    id_len: u8,
    id: [u8; MAX_ID_LEN],
}

impl Pending {
    fn entry(&mut self, position: u64) -> &mut PendingEntry {
        let mask = self.entries.len() as u64 - 1;
        &mut self.entries[(position & mask) as usize]
    }

    /// The waiting position registered under `id`, scanning only the
    /// positions that may still wait.
    fn find(&mut self, id: &[u8], next: u64) -> Option<u64> {
        while self.oldest < next && !self.entry(self.oldest).waiting {
            self.oldest += 1;
        }
        (self.oldest..next).find(|&p| {
            let e = self.entry(p);
            e.waiting && &e.id[..e.id_len as usize] == id
        })
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.borrow();
        f.debug_struct("Producer")
            .field("capacity", &ring.mem().capacity())
            .field("slot_bytes", &ring.mem().slot_bytes())
            .field("registered", &ring.registered())
            .finish()
    }
}

impl Producer {
    pub(crate) fn from_ring(ring: ProducerRing, timeout: Option<Duration>) -> Producer {
        let capacity = ring.mem().capacity() as usize;
        Producer {
            ring: RefCell::new(ring),
            pending: RefCell::new(Pending {
                entries: vec![
                    PendingEntry {
                        waiting: false,
                        id_len: 0,
                        id: [0; MAX_ID_LEN]
                    };
                    capacity
                ]
                .into_boxed_slice(),
                oldest: 0,
            }),
            timeout,
            #[cfg(not(loom))]
            unlink_on_drop: None,
        }
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.ring.borrow().mem().capacity()
    }

    /// Bytes per slot.
    pub fn slot_bytes(&self) -> u64 {
        self.ring.borrow().mem().slot_bytes()
    }

    /// Ids registered so far (the next position).
    pub fn registered(&self) -> u64 {
        self.ring.borrow().registered()
    }

    /// The payload area, `capacity * slot_bytes` bytes: register it once
    /// with a NIC or a GPU runtime, then land each tensor at its slot's
    /// [`payload_offset`](Slot::payload_offset).
    pub fn payload_region(&self) -> (*mut u8, usize) {
        let ring = self.ring.borrow();
        let mem = ring.mem();
        (
            mem.payload_base(),
            (mem.capacity() * mem.slot_bytes()) as usize,
        )
    }

    /// Reserves the next slot of the stream for `id`, waiting up to the
    /// configured timeout while the ring is full.
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`] (retry later), [`StreamError::ConsumerGone`],
    /// [`StreamError::AfterDone`], [`StreamError::BadId`].
    pub fn register(&self, id: &str) -> Result<Slot<'_>, StreamError> {
        self.register_timeout(id, self.timeout)
    }

    /// As [`register`](Self::register), waiting at most `timeout` (`None`:
    /// until space or the consumer's death).
    ///
    /// # Errors
    ///
    /// As [`register`](Self::register).
    pub fn register_timeout(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Slot<'_>, StreamError> {
        let position = self.ring.borrow_mut().reserve(id.as_bytes(), timeout)?;
        Ok(self.slot(position, id.as_bytes()))
    }

    /// Reserves the next slot without waiting.
    ///
    /// # Errors
    ///
    /// [`StreamError::Full`] when every slot waits for the consumer; the
    /// others as [`register`](Self::register).
    pub fn try_register(&self, id: &str) -> Result<Slot<'_>, StreamError> {
        let position = self.ring.borrow_mut().try_reserve(id.as_bytes())?;
        Ok(self.slot(position, id.as_bytes()))
    }

    fn slot(&self, position: u64, id: &[u8]) -> Slot<'_> {
        let mut pending = self.pending.borrow_mut();
        let entry = pending.entry(position);
        entry.waiting = true;
        entry.id_len = id.len() as u8;
        entry.id[..id.len()].copy_from_slice(id);
        drop(pending);
        self.handle(position)
    }

    /// A handle for the reserved, uncommitted slot of `position`.
    fn handle(&self, position: u64) -> Slot<'_> {
        Slot {
            producer: self,
            position,
            guard: Some(self.ring.borrow().mem().track_write(position)),
            done: false,
        }
    }

    /// The reference's `pre_read_register`: reserves the next slot for `id`
    /// and keeps it pending until [`put`](Self::put) names the id. Returns
    /// the slot's offset in the payload region, where a NIC may write.
    ///
    /// # Errors
    ///
    /// [`StreamError::DuplicateId`] when `id` is registered and not yet put;
    /// otherwise as [`register`](Self::register).
    pub fn pre_read_register(&self, id: &str) -> Result<u64, StreamError> {
        check_id(id.as_bytes())?;
        let next = self.registered();
        if self
            .pending
            .borrow_mut()
            .find(id.as_bytes(), next)
            .is_some()
        {
            return Err(StreamError::DuplicateId { id: id.to_string() });
        }
        let slot = self.register(id)?;
        let offset = slot.payload_offset();
        slot.keep_pending();
        Ok(offset)
    }

    /// The reference's `put`: copies `bytes` into the slot registered for
    /// `id` and commits it with `meta`.
    ///
    /// # Errors
    ///
    /// [`StreamError::UnknownId`], [`StreamError::SizeMismatch`] when
    /// `bytes` disagrees with `meta`, [`StreamError::TooLarge`]. On error
    /// the slot stays pending: the call can be repeated with good input.
    pub fn put(&self, id: &str, meta: TensorMeta, bytes: &[u8]) -> Result<(), StreamError> {
        if bytes.len() as u64 != meta.nbytes() {
            return Err(StreamError::SizeMismatch {
                given: bytes.len() as u64,
                expected: meta.nbytes(),
            });
        }
        let mut slot = self.pending_slot(id)?;
        let payload = slot.payload_mut();
        if bytes.len() > payload.len() {
            let nbytes = bytes.len() as u64;
            slot.keep_pending();
            return Err(StreamError::TooLarge {
                nbytes,
                slot_bytes: self.slot_bytes(),
            });
        }
        payload[..bytes.len()].copy_from_slice(bytes);
        slot.commit_or_keep_pending(meta)
    }

    /// Commits the slot registered for `id` whose bytes were written in
    /// place (by a NIC, at the offset `pre_read_register` returned).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), without the size comparison with given bytes.
    pub fn put_in_place(&self, id: &str, meta: TensorMeta) -> Result<(), StreamError> {
        self.pending_slot(id)?.commit_or_keep_pending(meta)
    }

    /// The slot pending for `id`, as a handle (re-created: the handle of
    /// `pre_read_register` was not kept).
    fn pending_slot(&self, id: &str) -> Result<Slot<'_>, StreamError> {
        let next = self.registered();
        let position = self
            .pending
            .borrow_mut()
            .find(id.as_bytes(), next)
            .ok_or_else(|| StreamError::UnknownId { id: id.to_string() })?;
        Ok(self.handle(position))
    }

    /// The producer's last word: nothing more will be registered.
    pub fn signal_done(&self) {
        self.ring.borrow().signal_done();
    }

    /// Waits until the consumer has released every registered item (so the
    /// producer may exit without cutting the stream short).
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`], [`StreamError::ConsumerGone`].
    pub fn wait_drained(&self, timeout: Option<Duration>) -> Result<(), StreamError> {
        self.ring.borrow_mut().wait_drained(timeout)
    }
}

/// A reserved slot: write the tensor's bytes in place, then commit. Dropped
/// without a commit, the slot is published as abandoned, and the consumer
/// reports it (instead of waiting for it for ever).
pub struct Slot<'p> {
    producer: &'p Producer,
    position: u64,
    /// Held from reservation to commit (loom's data-race tracking).
    guard: Option<WriteGuard>,
    done: bool,
}

impl fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("position", &self.position)
            .finish()
    }
}

/// A commit that was refused, with the slot handed back so the caller can
/// fix the metadata and commit again.
#[derive(Debug)]
pub struct CommitError<'p> {
    /// The slot, still reserved.
    pub slot: Slot<'p>,
    /// What was wrong.
    pub error: StreamError,
}

impl fmt::Display for CommitError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for CommitError<'_> {}

impl<'p> Slot<'p> {
    /// The slot's stream position (0 for the first registered id).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Byte offset of this slot within [`Producer::payload_region`].
    pub fn payload_offset(&self) -> u64 {
        let ring = self.producer.ring.borrow();
        (self.position & (ring.mem().capacity() - 1)) * ring.mem().slot_bytes()
    }

    /// The slot's bytes, `slot_bytes` long, to write the tensor into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let ring = self.producer.ring.borrow();
        let mem = ring.mem();
        let len = mem.slot_bytes() as usize;
        let ptr = mem.slot_ptr(self.position);
        // SAFETY: the slot of a reserved, uncommitted position belongs to
        // this handle alone: the consumer does not read it before the
        // commit, the producer reserves each position once, and no other
        // `Slot` for it exists (the by-id calls re-create one only for a
        // pending position whose handle was forgotten). The borrow of
        // `self` keeps the bytes from being shared.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// Publishes the tensor: its metadata, then its completion.
    ///
    /// # Errors
    ///
    /// [`StreamError::TooLarge`] when `meta.nbytes()` exceeds the slot; the
    /// slot comes back in the error.
    pub fn commit(mut self, meta: TensorMeta) -> Result<(), CommitError<'p>> {
        let slot_bytes = self.producer.slot_bytes();
        if meta.nbytes() > slot_bytes {
            return Err(CommitError {
                slot: self,
                error: StreamError::TooLarge {
                    nbytes: meta.nbytes(),
                    slot_bytes,
                },
            });
        }
        // The write ends here, before the completion is published.
        self.guard = None;
        self.producer.ring.borrow().commit(self.position, &meta);
        self.producer
            .pending
            .borrow_mut()
            .entry(self.position)
            .waiting = false;
        self.done = true;
        Ok(())
    }

    /// Copies `bytes` into the slot and commits it.
    ///
    /// # Errors
    ///
    /// [`StreamError::SizeMismatch`] when `bytes` disagrees with `meta`, and
    /// as [`commit`](Self::commit).
    pub fn write(mut self, meta: TensorMeta, bytes: &[u8]) -> Result<(), CommitError<'p>> {
        if bytes.len() as u64 != meta.nbytes() {
            return Err(CommitError {
                error: StreamError::SizeMismatch {
                    given: bytes.len() as u64,
                    expected: meta.nbytes(),
                },
                slot: self,
            });
        }
        if meta.nbytes() <= self.producer.slot_bytes() {
            self.payload_mut()[..bytes.len()].copy_from_slice(bytes);
        }
        self.commit(meta)
    }
}

impl Slot<'_> {
    /// Lets go of the handle but keeps the slot pending, for the by-id calls
    /// (`put` finds it again by its id).
    fn keep_pending(mut self) {
        self.guard = None;
        self.done = true;
    }

    /// Commits, or on a refusal keeps the slot pending for a later `put`.
    fn commit_or_keep_pending(self, meta: TensorMeta) -> Result<(), StreamError> {
        self.commit(meta).map_err(|e| {
            e.slot.keep_pending();
            e.error
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.guard = None;
            self.producer.ring.borrow().abandon(self.position);
            self.producer
                .pending
                .borrow_mut()
                .entry(self.position)
                .waiting = false;
        }
    }
}
