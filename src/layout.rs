//! The bytes of a segment: the header page, the descriptor table and the
//! payload area, and the checks applied to everything read back from them.
//!
//! Shared memory holds no pointers: every struct here is `repr(C)`, and
//! places are offsets from the segment's start, 64-bit stream positions (a
//! position never wraps; its descriptor is `position % capacity`) and 64-bit
//! payload byte positions (never wrap either; the byte lives at
//! `byte % payload_bytes` of the payload area).

use crate::doorbell::Doorbell;
use crate::error::StreamError;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::tensor::DType;
use std::ops::Deref;

/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 8;
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
pub(crate) const VERSION: u32 = 2;
/// The header occupies one page.
pub(crate) const HEADER_BYTES: usize = 4096;
pub(crate) const PAGE: usize = 4096;
/// Where the shared cursors start within the header.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const CONTROL_OFFSET: usize = 1024;
pub(crate) const DESCRIPTOR_BYTES: usize = 192;

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

/// One entry per item of the ring. Every field is an atomic because the other process
/// may write it at any time (a correct peer never does while we read it, a
/// hostile one might): plain reads racing with writes would be undefined
/// behaviour, relaxed atomic reads are merely wrong values, which we check.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Descriptor {
    /// `position + 1` once the slot of `position` is committed (or abandoned).
    pub(crate) seq: AtomicU64,
    pub(crate) nbytes: AtomicU64,
    /// status (bits 0..8), dtype code (8..16), ndim (16..24), id length (24..32).
    pub(crate) info: AtomicU32,
    _pad: AtomicU32,
    pub(crate) dims: [AtomicU64; MAX_DIMS],
    /// The id's bytes, eight to a word, little-endian.
    pub(crate) id: [AtomicU64; MAX_ID_LEN / 8],
    /// Payload byte position of the reservation (never wraps).
    pub(crate) offset: AtomicU64,
    /// Bytes reserved there (at least `nbytes`).
    pub(crate) len: AtomicU64,
    _reserved: [AtomicU64; 3],
}

impl Descriptor {
    #[cfg_attr(not(any(loom, miri, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Descriptor {
            seq: AtomicU64::new(0),
            nbytes: AtomicU64::new(0),
            info: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            dims: std::array::from_fn(|_| AtomicU64::new(0)),
            id: std::array::from_fn(|_| AtomicU64::new(0)),
            offset: AtomicU64::new(0),
            len: AtomicU64::new(0),
            _reserved: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Writes the id and the reservation (producer, at registration).
    /// Relaxed: published by the Release store of `seq` at commit.
    pub(crate) fn write_registration(&self, id: &[u8], offset: u64, len: u64) {
        self.offset.store(offset, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        // Only the words the id covers: the consumer reads no further.
        for (cell, chunk) in self.id.iter().zip(id.chunks(8)) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            cell.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.info.store((id.len() as u32) << 24, Ordering::Relaxed);
    }

    /// Writes dtype, shape, byte count and status (producer, at commit,
    /// before the Release store of `seq`).
    pub(crate) fn write_meta(
        &self,
        status: u32,
        dtype: u8,
        dims: &[u64; MAX_DIMS],
        ndim: u8,
        nbytes: u64,
    ) {
        // Only `ndim` dims: the consumer reads no further.
        for (cell, d) in self.dims.iter().zip(dims).take(ndim as usize) {
            cell.store(*d, Ordering::Relaxed);
        }
        self.nbytes.store(nbytes, Ordering::Relaxed);
        let id_len = self.info.load(Ordering::Relaxed) & 0xff00_0000;
        self.info.store(
            id_len | (ndim as u32) << 16 | (dtype as u32) << 8 | status,
            Ordering::Relaxed,
        );
    }
}

/// A consumer's private, validated copy of a committed descriptor. The
/// consumer reads the descriptor once, checks it, and from then on trusts
/// only this copy, so a peer that rewrites shared memory later cannot make
/// it read out of bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ItemMeta {
    pub(crate) id: [u8; MAX_ID_LEN],
    pub(crate) id_len: u8,
    pub(crate) dtype: DType,
    pub(crate) ndim: u8,
    pub(crate) dims: [u64; MAX_DIMS],
    pub(crate) nbytes: u64,
    /// Payload byte position of the item (checked: see [`Bounds`]).
    pub(crate) offset: u64,
    /// Bytes reserved for it, `nbytes ..= payload_bytes`.
    pub(crate) len: u64,
}

/// What a descriptor's reservation is checked against: the walk is in
/// stream order, so each reservation starts at or after the end of the one
/// before it and ends within one payload length of the start of the oldest
/// unreleased one (the bytes from there on are the consumer's until it
/// releases them, so the producer cannot place anything over them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// End of the previous position's reservation.
    pub(crate) walk_end: u64,
    /// Start of the oldest unreleased position's reservation; `None` when
    /// the position checked is that one (its own start is the floor).
    pub(crate) oldest_start: Option<u64>,
    /// The payload area's length.
    pub(crate) payload_bytes: u64,
    /// The payload is mapped twice: a reservation may cross the wrap.
    pub(crate) mirrored: bool,
}

impl ItemMeta {
    pub(crate) const EMPTY: ItemMeta = ItemMeta {
        id: [0; MAX_ID_LEN],
        id_len: 0,
        dtype: DType::U8,
        ndim: 0,
        dims: [0; MAX_DIMS],
        nbytes: 0,
        offset: 0,
        len: 0,
    };

    /// The end of the item's reservation (a payload byte position).
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.len
    }

    pub(crate) fn id(&self) -> &str {
        // SAFETY: `read_into` checks the id bytes in a local buffer and
        // only then copies them here together with their length, so
        // `id[..id_len]` is UTF-8 whenever `id_len` is set, also after a
        // failed read (which leaves both untouched); `EMPTY`'s zero-length
        // id is trivially UTF-8. Skipping the re-check matters: ids are
        // read for every item of every chunk.
        unsafe { std::str::from_utf8_unchecked(&self.id[..self.id_len as usize]) }
    }

    pub(crate) fn shape(&self) -> &[u64] {
        &self.dims[..self.ndim as usize]
    }

    /// Reads and checks the descriptor of `position` into `out`, after the
    /// Acquire load of its `seq` showed it complete; returns the status.
    /// Writes in place (the copy is ~150 bytes, read for every item): on an
    /// error `out` holds a partial copy, which the caller does not use.
    pub(crate) fn read_into(
        desc: &Descriptor,
        position: u64,
        bounds: Bounds,
        out: &mut ItemMeta,
    ) -> Result<u32, StreamError> {
        let corrupt = |what: String| {
            StreamError::Corrupt(format!("descriptor of position {position}: {what}"))
        };
        let info = desc.info.load(Ordering::Relaxed);
        let status = info & 0xff;
        let dtype_code = (info >> 8) as u8;
        let ndim = (info >> 16) as u8;
        let id_len = (info >> 24) as usize;
        if id_len == 0 || id_len > MAX_ID_LEN {
            return Err(corrupt(format!(
                "id length {id_len} is outside 1..={MAX_ID_LEN}"
            )));
        }
        // Into a local first: `out.id[..out.id_len]` must hold UTF-8 at all
        // times (`id()` relies on it), also when this read fails.
        let mut id = [0u8; MAX_ID_LEN];
        for (i, cell) in desc.id.iter().enumerate().take(id_len.div_ceil(8)) {
            id[i * 8..i * 8 + 8].copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
        }
        if std::str::from_utf8(&id[..id_len]).is_err() {
            return Err(corrupt("the id is not UTF-8".into()));
        }
        out.id[..id_len].copy_from_slice(&id[..id_len]);
        out.id_len = id_len as u8;
        match status {
            STATUS_COMMITTED => {}
            STATUS_ABANDONED => return Ok(status),
            other => return Err(corrupt(format!("status code {other} does not exist"))),
        }
        out.dtype = DType::from_code(dtype_code)
            .ok_or_else(|| corrupt(format!("dtype code {dtype_code} does not exist")))?;
        if ndim as usize > MAX_DIMS {
            return Err(corrupt(format!(
                "{ndim} dimensions exceed the limit of {MAX_DIMS}"
            )));
        }
        out.ndim = ndim;
        let mut expected = Some(out.dtype.size() as u64);
        for (d, cell) in out.dims.iter_mut().zip(&desc.dims).take(ndim as usize) {
            *d = cell.load(Ordering::Relaxed);
            expected = expected.and_then(|acc| acc.checked_mul(*d));
        }
        let expected =
            expected.ok_or_else(|| corrupt("the shape's byte count overflows".into()))?;
        let nbytes = desc.nbytes.load(Ordering::Relaxed);
        if expected != nbytes {
            return Err(corrupt(format!(
                "nbytes {nbytes} disagrees with the shape's {expected}"
            )));
        }
        let offset = desc.offset.load(Ordering::Relaxed);
        let len = desc.len.load(Ordering::Relaxed);
        if nbytes > len {
            return Err(corrupt(format!(
                "nbytes {nbytes} exceeds the {len} bytes reserved"
            )));
        }
        let align = placement_align(len);
        if offset % align != 0 {
            return Err(corrupt(format!(
                "reservation of {len} bytes at payload byte {offset} is not aligned to {align}"
            )));
        }
        let limit = bounds
            .oldest_start
            .unwrap_or(offset)
            .saturating_add(bounds.payload_bytes);
        if offset < bounds.walk_end || offset.checked_add(len).map_or(true, |end| end > limit) {
            return Err(corrupt(format!(
                "reservation of {len} bytes at payload byte {offset} is outside {}..{limit} (after the previous item, within one payload length of the oldest unreleased one)",
                bounds.walk_end
            )));
        }
        let mask = bounds.payload_bytes - 1;
        if !bounds.mirrored && (offset & mask) + len > bounds.payload_bytes {
            return Err(corrupt(format!(
                "reservation of {len} bytes at payload byte {offset} crosses the end of an unmirrored payload of {} bytes",
                bounds.payload_bytes
            )));
        }
        out.nbytes = nbytes;
        out.offset = offset;
        out.len = len;
        Ok(status)
    }

    /// Same dtype and shape: the two items stack into one tensor.
    pub(crate) fn stacks_with(&self, other: &ItemMeta) -> bool {
        self.dtype == other.dtype && self.shape() == other.shape()
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
    pub(crate) payload_offset: u64,
    pub(crate) payload_bytes: u64,
    /// Length of the file: header, descriptors, one copy of the payload.
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
        let table = capacity * DESCRIPTOR_BYTES as u64;
        let payload_offset = (descriptors_offset + table).next_multiple_of(PAGE as u64);
        Ok(Geometry {
            capacity,
            item_bytes,
            descriptors_offset,
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
}

/// The offsets `docs/design.md` documents, checked at compile time: a
/// change of a type (an atomic of another size, a padding rule) that moves
/// a byte of the shared layout stops the build here instead of making two
/// builds misread each other.
#[cfg(not(loom))]
mod offsets {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    const _: () = {
        // The header page.
        assert!(offset_of!(Header, magic) == 0);
        assert!(offset_of!(Header, version) == 8);
        assert!(offset_of!(Header, header_bytes) == 12);
        assert!(offset_of!(Header, capacity) == 16);
        assert!(offset_of!(Header, item_bytes) == 24);
        assert!(offset_of!(Header, descriptor_bytes) == 32);
        assert!(offset_of!(Header, max_dims) == 36);
        assert!(offset_of!(Header, max_id_len) == 40);
        assert!(offset_of!(Header, control_offset) == 44);
        assert!(offset_of!(Header, descriptors_offset) == 48);
        assert!(offset_of!(Header, payload_offset) == 56);
        assert!(offset_of!(Header, payload_bytes) == 64);
        assert!(offset_of!(Header, total_bytes) == 72);
        assert!(offset_of!(Header, producer_pid) == 80);
        assert!(offset_of!(Header, consumer_pid) == 84);
        assert!(offset_of!(Header, producer_uid) == 88);
        assert!(offset_of!(Header, name_lens) == 92);
        assert!(offset_of!(Header, names) == 104);
        assert!(offset_of!(Header, layout_fingerprint) == 488);
        assert!(size_of::<Header>() == 496);
        assert!(size_of::<Header>() <= CONTROL_OFFSET);
        // The control block, from CONTROL_OFFSET: one 128-byte line each.
        assert!(align_of::<Padded<AtomicU64>>() == LINE_BYTES);
        assert!(size_of::<Padded<Doorbell>>() == LINE_BYTES);
        assert!(size_of::<Doorbell>() == 8 && align_of::<Doorbell>() == 4);
        assert!(offset_of!(Control, registered) == 0);
        assert!(offset_of!(Control, released) == 128);
        assert!(offset_of!(Control, flags) == 256);
        assert!(offset_of!(Control, data_bell) == 384);
        assert!(offset_of!(Control, space_bell) == 512);
        assert!(size_of::<Control>() == 640);
        assert!(CONTROL_OFFSET % LINE_BYTES == 0);
        assert!(CONTROL_OFFSET + size_of::<Control>() <= HEADER_BYTES);
        // A descriptor.
        assert!(offset_of!(Descriptor, seq) == 0);
        assert!(offset_of!(Descriptor, nbytes) == 8);
        assert!(offset_of!(Descriptor, info) == 16);
        assert!(offset_of!(Descriptor, _pad) == 20);
        assert!(offset_of!(Descriptor, dims) == 24);
        assert!(offset_of!(Descriptor, id) == 88);
        assert!(offset_of!(Descriptor, offset) == 152);
        assert!(offset_of!(Descriptor, len) == 160);
        assert!(offset_of!(Descriptor, _reserved) == 168);
        assert!(size_of::<Descriptor>() == DESCRIPTOR_BYTES);
        assert!(align_of::<Descriptor>() == 8);
        assert!(HEADER_BYTES % PAGE == 0);
    };
}

/// One step of 64-bit FNV-1a over the eight bytes of `value`.
#[cfg(not(loom))]
const fn fnv1a(mut hash: u64, value: u64) -> u64 {
    let bytes = value.to_le_bytes();
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// A hash of everything that fixes the bytes of a segment: the version,
/// the limits, the size, alignment and every field offset of the header,
/// the control block and a descriptor, the flag and status codes, the byte
/// order and the pointer width. Stored in the header by the producer;
/// `open` refuses a segment whose fingerprint differs, so two builds whose
/// layouts differ in any of these refuse each other even where every field
/// the consumer checks one by one happens to agree.
#[cfg(not(loom))]
pub(crate) const LAYOUT_FINGERPRINT: u64 = {
    use core::mem::{align_of, offset_of, size_of};
    let parts: [u64; 59] = [
        MAGIC,
        VERSION as u64,
        HEADER_BYTES as u64,
        PAGE as u64,
        CONTROL_OFFSET as u64,
        DESCRIPTOR_BYTES as u64,
        LINE_BYTES as u64,
        MAX_DIMS as u64,
        MAX_ID_LEN as u64,
        MAX_NAME_LEN as u64,
        MAX_CAPACITY,
        MAX_PAYLOAD_BYTES,
        MIN_ALIGN | MAX_ALIGN << 16,
        FLAG_KNOWN as u64,
        FLAG_DONE as u64 | (FLAG_PRODUCER_GONE as u64) << 8 | (FLAG_CONSUMER_GONE as u64) << 16,
        FLAG_CONSUMER_ATTACHED as u64,
        STATUS_COMMITTED as u64 | (STATUS_ABANDONED as u64) << 8,
        cfg!(target_endian = "little") as u64,
        usize::BITS as u64,
        size_of::<Header>() as u64,
        align_of::<Header>() as u64,
        offset_of!(Header, magic) as u64,
        offset_of!(Header, version) as u64,
        offset_of!(Header, header_bytes) as u64,
        offset_of!(Header, capacity) as u64,
        offset_of!(Header, item_bytes) as u64,
        offset_of!(Header, descriptor_bytes) as u64,
        offset_of!(Header, max_dims) as u64,
        offset_of!(Header, max_id_len) as u64,
        offset_of!(Header, control_offset) as u64,
        offset_of!(Header, descriptors_offset) as u64,
        offset_of!(Header, payload_offset) as u64,
        offset_of!(Header, payload_bytes) as u64,
        offset_of!(Header, total_bytes) as u64,
        offset_of!(Header, producer_pid) as u64,
        offset_of!(Header, consumer_pid) as u64,
        offset_of!(Header, producer_uid) as u64,
        offset_of!(Header, name_lens) as u64,
        offset_of!(Header, names) as u64,
        offset_of!(Header, layout_fingerprint) as u64,
        size_of::<Control>() as u64,
        align_of::<Control>() as u64,
        offset_of!(Control, registered) as u64,
        offset_of!(Control, released) as u64,
        offset_of!(Control, flags) as u64,
        offset_of!(Control, data_bell) as u64,
        offset_of!(Control, space_bell) as u64,
        size_of::<Doorbell>() as u64,
        size_of::<Descriptor>() as u64,
        align_of::<Descriptor>() as u64,
        offset_of!(Descriptor, seq) as u64,
        offset_of!(Descriptor, nbytes) as u64,
        offset_of!(Descriptor, info) as u64,
        offset_of!(Descriptor, dims) as u64,
        offset_of!(Descriptor, id) as u64,
        offset_of!(Descriptor, offset) as u64,
        offset_of!(Descriptor, len) as u64,
        offset_of!(Descriptor, _reserved) as u64,
        // The descriptor's `info` word: status, dtype, ndim, id length.
        8 << 8 | 16 << 16 | 24 << 24,
    ];
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        hash = fnv1a(hash, parts[i]);
        i += 1;
    }
    hash
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed `[len]` u8 descriptor whose reservation is `len` bytes
    /// at payload byte `offset`.
    fn committed(offset: u64, len: u64) -> Descriptor {
        let desc = Descriptor::new();
        desc.write_registration(b"t0", offset, len);
        let mut dims = [0; MAX_DIMS];
        dims[0] = len;
        desc.write_meta(STATUS_COMMITTED, DType::U8.code(), &dims, 1, len);
        desc
    }

    /// Reads `desc` as position 0 of a 4096-byte payload whose bytes
    /// before `walk_end` are walked past and released (the oldest
    /// unreleased reservation starts there).
    fn read(desc: &Descriptor, walk_end: u64, mirrored: bool) -> Result<ItemMeta, StreamError> {
        let bounds = Bounds {
            walk_end,
            oldest_start: Some(walk_end),
            payload_bytes: 4096,
            mirrored,
        };
        let mut out = ItemMeta::EMPTY;
        ItemMeta::read_into(desc, 0, bounds, &mut out).map(|_| out)
    }

    fn crosses(result: Result<ItemMeta, StreamError>) -> bool {
        matches!(result, Err(StreamError::Corrupt(what)) if what.contains("crosses the end of an unmirrored payload of 4096 bytes"))
    }

    #[test]
    fn an_unmirrored_reservation_may_end_at_the_payload_end_but_not_cross_it() {
        // In the first lap and in a later one (the byte position is taken
        // modulo the payload length).
        for lap in [0, 4096, 5 * 4096] {
            // Everything before byte `lap + 3968` is released.
            let after = lap + 3968;
            let to_end = read(&committed(lap + 3968, 128), after, false).unwrap();
            assert_eq!((to_end.offset, to_end.len), (lap + 3968, 128));
            assert!(crosses(read(&committed(lap + 4032, 128), after, false)));
            assert!(crosses(read(&committed(lap + 4080, 48), after, false)));
            // Where the payload is mapped twice, crossing is fine.
            let across = read(&committed(lap + 4032, 128), after, true).unwrap();
            assert_eq!((across.offset, across.len), (lap + 4032, 128));
            // A reservation at the start of a lap does not cross anything.
            assert!(read(&committed(lap, 4096), lap, false).is_ok());
        }
    }

    #[test]
    fn the_longest_id_and_the_most_dimensions_are_read_and_one_more_is_corrupt() {
        let id = [b'x'; MAX_ID_LEN];
        let dims = [1; MAX_DIMS];
        let desc = Descriptor::new();
        desc.write_registration(&id, 0, 8);
        desc.write_meta(STATUS_COMMITTED, DType::U8.code(), &dims, 8, 1);
        let meta = read(&desc, 0, false).unwrap();
        assert_eq!(meta.id(), std::str::from_utf8(&id).unwrap());
        assert_eq!(meta.shape(), &dims[..]);

        let corrupt = |result: Result<ItemMeta, StreamError>, needle: &str| matches!(result, Err(StreamError::Corrupt(what)) if what.contains(needle));
        let long = Descriptor::new();
        long.write_registration(&id, 0, 8);
        long.write_meta(STATUS_COMMITTED, DType::U8.code(), &dims, 8, 1);
        long.info.fetch_add(1 << 24, Ordering::Relaxed); // id length 65
        assert!(corrupt(
            read(&long, 0, false),
            "id length 65 is outside 1..=64"
        ));
        let deep = Descriptor::new();
        deep.write_registration(b"t0", 0, 8);
        deep.write_meta(STATUS_COMMITTED, DType::U8.code(), &dims, 9, 1);
        assert!(corrupt(
            read(&deep, 0, false),
            "9 dimensions exceed the limit of 8"
        ));
    }

    #[test]
    fn a_geometry_takes_every_limit_itself_and_refuses_one_past_it() {
        let largest = Geometry::new(MAX_CAPACITY, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES).unwrap();
        let table = MAX_CAPACITY * DESCRIPTOR_BYTES as u64;
        assert_eq!(largest.descriptors_offset, HEADER_BYTES as u64);
        assert_eq!(
            largest.payload_offset,
            (HEADER_BYTES as u64 + table).next_multiple_of(PAGE as u64)
        );
        assert_eq!(
            largest.total_bytes,
            largest.payload_offset + MAX_PAYLOAD_BYTES
        );
        let smallest = Geometry::new(1, 0, PAGE as u64).unwrap();
        // The header page, one descriptor rounded up to a page, one payload.
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
