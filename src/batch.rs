//! Batch publication (issue 14): the producer publishes many items with one
//! doorbell ring (one publisher barrier: a compiler fence with the asymmetric
//! handshake, a `fence(SeqCst)` without) and one hub notification per batch,
//! instead of one per item.
//!
//! - [`Producer::put_many`] registers, copies and commits a batch of
//!   [`BatchItem`]s: the items that fit are reserved in one step (one
//!   store of `registered` for all of them), copied, committed (one
//!   Release store of `seq` per run of same-shaped items lying back to
//!   back: docs/design.md, "Descriptor runs") and announced with one ring.
//! - [`Producer::commit_many`] commits many held [`Slot`]s at once (a NIC
//!   completion queue delivers many completions at once).
//! - [`Producer::put_in_place_many`] commits many `pre_read_register`ed ids
//!   whose bytes were written in place.
//!
//! Every call rings before it returns (no guard whose `mem::forget` could
//! lose a wake-up), also when it fails part-way, and before it sleeps for
//! room: a consumer asleep for data while the producer sleeps for space
//! would be a deadlock.
//!
//! **Errors.** A batch is published in order, up to the first item that
//! fails: [`BatchError::index`] names it, and [`BatchError::error`] says
//! what was wrong with it (the field and the limit). The items before it
//! are published (and the consumer woken for them); it and the items after
//! it are untouched: not registered (`put_many`), still held by the
//! caller (`commit_many`), still pending (`put_in_place_many`). So a batch
//! can be resumed from `index` after fixing the input or waiting.
//!
//! **Why one barrier per batch is enough.** The wake-up is the Dekker
//! handshake of `doorbell.rs`: the sleeper announces itself, issues its
//! barrier and re-checks; the publisher stores, issues its barrier and looks
//! for an announcement. The publisher's barrier orders *every* store before
//! it, so one barrier after
//! the batch's last `seq` store orders all of them before the look at
//! `sleepers`: either the look sees the sleeper (and wakes it), or the
//! sleeper's re-check sees every completion of the batch. A completion
//! stored without a barrier after it is only delayed until the batch's ring,
//! which happens before the call returns.

use crate::error::StreamError;
use crate::producer::{Producer, Slot};
use crate::protocol::ring_producer::{check_id, ProducerRing, SlotState};
use crate::protocol::tensor::TensorMeta;
use std::fmt;
use std::time::Duration;

/// One tensor of a batch for [`Producer::put_many`]: its id, its metadata
/// and its bytes (copied into the stream).
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    /// The tensor's id (1 to [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes);
    /// `None`: its stream position in decimal (`"0"`, `"1"`, ...).
    pub id: Option<&'a str>,
    /// Its dtype and shape; `bytes` must be exactly `meta.nbytes()` long.
    pub meta: TensorMeta,
    /// Its bytes, copied into a reservation of exactly this size.
    pub bytes: &'a [u8],
}

impl<'a> BatchItem<'a> {
    /// An item with an id.
    #[must_use]
    pub fn new(id: &'a str, meta: TensorMeta, bytes: &'a [u8]) -> Self {
        BatchItem {
            id: Some(id),
            meta,
            bytes,
        }
    }

    /// An item whose id is its stream position in decimal.
    #[must_use]
    pub fn unnamed(meta: TensorMeta, bytes: &'a [u8]) -> Self {
        BatchItem {
            id: None,
            meta,
            bytes,
        }
    }
}

/// A batch stopped at item [`index`](Self::index). Batches are published in
/// order up to the first item that fails: the items before it are
/// published (and the consumer woken for them); it and the items after it
/// are untouched: not registered ([`Producer::put_many`]), still held in
/// the caller's batch ([`Producer::commit_many`]), still pending
/// ([`Producer::put_in_place_many`]). The batch can be resumed from
/// `index` after fixing the input or waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// The item of the batch that failed (0-based); also how many items
    /// before it were published.
    pub index: usize,
    /// What was wrong with it, or why it could not be published (a full
    /// ring after the timeout, a consumer gone).
    pub error: StreamError,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "item {} of the batch: {} (the {} items before it are published; it and the rest are not)",
            self.index, self.error, self.index
        )
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Why a round of `put_many` stopped before the end of the batch.
enum Stop {
    /// The next item does not fit until the consumer releases this.
    Full(crate::error::Resource),
    /// The next item is refused.
    Failed(StreamError),
}

/// `position` in decimal, in `buf` (no allocation).
fn decimal(mut position: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (position % 10) as u8;
        position /= 10;
        if position == 0 {
            return &buf[at..];
        }
    }
}

/// One round of `put_many`: reserves the leading items of `items` that fit
/// now (one store of `registered` for all), copies their bytes, publishes
/// their completions and rings once. Returns how many it published and why
/// it stopped before the end, if it did.
fn put_round(ring: &mut ProducerRing, items: &[BatchItem<'_>]) -> (usize, Option<Stop>) {
    let first = ring.registered();
    let mut reserved = 0;
    let mut stop = None;
    let mut id_buf = [0u8; 20];
    for item in items {
        let nbytes = item.meta.nbytes();
        if item.bytes.len() as u64 != nbytes {
            stop = Some(Stop::Failed(StreamError::SizeMismatch {
                given: item.bytes.len() as u64,
                expected: nbytes,
            }));
            break;
        }
        let id = match item.id {
            Some(id) => id.as_bytes(),
            None => decimal(first + reserved as u64, &mut id_buf),
        };
        if let Err(e) = check_id(id) {
            stop = Some(Stop::Failed(e));
            break;
        }
        match ring.fits(nbytes) {
            Ok(None) => {}
            Ok(Some(resource)) => {
                stop = Some(Stop::Full(resource));
                break;
            }
            Err(e) => {
                stop = Some(Stop::Failed(e));
                break;
            }
        }
        let reservation = ring.reserve_quiet(id, nbytes);
        // The write ends (the guard drops) before any completion is
        // published below.
        let _write = ring.mem().track_write(reservation.offset, reservation.len);
        let dst = ring.mem().payload_ptr(reservation.offset);
        // SAFETY: `dst` starts the reservation just made `Held` for this
        // call alone (no `Slot` handle exists for it, and none can be made
        // before it is published below): reservations never overlap, the
        // consumer neither reads nor releases it before its completion is
        // published, and its `nbytes <= payload_bytes` bytes from `dst` lie
        // in the mapping (across the wrap thanks to the mirror, or placed
        // not to cross it without one). The source is the caller's slice of
        // exactly `nbytes` bytes (checked above), in private memory, so
        // the two ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(item.bytes.as_ptr(), dst, item.bytes.len());
        }
        reserved += 1;
    }
    if reserved > 0 {
        // One store of `registered` for the round, before any completion.
        ring.publish_registered();
        // One run per stretch of same-shaped items lying back to back: one
        // descriptor, one Release store.
        let mut k = 0;
        while k < reserved {
            let (head, meta) = (first + k as u64, &items[k].meta);
            let mut n = 1;
            while k + n < reserved
                && items[k + n].meta == *meta
                && ring.continues_run(head, n as u64, meta.nbytes())
            {
                n += 1;
            }
            ring.commit_run(head, n as u64, meta);
            k += n;
        }
        // One barrier and one hub notification for the round.
        ring.ring_bells();
    }
    (reserved, stop)
}

impl Producer {
    /// Registers, copies and commits a batch of tensors in order, with one
    /// doorbell ring (one barrier) and one hub notification per round: a
    /// round is what fits in the ring at once, all of the batch when the
    /// consumer keeps up. The round's positions are reserved with one
    /// store of `registered`; each stretch of same-shaped items lying back
    /// to back is published as one run (one descriptor, one Release store
    /// of `seq`). When the ring is full, the items published
    /// so far are announced, then the call waits (up to the configured
    /// timeout per wait) for room for the next item. Nothing is allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, BatchItem, DType, StreamConfig, StreamId, TensorMeta};
    /// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() })
    ///     .with_capacity(8)
    ///     .with_payload_bytes(1 << 16);
    /// let (producer, mut consumer) = in_process(&cfg).unwrap();
    /// let meta = TensorMeta::new(DType::I64, &[7]).unwrap();
    /// let frames = [[1u8; 56], [2u8; 56], [3u8; 56]];
    /// let batch: Vec<BatchItem> = frames.iter().map(|f| BatchItem::unnamed(meta, f)).collect();
    /// producer.put_many(&batch).unwrap();
    /// assert_eq!(consumer.poll().unwrap(), 3);
    /// assert_eq!(consumer.item(2).unwrap().id(), "2"); // unnamed: the position
    /// assert_eq!(consumer.window(0, 3).unwrap().shape(), &[3, 7]);
    /// ```
    ///
    /// # Errors
    ///
    /// A [`BatchError`] naming the first item not published: the items
    /// before it are published, it and the rest are not registered. Its
    /// error is [`StreamError::SizeMismatch`] (`bytes` disagrees with
    /// `meta`), [`StreamError::BadId`], [`StreamError::ExceedsPayload`],
    /// [`StreamError::Timeout`], [`StreamError::ConsumerGone`],
    /// [`StreamError::AfterDone`] or [`StreamError::Corrupt`].
    pub fn put_many(&self, items: &[BatchItem<'_>]) -> Result<(), BatchError> {
        self.put_many_timeout(items, self.timeout)
    }

    /// As [`put_many`](Self::put_many), each wait for room lasting at most
    /// `timeout` (`None`: until room or the consumer's death; `Some(ZERO)`:
    /// publishes what fits and stops with [`StreamError::Timeout`] at the
    /// first item that does not).
    ///
    /// # Errors
    ///
    /// As [`put_many`](Self::put_many).
    pub fn put_many_timeout(
        &self,
        items: &[BatchItem<'_>],
        timeout: Option<Duration>,
    ) -> Result<(), BatchError> {
        let mut ring = self.ring.borrow_mut();
        let mut done = 0;
        while done < items.len() {
            let (published, stop) = put_round(&mut ring, &items[done..]);
            done += published;
            match stop {
                None => {}
                Some(Stop::Failed(error)) => return Err(BatchError { index: done, error }),
                Some(Stop::Full(resource)) => {
                    // The round rang for what it published: the consumer
                    // is not left asleep while we sleep here.
                    let len = items[done].bytes.len() as u64;
                    ring.wait_for_space(resource, len, timeout)
                        .map_err(|error| BatchError { index: done, error })?;
                }
            }
        }
        Ok(())
    }

    /// Commits many held slots at once, in the batch's order, with one
    /// doorbell ring and one hub notification: for a NIC completion queue
    /// that reports many landed tensors together. The committed entries
    /// are drained from `batch` (its capacity stays, to be reused without
    /// allocating).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
    /// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(8);
    /// let (producer, mut consumer) = in_process(&cfg).unwrap();
    /// let meta = TensorMeta::new(DType::U8, &[4]).unwrap();
    /// let mut landed = Vec::with_capacity(64);
    /// for id in ["a", "b", "c"] {
    ///     let mut slot = producer.register(id).unwrap();
    ///     slot.payload_mut()[..4].copy_from_slice(b"abcd"); // or: a NIC wrote there
    ///     landed.push((slot, meta));
    /// }
    /// landed.swap(0, 2); // completions arrive in any order
    /// producer.commit_many(&mut landed).unwrap();
    /// assert!(landed.is_empty());
    /// assert_eq!(consumer.poll().unwrap(), 3);
    /// ```
    ///
    /// # Errors
    ///
    /// A [`BatchError`] naming the first entry not committed:
    /// [`StreamError::TooLarge`] (its `meta` exceeds the slot's
    /// reservation) or [`StreamError::ForeignSlot`] (the slot is another
    /// producer's). The entries before it are committed (and drained); it
    /// and the rest stay in `batch`, still held.
    pub fn commit_many<'p>(
        &'p self,
        batch: &mut Vec<(Slot<'p>, TensorMeta)>,
    ) -> Result<(), BatchError> {
        let mut committed = 0;
        let mut failure = None;
        {
            let mut ring = self.ring.borrow_mut();
            // The run being gathered: consecutive positions of one
            // metadata and reservation length, lying back to back,
            // published as one when the next entry does not continue it.
            let mut run: Option<(u64, u64, TensorMeta, u64)> = None;
            for (slot, meta) in batch.iter_mut() {
                if !std::ptr::eq(slot.producer, self) {
                    failure = Some(StreamError::ForeignSlot {
                        position: slot.position(),
                    });
                    break;
                }
                if meta.nbytes() > slot.len() {
                    failure = Some(StreamError::TooLarge {
                        nbytes: meta.nbytes(),
                        reserved: slot.len(),
                    });
                    break;
                }
                // The write ends here, before the completion is published.
                slot.guard = None;
                let position = slot.reservation.position;
                let len = slot.len();
                run = match run {
                    Some((head, n, m, l))
                        if position == head + n
                            && m == *meta
                            && l == len
                            && ring.continues_run(head, n, len) =>
                    {
                        Some((head, n + 1, m, l))
                    }
                    other => {
                        if let Some((head, n, m, _)) = other {
                            ring.commit_run(head, n, &m);
                        }
                        Some((position, 1, *meta, len))
                    }
                };
                slot.done = true;
                committed += 1;
            }
            if let Some((head, n, m, _)) = run {
                ring.commit_run(head, n, &m);
            }
            if committed > 0 {
                ring.ring_bells();
            }
        }
        // Published: their drop abandons nothing.
        batch.drain(..committed);
        match failure {
            Some(error) => Err(BatchError {
                index: committed,
                error,
            }),
            None => Ok(()),
        }
    }

    /// Commits many `pre_read_register`ed ids whose bytes were written in
    /// place (by a NIC, at the offsets `pre_read_register` returned), in
    /// the batch's order, with one doorbell ring and one hub notification.
    /// Each id is looked up among the pending ids, as
    /// [`put_in_place`](Self::put_in_place) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
    /// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(8);
    /// let (producer, mut consumer) = in_process(&cfg).unwrap();
    /// for id in ["a", "b"] {
    ///     producer.pre_read_register(id).unwrap(); // a NIC lands the bytes there
    /// }
    /// let meta = TensorMeta::new(DType::U8, &[16]).unwrap();
    /// producer.put_in_place_many(&[("b", meta), ("a", meta)]).unwrap();
    /// assert_eq!(consumer.poll().unwrap(), 2);
    /// ```
    ///
    /// # Errors
    ///
    /// A [`BatchError`] naming the first id not committed:
    /// [`StreamError::UnknownId`] (not pending, or earlier in this batch)
    /// or [`StreamError::TooLarge`]. The ids before it are committed; it
    /// and the rest stay pending.
    pub fn put_in_place_many(&self, items: &[(&str, TensorMeta)]) -> Result<(), BatchError> {
        let mut committed = 0;
        let mut failure = None;
        for (id, meta) in items {
            let Some(reservation) = self.find_pending(id.as_bytes()) else {
                failure = Some(StreamError::UnknownId { id: id.to_string() });
                break;
            };
            if meta.nbytes() > reservation.len {
                failure = Some(StreamError::TooLarge {
                    nbytes: meta.nbytes(),
                    reserved: reservation.len,
                });
                break;
            }
            let mut ring = self.ring.borrow_mut();
            let taken = ring.transition(reservation.position, SlotState::Pending, SlotState::Held);
            debug_assert!(taken, "find_pending returns pending positions only");
            ring.commit_quiet(reservation.position, meta);
            drop(ring);
            self.forget_pending(id.as_bytes());
            committed += 1;
        }
        if committed > 0 {
            self.ring.borrow().ring_bells();
        }
        match failure {
            Some(error) => Err(BatchError {
                index: committed,
                error,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_writes_positions_without_leading_zeroes() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(7, &mut buf), b"7");
        assert_eq!(decimal(10, &mut buf), b"10");
        assert_eq!(decimal(1234567, &mut buf), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
