//! The producer's handle: registers tensor ids in stream order, hands out
//! writable slots, commits them in any order, and signals done.

use crate::error::{AbandonReason, StreamError};
use crate::pending::PendingIds;
use crate::protocol::ring_producer::{check_id, ProducerRing, Reservation, SlotState};
use crate::protocol::tensor::TensorMeta;
use crate::sync::WriteGuard;
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
/// use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
/// let (producer, mut consumer) = in_process(&StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(4)).unwrap();
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
    pub(crate) ring: RefCell<ProducerRing>,
    /// The ids `pre_read_register` positions wait under, for the by-id
    /// calls; an entry counts only where the ring says `Pending`.
    pending: RefCell<PendingIds>,
    pub(crate) timeout: Option<Duration>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Producer");
        // `try_borrow`: Debug must not panic when called while a method of
        // this producer holds the ring (from a panic message, say).
        match self.ring.try_borrow() {
            Ok(ring) => out
                .field("capacity", &ring.mem().capacity())
                .field("payload_bytes", &ring.mem().payload_bytes())
                .field("registered", &ring.registered()),
            Err(_) => out.field("ring", &"<in use>"),
        };
        if let Ok(pending) = self.pending.try_borrow() {
            out.field("pending_ids", &pending.len());
        }
        out.finish()
    }
}

impl Producer {
    pub(crate) fn from_ring(ring: ProducerRing, timeout: Option<Duration>) -> Producer {
        Producer {
            ring: RefCell::new(ring),
            pending: RefCell::new(PendingIds::new()),
            timeout,
        }
    }

    /// The pending (`pre_read_register`ed, not yet put) position of `id`:
    /// one look-up, however many ids are outstanding. An entry whose
    /// position left `Pending` some other way (a handle taken up by id and
    /// dropped) is stale: it is dropped here and the id is not pending.
    pub(crate) fn find_pending(&self, id: &[u8]) -> Option<Reservation> {
        let reservation = self.pending.borrow().get(id)?;
        if self.ring.borrow().state(reservation.position) == SlotState::Pending {
            return Some(reservation);
        }
        self.pending.borrow_mut().remove(id);
        None
    }

    /// Forgets `id` once its pending position was published.
    pub(crate) fn forget_pending(&self, id: &[u8]) {
        self.pending.borrow_mut().remove(id);
    }

    /// Bytes reserved for the pending (`pre_read_register`ed, not yet
    /// put) `id`; `None` when it is not pending.
    pub fn pending_bytes(&self, id: &str) -> Option<u64> {
        self.find_pending(id.as_bytes()).map(|r| r.len)
    }

    /// Items the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.ring.borrow().mem().capacity()
    }

    /// Bytes a registration without a size reserves.
    pub fn item_bytes(&self) -> u64 {
        self.ring.borrow().mem().item_bytes()
    }

    /// Bytes of the payload ring.
    pub fn payload_bytes(&self) -> u64 {
        self.ring.borrow().mem().payload_bytes()
    }

    /// Ids registered so far (the next position).
    pub fn registered(&self) -> u64 {
        self.ring.borrow().registered()
    }

    /// The payload area as one range: register it once with a NIC or a GPU
    /// runtime, then land each tensor at its slot's
    /// [`payload_offset`](Slot::payload_offset). It is `payload_bytes`
    /// long, twice that where the payload is mapped twice back to back (a
    /// reservation may then run past `payload_bytes`, into the mirror).
    pub fn payload_region(&self) -> (*mut u8, usize) {
        let ring = self.ring.borrow();
        let mem = ring.mem();
        (mem.payload_base(), mem.mapped_payload_bytes() as usize)
    }

    /// Reserves the next position of the stream for `id` with the stream's
    /// default item size ([`item_bytes`](Self::item_bytes)), waiting up to
    /// the configured timeout while the ring is full.
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`] (retry later), [`StreamError::ConsumerGone`],
    /// [`StreamError::AfterDone`], [`StreamError::BadId`].
    #[inline(always)]
    pub fn register(&self, id: &str) -> Result<Slot<'_>, StreamError> {
        self.register_sized_timeout(id, self.item_bytes(), self.timeout)
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
        self.register_sized_timeout(id, self.item_bytes(), timeout)
    }

    /// Reserves the next position without waiting.
    ///
    /// # Errors
    ///
    /// [`StreamError::Full`] when the item slots or the payload bytes all
    /// wait for the consumer; the others as [`register`](Self::register).
    pub fn try_register(&self, id: &str) -> Result<Slot<'_>, StreamError> {
        self.try_register_sized(id, self.item_bytes())
    }

    /// Reserves the next position for `id` with exactly `nbytes` of payload
    /// (any size from 0 to the payload size), placed after the previous
    /// reservation (see [`placement_align`](crate::placement_align)).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
    /// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() })
    ///     .with_capacity(8)
    ///     .with_payload_bytes(1 << 16);
    /// let (producer, mut consumer) = in_process(&cfg).unwrap();
    /// for id in ["a", "b"] {
    ///     let slot = producer.register_sized(id, 56).unwrap(); // 7 x i64
    ///     slot.write(TensorMeta::new(DType::I64, &[7]).unwrap(), &[1; 56]).unwrap();
    /// }
    /// consumer.poll().unwrap();
    /// let window = consumer.window(0, 2).unwrap();
    /// assert_eq!(window.shape(), &[2, 7]);
    /// assert!(window.is_contiguous()); // 56-byte rows back to back
    /// ```
    ///
    /// # Errors
    ///
    /// [`StreamError::ExceedsPayload`] when `nbytes` exceeds the payload
    /// ring; otherwise as [`register`](Self::register).
    pub fn register_sized(&self, id: &str, nbytes: u64) -> Result<Slot<'_>, StreamError> {
        self.register_sized_timeout(id, nbytes, self.timeout)
    }

    /// As [`register_sized`](Self::register_sized), waiting at most
    /// `timeout` (`None`: until space or the consumer's death).
    ///
    /// # Errors
    ///
    /// As [`register_sized`](Self::register_sized).
    #[inline(always)]
    pub fn register_sized_timeout(
        &self,
        id: &str,
        nbytes: u64,
        timeout: Option<Duration>,
    ) -> Result<Slot<'_>, StreamError> {
        let reservation = self
            .ring
            .borrow_mut()
            .reserve(id.as_bytes(), nbytes, timeout)?;
        Ok(self.handle(reservation))
    }

    /// As [`register_sized`](Self::register_sized), without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_register`](Self::try_register) and
    /// [`register_sized`](Self::register_sized).
    pub fn try_register_sized(&self, id: &str, nbytes: u64) -> Result<Slot<'_>, StreamError> {
        let reservation = self.ring.borrow_mut().try_reserve(id.as_bytes(), nbytes)?;
        Ok(self.handle(reservation))
    }

    /// Waits up to `timeout` (`None`: for ever) until a reservation of
    /// `nbytes` would fit, reserving nothing: a caller that must not hold a
    /// position it may give up (an `await` that can be cancelled) waits
    /// here, then registers without waiting. Another registration may take
    /// the room first; the register then says `Full` and the caller waits
    /// again.
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`] when no room came, [`StreamError::ExceedsPayload`]
    /// when `nbytes` can never fit, [`StreamError::ConsumerGone`],
    /// [`StreamError::AfterDone`].
    pub fn wait_room(&self, nbytes: u64, timeout: Option<Duration>) -> Result<(), StreamError> {
        let mut ring = self.ring.borrow_mut();
        if let Some(resource) = ring.fits(nbytes)? {
            ring.wait_for_space(resource, nbytes, timeout)?;
            // The wait also ends when the consumer left: the look says so.
            ring.fits(nbytes)?;
        }
        Ok(())
    }

    /// The handle of a position the ring just made `Held` for it: the only
    /// one, since only a `Free -> Held` or `Pending -> Held` transition
    /// makes a handle.
    #[inline(always)]
    fn handle(&self, reservation: Reservation) -> Slot<'_> {
        Slot {
            producer: self,
            reservation,
            guard: Some(
                self.ring
                    .borrow()
                    .mem()
                    .track_write(reservation.offset, reservation.len),
            ),
            done: false,
            reason: AbandonReason::default(),
        }
    }

    /// The reference's `pre_read_register`: reserves the next position for
    /// `id` with the default item size and keeps it pending until
    /// [`put`](Self::put) names the id. Returns the reservation's offset in
    /// the [payload region](Self::payload_region), where a NIC may write.
    ///
    /// # Errors
    ///
    /// [`StreamError::DuplicateId`] when `id` is registered and not yet put;
    /// otherwise as [`register`](Self::register).
    pub fn pre_read_register(&self, id: &str) -> Result<u64, StreamError> {
        self.pre_read_register_sized(id, self.item_bytes())
    }

    /// As [`pre_read_register`](Self::pre_read_register), reserving exactly
    /// `nbytes` (the size a sender announced).
    ///
    /// # Errors
    ///
    /// As [`pre_read_register`](Self::pre_read_register) and
    /// [`register_sized`](Self::register_sized).
    pub fn pre_read_register_sized(&self, id: &str, nbytes: u64) -> Result<u64, StreamError> {
        self.register_pending(id, |p| p.register_sized(id, nbytes))
    }

    /// As [`pre_read_register_sized`](Self::pre_read_register_sized),
    /// without waiting: a binding tries this with its lock taken at once,
    /// and waits (in slices, its lock free) only when the ring is full.
    ///
    /// # Errors
    ///
    /// [`StreamError::Full`] when the item slots or the payload bytes all
    /// wait for the consumer; otherwise as
    /// [`pre_read_register_sized`](Self::pre_read_register_sized).
    pub fn try_pre_read_register_sized(&self, id: &str, nbytes: u64) -> Result<u64, StreamError> {
        self.register_pending(id, |p| p.try_register_sized(id, nbytes))
    }

    /// Registers `id` with `register` unless it is pending already, and
    /// keeps the slot pending under it.
    fn register_pending<'p>(
        &'p self,
        id: &str,
        register: impl FnOnce(&'p Self) -> Result<Slot<'p>, StreamError>,
    ) -> Result<u64, StreamError> {
        check_id(id.as_bytes())?;
        if self.find_pending(id.as_bytes()).is_some() {
            return Err(StreamError::DuplicateId { id: id.to_string() });
        }
        let slot = register(self)?;
        let offset = slot.payload_offset();
        self.pending
            .borrow_mut()
            .insert(id.as_bytes(), slot.reservation);
        slot.keep_pending();
        Ok(offset)
    }

    /// The reference's `put`: copies `bytes` into the slot registered for
    /// `id` by [`pre_read_register`](Self::pre_read_register) and commits it
    /// with `meta`. (A slot from [`register`](Self::register) is written and
    /// committed through its handle, not by id.)
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
        let reserved = slot.len();
        if bytes.len() as u64 > reserved {
            slot.keep_pending();
            return Err(StreamError::TooLarge {
                nbytes: bytes.len() as u64,
                reserved,
            });
        }
        slot.payload_mut()[..bytes.len()].copy_from_slice(bytes);
        slot.commit_or_keep_pending(meta)?;
        self.forget_pending(id.as_bytes());
        Ok(())
    }

    /// Commits the slot registered for `id` whose bytes were written in
    /// place (by a NIC, at the offset `pre_read_register` returned).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), without the size comparison with given bytes.
    pub fn put_in_place(&self, id: &str, meta: TensorMeta) -> Result<(), StreamError> {
        self.pending_slot(id)?.commit_or_keep_pending(meta)?;
        self.forget_pending(id.as_bytes());
        Ok(())
    }

    /// Gives up the slot registered for `id` by
    /// [`pre_read_register`](Self::pre_read_register) (its bytes never
    /// came): the consumer's [`StreamError::Abandoned`] at its position
    /// carries `reason`.
    ///
    /// # Errors
    ///
    /// [`StreamError::UnknownId`] when `id` is not pending.
    pub fn abandon(&self, id: &str, reason: AbandonReason) -> Result<(), StreamError> {
        self.pending_slot(id)?.abandon_with(reason);
        self.forget_pending(id.as_bytes());
        Ok(())
    }

    /// Takes the pending position of `id` up again as a handle; the ring's
    /// `Pending -> Held` transition makes it the position's only one.
    fn pending_slot(&self, id: &str) -> Result<Slot<'_>, StreamError> {
        let unknown = || StreamError::UnknownId { id: id.to_string() };
        let reservation = self.find_pending(id.as_bytes()).ok_or_else(unknown)?;
        if !self.ring.borrow_mut().transition(
            reservation.position,
            SlotState::Pending,
            SlotState::Held,
        ) {
            return Err(unknown());
        }
        Ok(self.handle(reservation))
    }

    /// Turns adaptive batching on or off (issue 24; off by default).
    /// With `Some(max_items)`, a commit that continues the producer's
    /// latest run (in order, same dtype and shape, same reserved size, back
    /// to back in the payload) is *staged* instead of published one by one:
    /// the consumer sees the run as one, validated once. Nothing waits for
    /// a threshold: every commit still rings, so a sleeping consumer wakes
    /// at once, and a consumer that looks takes whatever is staged. A run
    /// is at most `max_items` long (clamped to the capacity); `None` or
    /// `Some(0)` turns batching off and publishes the held run.
    /// [`flush`](Self::flush), [`signal_done`](Self::signal_done),
    /// [`wait_drained`](Self::wait_drained), a wait for room, the batch
    /// calls, an abandon and the drop publish it too.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
    /// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() })
    ///     .with_capacity(8);
    /// let (producer, mut consumer) = in_process(&cfg).unwrap();
    /// producer.set_batching(Some(64));
    /// let meta = TensorMeta::new(DType::U8, &[4]).unwrap();
    /// for id in ["a", "b", "c"] {
    ///     producer.register(id).unwrap().write(meta, b"abcd").unwrap();
    /// }
    /// assert_eq!(consumer.poll().unwrap(), 3); // one staged run, taken
    /// assert_eq!(consumer.window(0, 3).unwrap().shape(), &[3, 4]);
    /// ```
    pub fn set_batching(&self, max_items: Option<u64>) {
        self.ring.borrow_mut().set_batching(max_items.unwrap_or(0));
    }

    /// The longest run a commit may stage, `None` when batching is off
    /// (see [`set_batching`](Self::set_batching)).
    pub fn batching(&self) -> Option<u64> {
        Some(self.ring.borrow().batching()).filter(|&n| n > 0)
    }

    /// Publishes the run held by adaptive batching (see
    /// [`set_batching`](Self::set_batching)) by its descriptor, unless the
    /// consumer took it already; nothing to do when batching is off.
    pub fn flush(&self) {
        self.ring.borrow_mut().flush();
    }

    /// The producer's last word: nothing more will be registered.
    pub fn signal_done(&self) {
        self.ring.borrow_mut().signal_done();
    }

    /// Waits until the consumer has released every registered item (so the
    /// producer may exit without cutting the stream short), at most
    /// `timeout` (`None`: until then or the consumer's death).
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
#[must_use = "dropping a slot without committing it abandons its position"]
pub struct Slot<'p> {
    pub(crate) producer: &'p Producer,
    pub(crate) reservation: Reservation,
    /// Held from reservation to commit (loom's data-race tracking).
    pub(crate) guard: Option<WriteGuard>,
    /// Published (or kept pending): the drop abandons nothing.
    pub(crate) done: bool,
    /// What the consumer is told if the slot is dropped uncommitted.
    pub(crate) reason: AbandonReason,
}

impl fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("position", &self.reservation.position)
            .field("offset", &self.reservation.offset)
            .field("len", &self.reservation.len)
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
        write!(
            f,
            "commit refused: {} (the slot is kept: commit it again, or drop it to abandon its position)",
            self.error
        )
    }
}

impl std::error::Error for CommitError<'_> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<'p> Slot<'p> {
    /// The slot's stream position (0 for the first registered id).
    pub fn position(&self) -> u64 {
        self.reservation.position
    }

    /// Bytes reserved for the tensor.
    pub fn len(&self) -> u64 {
        self.reservation.len
    }

    /// Whether no bytes were reserved (a tensor with a zero dimension).
    pub fn is_empty(&self) -> bool {
        self.reservation.len == 0
    }

    /// Byte offset of the reservation within [`Producer::payload_region`],
    /// where a NIC or a device copy may land the tensor (its
    /// [`len`](Self::len) bytes from there are one range of the region).
    pub fn payload_offset(&self) -> u64 {
        let ring = self.producer.ring.borrow();
        self.reservation.offset & (ring.mem().payload_bytes() - 1)
    }

    /// The reserved bytes, [`len`](Self::len) long, to write the tensor
    /// into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let ring = self.producer.ring.borrow();
        let ptr = ring.mem().payload_ptr(self.reservation.offset);
        // SAFETY: the reservation of a registered, uncommitted position
        // belongs to this handle alone: reservations never overlap (each
        // starts after the previous one ends and ends within one payload
        // length of the released bytes), the consumer does not read it
        // before the commit nor release it (`released` past an open
        // position is refused as corrupt), and no other `Slot` for it
        // exists (the ring hands out a handle only on a `Free/Pending ->
        // Held` transition, and this one holds it). `len <= payload_bytes`
        // bytes from `ptr` are in the mapping: across the wrap thanks to the
        // mirror, or placed not to cross it without one. The borrow of
        // `self` keeps the bytes from being shared.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.reservation.len as usize) }
    }

    /// Publishes the tensor: its metadata, then its completion.
    ///
    /// # Errors
    ///
    /// [`StreamError::TooLarge`] when `meta.nbytes()` exceeds the bytes
    /// reserved; the slot comes back in the error.
    #[inline(always)]
    pub fn commit(mut self, meta: TensorMeta) -> Result<(), CommitError<'p>> {
        let reserved = self.reservation.len;
        if meta.nbytes() > reserved {
            return Err(CommitError {
                slot: self,
                error: StreamError::TooLarge {
                    nbytes: meta.nbytes(),
                    reserved,
                },
            });
        }
        self.publish(&meta);
        Ok(())
    }

    /// Publishes the slot with `meta` (checked by the caller against the
    /// reservation). Through `&mut self`: a move of the handle would copy
    /// it with wider loads than the stores that built it, a missed store
    /// forward that waits for every earlier store of this item, among them
    /// the descriptor line a spinning consumer holds (issue 24).
    #[inline(always)]
    fn publish(&mut self, meta: &TensorMeta) {
        // The write ends here, before the completion is published.
        self.guard = None;
        self.producer.ring.borrow_mut().commit(
            self.reservation.position,
            self.reservation.len,
            meta,
        );
        self.done = true;
    }

    /// Copies `bytes` into the slot and commits it.
    ///
    /// # Errors
    ///
    /// [`StreamError::SizeMismatch`] when `bytes` disagrees with `meta`, and
    /// as [`commit`](Self::commit).
    #[inline(always)]
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
        if meta.nbytes() > self.len() {
            return self.commit(meta);
        }
        self.payload_mut()[..bytes.len()].copy_from_slice(bytes);
        self.publish(&meta);
        Ok(())
    }

    /// Gives the position up and tells the consumer why: its
    /// [`StreamError::Abandoned`] carries `reason` (a text longer than
    /// [`MAX_REASON_LEN`](crate::MAX_REASON_LEN) bytes was cut by
    /// [`AbandonReason::new`]). Dropping the slot does the same without a
    /// reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, AbandonReason, StreamConfig, StreamError, StreamId};
    /// let (producer, mut consumer) = in_process(&StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(4)).unwrap();
    /// let slot = producer.register("t0").unwrap();
    /// slot.abandon_with(AbandonReason::new(-1, "the engine's read failed"));
    /// match consumer.poll() {
    ///     Err(StreamError::Abandoned { id, reason, .. }) => {
    ///         assert_eq!((id.as_str(), reason.code(), reason.text()), ("t0", -1, "the engine's read failed"));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn abandon_with(mut self, reason: AbandonReason) {
        self.reason = reason;
        drop(self);
    }

    /// Sets what the consumer is told if this slot is dropped without a
    /// commit (a handle kept while a transfer may still end, say).
    pub fn set_abandon_reason(&mut self, reason: AbandonReason) {
        self.reason = reason;
    }
}

impl Slot<'_> {
    /// Lets go of the handle but keeps the slot pending, for the by-id calls
    /// (`put` finds it again by its id).
    fn keep_pending(mut self) {
        self.guard = None;
        let kept = self.producer.ring.borrow_mut().transition(
            self.reservation.position,
            SlotState::Held,
            SlotState::Pending,
        );
        debug_assert!(kept, "a live handle's position is held");
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
            self.producer
                .ring
                .borrow_mut()
                .abandon_with(self.reservation.position, &self.reason);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Producer;
    use crate::config::{StreamConfig, StreamId};
    use crate::protocol::ring_producer::ProducerRing;

    /// A producer on an anonymous segment (on the heap under Miri, which
    /// has no memfd), and its consumer half (kept, so the producer's peer
    /// is there); what `in_process` builds, made here so the handle's
    /// tests need nothing above it.
    fn in_process(
        config: &StreamConfig,
    ) -> Result<(Producer, impl Sized), crate::error::SetupError> {
        #[cfg(miri)]
        let (p, c) = crate::protocol::heap::heap_ring(&config.validate()?);
        #[cfg(not(miri))]
        let (p, c) = crate::os::segment::anonymous(config)?;
        Ok((Producer::from_ring(ProducerRing::new(p), config.timeout), c))
    }

    #[test]
    fn debug_shows_the_ring_or_says_it_is_in_use_without_panicking() {
        let id = StreamId {
            request_id: "dbg".into(),
            edge_name: "e".into(),
            from_partition: "0".into(),
        };
        let config = StreamConfig::new(id).with_capacity(4);
        let (producer, _consumer) = in_process(&config).unwrap();
        let free = format!("{producer:?}");
        assert!(
            free.contains("capacity: 4") && free.contains("registered: 0"),
            "{free}"
        );
        // The by-id table: an id in it from registration to put.
        assert!(free.contains("pending_ids: 0"), "{free}");
        producer.pre_read_register("a").unwrap();
        assert!(format!("{producer:?}").contains("pending_ids: 1"));
        let meta = crate::protocol::tensor::TensorMeta::new(crate::DType::U8, &[1]).unwrap();
        producer.put("a", meta, &[7]).unwrap();
        assert!(format!("{producer:?}").contains("pending_ids: 0"));
        producer.pre_read_register("b").unwrap();
        producer.put_in_place("b", meta).unwrap();
        producer.pre_read_register("c").unwrap();
        producer.put_in_place_many(&[("c", meta)]).unwrap();
        assert!(format!("{producer:?}").contains("pending_ids: 0"));
        // As a panic message formed inside one of its methods would see it.
        let _held = producer.ring.borrow_mut();
        let busy = format!("{producer:?}");
        assert!(
            busy.contains("<in use>") && !busy.contains("capacity"),
            "{busy}"
        );
    }

    #[test]
    fn a_refused_commit_says_so_keeps_its_slot_and_gives_its_cause() {
        use crate::protocol::tensor::{DType, TensorMeta};
        use std::error::Error;
        let id = StreamId {
            request_id: "c".into(),
            edge_name: "e".into(),
            from_partition: "0".into(),
        };
        let config = StreamConfig::new(id).with_capacity(4).with_item_bytes(8);
        let (producer, _consumer) = in_process(&config).unwrap();
        let slot = producer.register("t0").unwrap();
        // 4 x f32 = 16 bytes do not fit the 8 reserved.
        let refused = slot
            .commit(TensorMeta::new(DType::F32, &[4]).unwrap())
            .unwrap_err();
        let text = refused.to_string();
        assert!(text.starts_with("commit refused: "), "{text}");
        assert!(text.contains(&refused.error.to_string()), "{text}");
        let cause = refused.source().expect("a cause");
        assert_eq!(cause.to_string(), refused.error.to_string());
        assert_eq!(refused.slot.position(), 0);
        // The kept slot still commits a tensor that fits.
        refused
            .slot
            .commit(TensorMeta::new(DType::F32, &[2]).unwrap())
            .unwrap();
    }
}
