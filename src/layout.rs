//! The bytes of a segment: the header page, the descriptor table and the
//! payload area, and the checks applied to everything read back from them.
//!
//! Shared memory holds no pointers: every struct here is `repr(C)`, and
//! places are offsets from the segment's start and 64-bit stream positions
//! (a position never wraps; its slot is `position % capacity`).

use crate::doorbell::Doorbell;
use crate::error::StreamError;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::tensor::DType;
use crossbeam_utils::CachePadded;

/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 8;
/// Longest tensor id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest name of the stream's identity, in bytes.
pub const MAX_NAME_LEN: usize = 120;
/// Largest ring capacity (slots).
pub const MAX_CAPACITY: u64 = 1 << 20;
/// Largest slot size in bytes.
pub const MAX_SLOT_BYTES: u64 = 1 << 30;

/// "SHMSTRM" and a zero byte, read as a little-endian u64.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMSTRM\0");
/// Bumped whenever the bytes of a segment change meaning.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const VERSION: u32 = 1;
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

/// The cursors and flags both sides write, each on its own cache line so the
/// two cores do not bounce one line between them.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control {
    /// Positions reserved so far (the next position to register).
    /// Only the producer writes it; it never decreases.
    pub(crate) registered: CachePadded<AtomicU64>,
    /// Every position below it may be reused. Only the consumer writes it;
    /// it never decreases and never exceeds `registered`.
    pub(crate) released: CachePadded<AtomicU64>,
    /// `FLAG_*` bits; both sides set bits, nobody clears one.
    pub(crate) flags: CachePadded<AtomicU32>,
    /// The consumer sleeps here waiting for data; the producer rings.
    pub(crate) data_bell: CachePadded<Doorbell>,
    /// The producer sleeps here waiting for space; the consumer rings.
    pub(crate) space_bell: CachePadded<Doorbell>,
}

impl Control {
    // Only heap rings build these; segments start from zeroed memory.
    #[cfg_attr(not(any(loom, miri)), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Control {
            registered: CachePadded::new(AtomicU64::new(0)),
            released: CachePadded::new(AtomicU64::new(0)),
            flags: CachePadded::new(AtomicU32::new(0)),
            data_bell: CachePadded::new(Doorbell::new()),
            space_bell: CachePadded::new(Doorbell::new()),
        }
    }
}

/// One entry per slot. Every field is an atomic because the other process
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
    _reserved: [AtomicU64; 5],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Descriptor>() == DESCRIPTOR_BYTES);
#[cfg(not(loom))]
const _: () = assert!(CONTROL_OFFSET + std::mem::size_of::<Control>() <= HEADER_BYTES);

impl Descriptor {
    pub(crate) fn new() -> Self {
        Descriptor {
            seq: AtomicU64::new(0),
            nbytes: AtomicU64::new(0),
            info: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            dims: std::array::from_fn(|_| AtomicU64::new(0)),
            id: std::array::from_fn(|_| AtomicU64::new(0)),
            _reserved: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Writes the id (producer, at registration). Relaxed: published by the
    /// Release store of `seq` at commit.
    pub(crate) fn write_id(&self, id: &[u8]) {
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
}

impl ItemMeta {
    pub(crate) const EMPTY: ItemMeta = ItemMeta {
        id: [0; MAX_ID_LEN],
        id_len: 0,
        dtype: DType::U8,
        ndim: 0,
        dims: [0; MAX_DIMS],
        nbytes: 0,
    };

    pub(crate) fn id(&self) -> &str {
        // SAFETY: `read` checked these bytes to be UTF-8 before it built
        // this private copy (and `EMPTY`'s zero-length id is trivially
        // UTF-8); nothing writes the copy afterwards. Skipping the re-check
        // matters: ids are read for every item of every chunk.
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
        slot_bytes: u64,
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
        for (i, cell) in desc.id.iter().enumerate().take(id_len.div_ceil(8)) {
            out.id[i * 8..i * 8 + 8].copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
        }
        if std::str::from_utf8(&out.id[..id_len]).is_err() {
            return Err(corrupt("the id is not UTF-8".into()));
        }
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
        if nbytes > slot_bytes {
            return Err(corrupt(format!(
                "nbytes {nbytes} exceeds the slot size {slot_bytes}"
            )));
        }
        out.nbytes = nbytes;
        Ok(status)
    }

    /// Same dtype and shape: the two items stack into one tensor.
    pub(crate) fn stacks_with(&self, other: &ItemMeta) -> bool {
        self.dtype == other.dtype && self.shape() == other.shape()
    }
}

/// Sizes and offsets of a segment, derived from capacity and slot size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) slot_bytes: u64,
    pub(crate) descriptors_offset: u64,
    pub(crate) payload_offset: u64,
    pub(crate) payload_bytes: u64,
    /// Length of the file: header, descriptors, one copy of the payload.
    pub(crate) total_bytes: u64,
}

impl Geometry {
    /// Checks the layout parameters and computes the offsets.
    pub(crate) fn new(capacity: u64, slot_bytes: u64) -> Result<Geometry, String> {
        if capacity == 0 || !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
            return Err(format!(
                "capacity {capacity} must be a power of two between 1 and {MAX_CAPACITY}"
            ));
        }
        if slot_bytes == 0 || slot_bytes % 64 != 0 || slot_bytes > MAX_SLOT_BYTES {
            return Err(format!(
                "slot size {slot_bytes} must be a positive multiple of 64 bytes, at most {MAX_SLOT_BYTES}"
            ));
        }
        let payload_bytes = capacity * slot_bytes;
        if payload_bytes % PAGE as u64 != 0 {
            return Err(format!(
                "capacity x slot size = {payload_bytes} bytes must be a multiple of the page size {PAGE} (the payload is mapped twice back to back)"
            ));
        }
        if payload_bytes > 1 << 40 {
            return Err(format!(
                "capacity x slot size = {payload_bytes} bytes exceeds 1 TiB"
            ));
        }
        let descriptors_offset = HEADER_BYTES as u64;
        let table = capacity * DESCRIPTOR_BYTES as u64;
        let payload_offset = (descriptors_offset + table).next_multiple_of(PAGE as u64);
        Ok(Geometry {
            capacity,
            slot_bytes,
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
    pub(crate) slot_bytes: u64,
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
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Header>() <= CONTROL_OFFSET);
