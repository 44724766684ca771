//! The bytes of a segment: the header page, the descriptor table and the
//! payload area, and the checks applied to everything read back from them.
//!
//! Shared memory holds no pointers: every struct here is `repr(C)`, and
//! places are offsets from the segment's start, 64-bit stream positions (a
//! position never wraps; its descriptor is `position % capacity`) and 64-bit
//! payload byte positions (never wrap either; the byte lives at
//! `byte % payload_bytes` of the payload area).

use crate::sync::doorbell::Doorbell;
use crate::sync::{AtomicU32, AtomicU64};
use std::ops::Deref;

/// Longest segment-name prefix (a stream's and a hub's names start with it).
pub const MAX_PREFIX_LEN: usize = 32;
/// Longest tensor id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest name of the stream's identity, in bytes.
pub const MAX_NAME_LEN: usize = 120;
/// Largest item capacity of a ring (descriptors).
pub const MAX_CAPACITY: u64 = 1 << 20;
/// Largest payload area of a ring, in bytes (mapped twice).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 40;
/// Where a tensor may start: a multiple of this many bytes at least (every
/// dtype's elements stay aligned).
pub const MIN_ALIGN: u64 = 8;
/// Where a tensor may start: no stricter alignment than this is asked for
/// (a cache line; see [`placement_align`]).
pub const MAX_ALIGN: u64 = 64;

/// "SHMSTRM" and a zero byte, read as a little-endian u64.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMSTRM\0");
/// Bumped whenever the bytes of a segment change meaning.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const VERSION: u32 = 6;
/// The header occupies one page.
pub(crate) const HEADER_BYTES: usize = 4096;
pub(crate) const PAGE: usize = 4096;
/// Where the shared cursors start within the header.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const CONTROL_OFFSET: usize = 1024;
pub(crate) const DESCRIPTOR_BYTES: usize = 64;
/// One entry of the side table (ids, wide shapes): two cache lines.
pub(crate) const SIDE_ENTRY_BYTES: usize = 128;

/// `flags` bits.
pub(crate) const FLAG_DONE: u32 = 1;
pub(crate) const FLAG_PRODUCER_GONE: u32 = 2;
pub(crate) const FLAG_CONSUMER_GONE: u32 = 4;
pub(crate) const FLAG_CONSUMER_ATTACHED: u32 = 8;
pub(crate) const FLAG_KNOWN: u32 =
    FLAG_DONE | FLAG_PRODUCER_GONE | FLAG_CONSUMER_GONE | FLAG_CONSUMER_ATTACHED;

/// Status codes of a descriptor, published with its `seq`.
pub(crate) const STATUS_COMMITTED: u32 = 1;
pub(crate) const STATUS_ABANDONED: u32 = 2;

/// Bytes of one padded line of the control block: two 64-byte cache lines,
/// because adjacent-line prefetchers on x86 pull lines in pairs.
#[cfg_attr(loom, allow(dead_code))] // layout asserts and segments only
pub(crate) const LINE_BYTES: usize = 128;

/// `T` alone on a 128-byte line. The crate's own type, not
/// `crossbeam_utils::CachePadded`: that one's alignment differs by target
/// and crate version, and the shared layout must not (the offsets are
/// asserted below and hashed into [`LAYOUT_FINGERPRINT`]).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(T);

impl<T> Padded<T> {
    // Only heap rings build these; segments start from zeroed memory.
    #[cfg_attr(not(any(loom, miri)), allow(dead_code))]
    pub(crate) const fn new(value: T) -> Self {
        Padded(value)
    }
}

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The cursors and flags both sides write, each on its own 128-byte line so
/// the two cores do not bounce one line between them.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control {
    /// Positions reserved so far (the next position to register).
    /// Only the producer writes it; it never decreases.
    pub(crate) registered: Padded<AtomicU64>,
    /// Every position below it may be reused. Only the consumer writes it;
    /// it never decreases and never exceeds `registered`.
    pub(crate) released: Padded<AtomicU64>,
    /// `FLAG_*` bits; both sides set bits, nobody clears one.
    pub(crate) flags: Padded<AtomicU32>,
    /// The consumer sleeps here waiting for data; the producer rings.
    pub(crate) data_bell: Padded<Doorbell>,
    /// The producer sleeps here waiting for space; the consumer rings.
    pub(crate) space_bell: Padded<Doorbell>,
    /// The producer's held run under adaptive batching (issue 24): its
    /// head, its count and whether the consumer took it, packed as
    /// `staged.rs` says. The producer writes an untaken value; the
    /// consumer only ever sets the taken bit (a CAS). 0: nothing staged.
    pub(crate) staged: Padded<AtomicU64>,
}

impl Control {
    // Only heap rings build these; segments start from zeroed memory.
    #[cfg_attr(not(any(loom, miri)), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Control {
            registered: Padded::new(AtomicU64::new(0)),
            released: Padded::new(AtomicU64::new(0)),
            flags: Padded::new(AtomicU32::new(0)),
            data_bell: Padded::new(Doorbell::new()),
            space_bell: Padded::new(Doorbell::new()),
            staged: Padded::new(AtomicU64::new(0)),
        }
    }
}

/// The alignment of a tensor of `nbytes` in the payload: the largest power
/// of two that divides `nbytes`, kept within `MIN_ALIGN..=MAX_ALIGN`. A run
/// of same-sized tensors whose size is a multiple of 8 therefore lies back
/// to back with no padding (one contiguous `[n, *shape]` tensor), and every
/// tensor starts 8-byte aligned (64-byte aligned when its size allows,
/// which suits DMA engines and vector loads).
pub const fn placement_align(nbytes: u64) -> u64 {
    if nbytes == 0 {
        return MIN_ALIGN;
    }
    let pow = 1u64 << nbytes.trailing_zeros();
    if pow < MIN_ALIGN {
        MIN_ALIGN
    } else if pow > MAX_ALIGN {
        MAX_ALIGN
    } else {
        pow
    }
}

/// Sizes and offsets of a segment, derived from the item capacity, the
/// default item size and the payload size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    /// What a registration without a size reserves.
    pub(crate) item_bytes: u64,
    pub(crate) descriptors_offset: u64,
    /// The side table: `capacity` entries of `SIDE_ENTRY_BYTES` right
    /// after the descriptors.
    pub(crate) side_offset: u64,
    pub(crate) payload_offset: u64,
    pub(crate) payload_bytes: u64,
    /// Length of the file: header, descriptors, side table, one copy of
    /// the payload.
    pub(crate) total_bytes: u64,
}

impl Geometry {
    /// Checks the layout parameters and computes the offsets.
    pub(crate) fn new(
        capacity: u64,
        item_bytes: u64,
        payload_bytes: u64,
    ) -> Result<Geometry, String> {
        if capacity == 0 || !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
            return Err(format!(
                "item capacity {capacity} must be a power of two between 1 and {MAX_CAPACITY}"
            ));
        }
        if payload_bytes < PAGE as u64
            || !payload_bytes.is_power_of_two()
            || payload_bytes > MAX_PAYLOAD_BYTES
        {
            return Err(format!(
                "payload size {payload_bytes} bytes must be a power of two between the page size {PAGE} and {MAX_PAYLOAD_BYTES} (the payload is mapped twice back to back)"
            ));
        }
        if item_bytes > payload_bytes {
            return Err(format!(
                "default item size {item_bytes} bytes exceeds the payload size {payload_bytes} bytes"
            ));
        }
        let descriptors_offset = HEADER_BYTES as u64;
        let side_offset = descriptors_offset + capacity * DESCRIPTOR_BYTES as u64;
        let side = capacity * SIDE_ENTRY_BYTES as u64;
        let payload_offset = (side_offset + side).next_multiple_of(PAGE as u64);
        Ok(Geometry {
            capacity,
            item_bytes,
            descriptors_offset,
            side_offset,
            payload_offset,
            payload_bytes,
            total_bytes: payload_offset + payload_bytes,
        })
    }
}

/// The first bytes of a segment. Written once by the producer before it
/// publishes `magic`; the consumer copies and checks it once at open.
#[repr(C)]
#[derive(Debug)]
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) struct Header {
    /// `MAGIC`, stored last with Release when the segment is ready.
    pub(crate) magic: AtomicU64,
    pub(crate) version: u32,
    pub(crate) header_bytes: u32,
    pub(crate) capacity: u64,
    pub(crate) item_bytes: u64,
    pub(crate) descriptor_bytes: u32,
    pub(crate) max_dims: u32,
    pub(crate) max_id_len: u32,
    pub(crate) control_offset: u32,
    pub(crate) descriptors_offset: u64,
    pub(crate) payload_offset: u64,
    pub(crate) payload_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) producer_pid: u32,
    pub(crate) consumer_pid: AtomicU32,
    pub(crate) producer_uid: u32,
    pub(crate) name_lens: [u32; 3],
    /// request_id, edge_name, from_partition.
    pub(crate) names: [[u8; 128]; 3],
    /// [`LAYOUT_FINGERPRINT`] of the build that wrote the segment.
    pub(crate) layout_fingerprint: u64,
    /// Where the side table starts (ids, wide shapes).
    pub(crate) side_offset: u64,
    /// `SIDE_ENTRY_BYTES`.
    pub(crate) side_entry_bytes: u32,
    pub(crate) _pad: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_geometry_takes_every_limit_itself_and_refuses_one_past_it() {
        let largest = Geometry::new(MAX_CAPACITY, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES).unwrap();
        let table = MAX_CAPACITY * (DESCRIPTOR_BYTES + SIDE_ENTRY_BYTES) as u64;
        assert_eq!(largest.descriptors_offset, HEADER_BYTES as u64);
        assert_eq!(
            largest.side_offset,
            HEADER_BYTES as u64 + MAX_CAPACITY * DESCRIPTOR_BYTES as u64
        );
        assert_eq!(
            largest.payload_offset,
            (HEADER_BYTES as u64 + table).next_multiple_of(PAGE as u64)
        );
        assert_eq!(
            largest.total_bytes,
            largest.payload_offset + MAX_PAYLOAD_BYTES
        );
        let smallest = Geometry::new(1, 0, PAGE as u64).unwrap();
        assert_eq!(smallest.side_offset, HEADER_BYTES as u64 + 64);
        // The header page, one descriptor and its side entry rounded up to
        // a page, one payload.
        assert_eq!(
            (smallest.payload_offset, smallest.total_bytes),
            (
                HEADER_BYTES as u64 + PAGE as u64,
                HEADER_BYTES as u64 + 2 * PAGE as u64
            )
        );
        for (capacity, item_bytes, payload_bytes) in [
            (MAX_CAPACITY * 2, 0, PAGE as u64),
            (0, 0, PAGE as u64),
            (3, 0, PAGE as u64),
            (1, 0, PAGE as u64 / 2),
            (1, 0, MAX_PAYLOAD_BYTES * 2),
            (1, PAGE as u64 + 1, PAGE as u64),
        ] {
            assert!(
                Geometry::new(capacity, item_bytes, payload_bytes).is_err(),
                "{capacity} {item_bytes} {payload_bytes}"
            );
        }
    }

    #[test]
    fn placement_align_is_the_size_s_power_of_two_within_8_to_64() {
        for (nbytes, align) in [
            (0, 8),
            (1, 8),
            (4, 8),
            (8, 8),
            (24, 8),
            (16, 16),
            (48, 16),
            (32, 32),
            (64, 64),
            (128, 64),
            (192, 64),
            (1 << 40, 64),
        ] {
            assert_eq!(placement_align(nbytes), align, "{nbytes}");
        }
    }
}
