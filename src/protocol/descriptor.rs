//! One item's record in shared memory: its descriptor (status, dtype,
//! shape, reservation) and side entry (id, wide dims), written by the
//! producer and read back by the consumer with every field checked
//! against the geometry and the reservation before it is trusted. Items
//! committed together are one run: the head's record, its count in `seq`
//! and the span it covers are checked here too (issue 24), since a run is
//! read back as the head's record standing for each of its items.

use crate::error::StreamError;
use crate::protocol::layout::{placement_align, MAX_ID_LEN, STATUS_ABANDONED, STATUS_COMMITTED};
use crate::protocol::run::run_stride;
use crate::protocol::tensor::{DType, MAX_DIMS};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A descriptor's `nbytes` word when the item is *wide*: its byte count
/// does not fit below this value or one of its dims does not fit 32 bits.
/// The dims then live in the side entry ([`SideEntry::wide_dims`]) as u64
/// and the byte count is their product (a tensor of 4 GiB or more).
pub(crate) const WIDE: u32 = u32::MAX;

/// The hot per-item record: one 64-byte cache line, everything the consumer
/// needs for every item (sequence, reservation, byte count, dtype, rank,
/// shape). The id strings live in the side table ([`SideEntry`]), read only
/// when an id is asked for. Every field is an atomic because the other
/// process may write it at any time (a correct peer never does while we
/// read it, a hostile one might): plain reads racing with writes would be
/// undefined behaviour, relaxed atomic reads are merely wrong values, which
/// we check. Line-aligned: two items never share a line, so the producer
/// writing item `p` never takes a line the consumer reads item `p - k` from.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Descriptor {
    /// `position + n` once the positions `position .. position + n` are
    /// committed together as one run (`n == 1`: one item, or an abandoned
    /// one); the run's other descriptors keep their registration words only
    /// and an older `seq`, always `<= position` (see [`run_count`]).
    pub(crate) seq: AtomicU64,
    /// Payload byte position of the reservation (never wraps).
    pub(crate) offset: AtomicU64,
    /// Bytes reserved there (at least the byte count).
    pub(crate) len: AtomicU64,
    /// status (bits 0..8), dtype code (8..16), ndim (16..24), id length (24..32).
    pub(crate) info: AtomicU32,
    /// The tensor's byte count, or [`WIDE`].
    pub(crate) nbytes: AtomicU32,
    /// The first `ndim` dims (unless [`WIDE`]).
    pub(crate) dims: [AtomicU32; MAX_DIMS],
}

/// The side table's entry of a slot: what only the by-id calls (and wide
/// items) need, apart from the hot line. Written by the producer at
/// registration (and at commit for a wide item), read by the consumer only
/// when an id is asked for (and at poll for a wide item).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SideEntry {
    /// The id's bytes, eight to a word, little-endian; its length is in the
    /// descriptor's `info`.
    pub(crate) id: [AtomicU64; MAX_ID_LEN / 8],
    /// A wide item's first `ndim` dims.
    pub(crate) wide_dims: [AtomicU64; MAX_DIMS],
}

impl Descriptor {
    #[cfg_attr(not(any(loom, miri, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Descriptor {
            seq: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            len: AtomicU64::new(0),
            info: AtomicU32::new(0),
            nbytes: AtomicU32::new(0),
            dims: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Writes the reservation and the id's length (producer, before the
    /// position is published; Relaxed, published by the Release store of
    /// `seq`). The producer writes them at commit, with the metadata, not
    /// at registration: the consumer spins on this line (the next `seq`),
    /// and each write of it costs a transfer of the line from the consumer.
    pub(crate) fn write_reservation(&self, offset: u64, len: u64, id_len: u8) {
        self.offset.store(offset, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.info.store((id_len as u32) << 24, Ordering::Relaxed);
    }

    /// Writes dtype, shape, byte count and status (producer, at commit,
    /// before the Release store of `seq`); a wide item's dims go to `side`.
    pub(crate) fn write_meta(
        &self,
        side: &SideEntry,
        status: u32,
        dtype: u8,
        dims: &[u64; MAX_DIMS],
        ndim: u8,
        nbytes: u64,
    ) {
        // Only `ndim` dims: the consumer reads no further.
        let dims = &dims[..(ndim as usize).min(MAX_DIMS)];
        let narrow = nbytes < WIDE as u64 && dims.iter().all(|&d| d <= u32::MAX as u64);
        if narrow {
            for (cell, d) in self.dims.iter().zip(dims) {
                cell.store(*d as u32, Ordering::Relaxed);
            }
            self.nbytes.store(nbytes as u32, Ordering::Relaxed);
        } else {
            for (cell, d) in side.wide_dims.iter().zip(dims) {
                cell.store(*d, Ordering::Relaxed);
            }
            self.nbytes.store(WIDE, Ordering::Relaxed);
        }
        let id_len = self.info.load(Ordering::Relaxed) & 0xff00_0000;
        self.info.store(
            id_len | (ndim as u32) << 16 | (dtype as u32) << 8 | status,
            Ordering::Relaxed,
        );
    }
}

/// Writes the id's bytes into `side` (producer, at registration; Relaxed:
/// published by the Release store of `seq`), only the words it covers: the
/// consumer reads no further. The side table's lines are the producer's
/// alone until the consumer asks for an id.
pub(crate) fn write_id(side: &SideEntry, id: &[u8]) {
    for (cell, chunk) in side.id.iter().zip(id.chunks(8)) {
        // The word is put together in a register: copying a short chunk
        // into a stack buffer and loading it as a word misses store
        // forwarding, and that load then waits for every store before it
        // to leave the store buffer (those into lines the consumer holds
        // take a cache-line transfer each): measured, 92% of `reserve`'s
        // time in the one-by-one stream (issue 24).
        let word = chunk
            .iter()
            .rev()
            .fold(0u64, |word, &byte| word << 8 | u64::from(byte));
        cell.store(word, Ordering::Relaxed);
    }
}

impl SideEntry {
    #[cfg_attr(not(any(loom, miri, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn new() -> Self {
        SideEntry {
            id: std::array::from_fn(|_| AtomicU64::new(0)),
            wide_dims: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A tensor id the consumer read from the side table and checked: 1 to
/// [`MAX_ID_LEN`] bytes of UTF-8, in consumer-private memory (or the empty
/// placeholder of `Default`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ItemId {
    bytes: [u8; MAX_ID_LEN],
    /// In `1..=MAX_ID_LEN` (0: the placeholder); `bytes[..len]` is UTF-8
    /// (checked in `read`).
    len: u8,
}

impl Default for ItemId {
    fn default() -> Self {
        ItemId {
            bytes: [0; MAX_ID_LEN],
            len: 0,
        }
    }
}

impl ItemId {
    /// Reads and checks the id of `position`, whose descriptor's `info`
    /// word (loaded at poll) gave `id_len`. Called only while the position
    /// is committed and unreleased: the producer does not write its side
    /// entry then (a hostile one may; every byte is checked here).
    pub(crate) fn read(side: &SideEntry, position: u64, id_len: u8) -> Result<ItemId, StreamError> {
        let id_len = id_len as usize;
        if id_len == 0 || id_len > MAX_ID_LEN {
            return Err(StreamError::Corrupt(format!(
                "descriptor of position {position}: id length {id_len} is outside 1..={MAX_ID_LEN}"
            )));
        }
        let mut bytes = [0u8; MAX_ID_LEN];
        for (i, cell) in side.id.iter().enumerate().take(id_len.div_ceil(8)) {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
        }
        if std::str::from_utf8(&bytes[..id_len]).is_err() {
            return Err(StreamError::Corrupt(format!(
                "descriptor of position {position}: the id is not UTF-8"
            )));
        }
        Ok(ItemId {
            bytes,
            len: id_len as u8,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: `read`, the only constructor besides `Default` (whose
        // zero-length id is trivially UTF-8), checked `bytes[..len]` is
        // UTF-8; the fields are private and never written afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len as usize]) }
    }
}

/// A consumer's private, validated copy of a committed descriptor. The
/// consumer reads the descriptor once, checks it, and from then on trusts
/// only this copy, so a peer that rewrites shared memory later cannot make
/// it read out of bounds. The id is not here: it is read from the side
/// table when asked for ([`ItemId::read`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ItemMeta {
    /// The id's length as the descriptor gave it, unchecked: checked with
    /// the id's bytes when the id is asked for.
    pub(crate) id_len: u8,
    pub(crate) dtype: DType,
    pub(crate) ndim: u8,
    /// The descriptor's dtype and ndim bits (`info & 0x00ff_ff00`) and its
    /// `nbytes` word, as read: a later item whose words equal these and
    /// whose dims equal `dims` has the same, already checked, shape.
    pub(crate) shape_key: (u32, u32),
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

/// What [`ItemMeta::read_into`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Read {
    /// `STATUS_COMMITTED` or `STATUS_ABANDONED`.
    pub(crate) status: u32,
    /// Committed with the shape words of the previous item (`prev`): the
    /// shape was not checked again, and the two stack.
    pub(crate) same_shape: bool,
}

impl ItemMeta {
    pub(crate) const EMPTY: ItemMeta = ItemMeta {
        id_len: 0,
        dtype: DType::U8,
        ndim: 0,
        shape_key: (0, WIDE),
        dims: [0; MAX_DIMS],
        nbytes: 0,
        offset: 0,
        len: 0,
    };

    /// The end of the item's reservation (a payload byte position).
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.len
    }

    pub(crate) fn shape(&self) -> &[u64] {
        &self.dims[..self.ndim as usize]
    }

    /// Reads and checks the descriptor of `position` into `out`, after the
    /// Acquire load of its `seq` showed it complete; returns the status.
    /// `prev` is the validated copy of the previous position when it is in
    /// the walk: a run of items whose shape words are identical to it is
    /// checked once per run (the shape's decoding, rank, product and
    /// overflow checks are skipped; the words are still compared), the
    /// reservation of every item is checked. Writes in place: on an error
    /// `out` holds a partial copy, which the caller does not use.
    pub(crate) fn read_into(
        desc: &Descriptor,
        side: &SideEntry,
        position: u64,
        bounds: &Bounds,
        prev: Option<&ItemMeta>,
        out: &mut ItemMeta,
    ) -> Result<Read, StreamError> {
        let corrupt = |what: String| {
            StreamError::Corrupt(format!("descriptor of position {position}: {what}"))
        };
        let info = desc.info.load(Ordering::Relaxed);
        let status = info & 0xff;
        out.id_len = (info >> 24) as u8;
        match status {
            STATUS_COMMITTED => {}
            STATUS_ABANDONED => {
                return Ok(Read {
                    status,
                    same_shape: false,
                })
            }
            other => return Err(corrupt(format!("status code {other} does not exist"))),
        }
        let key = (info & 0x00ff_ff00, desc.nbytes.load(Ordering::Relaxed));
        let ndim = (info >> 16) as u8;
        let same_shape = match prev {
            Some(prev) if prev.shape_key == key && key.1 != WIDE => {
                // The rank is at most MAX_DIMS: `prev`'s was checked.
                let mut same = true;
                for (cell, d) in desc.dims.iter().zip(prev.shape()) {
                    same &= u64::from(cell.load(Ordering::Relaxed)) == *d;
                }
                if same {
                    out.dtype = prev.dtype;
                    out.ndim = prev.ndim;
                    out.dims = prev.dims;
                    out.nbytes = prev.nbytes;
                }
                same
            }
            _ => false,
        };
        if !same_shape {
            let dtype_code = (info >> 8) as u8;
            out.dtype = DType::from_code(dtype_code)
                .ok_or_else(|| corrupt(format!("dtype code {dtype_code} does not exist")))?;
            if ndim as usize > MAX_DIMS {
                return Err(corrupt(format!(
                    "{ndim} dimensions exceed the limit of {MAX_DIMS}"
                )));
            }
            out.ndim = ndim;
            let mut expected = Some(out.dtype.size() as u64);
            let dims = out.dims.iter_mut().take(ndim as usize);
            if key.1 == WIDE {
                for (d, cell) in dims.zip(&side.wide_dims) {
                    *d = cell.load(Ordering::Relaxed);
                    expected = expected.and_then(|acc| acc.checked_mul(*d));
                }
            } else {
                for (d, cell) in dims.zip(&desc.dims) {
                    *d = u64::from(cell.load(Ordering::Relaxed));
                    expected = expected.and_then(|acc| acc.checked_mul(*d));
                }
            }
            let expected =
                expected.ok_or_else(|| corrupt("the shape's byte count overflows".into()))?;
            // A wide item's byte count is its shape's; a narrow one's is
            // stored and must agree.
            if key.1 != WIDE && expected != u64::from(key.1) {
                return Err(corrupt(format!(
                    "nbytes {} disagrees with the shape's {expected}",
                    key.1
                )));
            }
            out.nbytes = expected;
        }
        out.shape_key = key;
        let nbytes = out.nbytes;
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
        out.offset = offset;
        out.len = len;
        Ok(Read { status, same_shape })
    }

    /// Same dtype and shape: the two items stack into one tensor.
    pub(crate) fn stacks_with(&self, other: &ItemMeta) -> bool {
        self.dtype == other.dtype && self.shape() == other.shape()
    }

    /// Checks that a run of `n` items whose head (at `position`) this
    /// validated copy is, lies where the head's own reservation was
    /// checked to lie: the items `1 .. n` at [`run_stride`] from each other,
    /// each of the head's length, the last ending within the same limit as
    /// the head (one payload length past the oldest unreleased item) and,
    /// without a mirror, not across the end of the payload. Returns the
    /// stride and the end of the run's last reservation.
    pub(crate) fn check_run(
        &self,
        position: u64,
        n: u64,
        bounds: &Bounds,
    ) -> Result<(u64, u64), StreamError> {
        debug_assert!(n >= 1);
        let corrupt = |what: String| {
            StreamError::Corrupt(format!(
                "descriptor of position {position}: a run of {n} items {what}"
            ))
        };
        let (offset, len) = (self.offset, self.len);
        if n == 1 {
            return Ok((0, self.end()));
        }
        let limit = bounds
            .oldest_start
            .unwrap_or(offset)
            .saturating_add(bounds.payload_bytes);
        // The span from the head's start to the last item's end.
        let span = run_stride(len)
            .and_then(|stride| Some((stride, stride.checked_mul(n - 1)?.checked_add(len)?)));
        let Some((stride, span)) = span else {
            return Err(corrupt(format!("of {len} bytes each overflows")));
        };
        let end = offset.checked_add(span).filter(|&end| end <= limit);
        let Some(end) = end else {
            return Err(corrupt(format!(
                "of {len} bytes each from payload byte {offset} spans {span} bytes, past {limit} (one payload length past the oldest unreleased item)"
            )));
        };
        let mask = bounds.payload_bytes - 1;
        if !bounds.mirrored && (offset & mask) + span > bounds.payload_bytes {
            return Err(corrupt(format!(
                "of {len} bytes each from payload byte {offset} crosses the end of an unmirrored payload of {} bytes",
                bounds.payload_bytes
            )));
        }
        Ok((stride, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed `[len]` u8 descriptor whose reservation is `len` bytes
    /// at payload byte `offset`, and its side entry.
    fn committed(offset: u64, len: u64) -> (Descriptor, SideEntry) {
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, b"t0");
        desc.write_reservation(offset, len, b"t0".len() as u8);
        let mut dims = [0; MAX_DIMS];
        dims[0] = len;
        desc.write_meta(&side, STATUS_COMMITTED, DType::U8.code(), &dims, 1, len);
        (desc, side)
    }

    fn bounds(walk_end: u64, mirrored: bool) -> Bounds {
        Bounds {
            walk_end,
            oldest_start: Some(walk_end),
            payload_bytes: 4096,
            mirrored,
        }
    }

    /// Reads `desc` as position 0 of a 4096-byte payload whose bytes
    /// before `walk_end` are walked past and released (the oldest
    /// unreleased reservation starts there).
    fn read(
        (desc, side): &(Descriptor, SideEntry),
        walk_end: u64,
        mirrored: bool,
    ) -> Result<ItemMeta, StreamError> {
        let mut out = ItemMeta::EMPTY;
        ItemMeta::read_into(desc, side, 0, &bounds(walk_end, mirrored), None, &mut out).map(|_| out)
    }

    fn crosses(result: Result<ItemMeta, StreamError>) -> bool {
        matches!(result, Err(StreamError::Corrupt(what)) if what.contains("crosses the end of an unmirrored payload of 4096 bytes"))
    }

    fn corrupt<T: std::fmt::Debug>(result: Result<T, StreamError>, needle: &str) -> bool {
        match result {
            Err(StreamError::Corrupt(what)) => what.contains(needle),
            other => panic!("{other:?} is not corrupt ({needle})"),
        }
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
            assert_eq!(to_end.end(), lap + 4096);
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
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, &id);
        desc.write_reservation(0, 8, id.len() as u8);
        desc.write_meta(&side, STATUS_COMMITTED, DType::U8.code(), &dims, 8, 1);
        let pair = (desc, side);
        let meta = read(&pair, 0, false).unwrap();
        let read_id = ItemId::read(&pair.1, 0, meta.id_len).unwrap();
        assert_eq!(read_id.as_str(), std::str::from_utf8(&id).unwrap());
        assert_eq!(meta.shape(), &dims[..]);
        assert_eq!(meta.nbytes, 1);

        // The id's checks run when the id is read, not at poll.
        assert!(corrupt(
            ItemId::read(&pair.1, 0, MAX_ID_LEN as u8 + 1),
            "descriptor of position 0: id length 65 is outside 1..=64"
        ));
        assert!(corrupt(
            ItemId::read(&pair.1, 0, 0),
            "id length 0 is outside 1..=64"
        ));
        pair.1.id[0].store(0xff, Ordering::Relaxed);
        assert!(corrupt(
            ItemId::read(&pair.1, 7, 1),
            "descriptor of position 7: the id is not UTF-8"
        ));
        // Only the id's own bytes are checked: a bad byte past its end is
        // not read.
        pair.1.id[0].store(u64::from_le_bytes(*b"ab\xff\0\0\0\0\0"), Ordering::Relaxed);
        assert_eq!(ItemId::read(&pair.1, 0, 2).unwrap().as_str(), "ab");
        assert!(corrupt(ItemId::read(&pair.1, 0, 3), "not UTF-8"));

        let deep = committed(0, 8);
        deep.0
            .write_meta(&deep.1, STATUS_COMMITTED, DType::U8.code(), &dims, 9, 1);
        assert!(corrupt(
            read(&deep, 0, false),
            "9 dimensions exceed the limit of 8"
        ));
    }

    #[test]
    fn a_shape_that_does_not_fit_32_bits_is_wide_and_read_from_the_side_entry() {
        let mut dims = [0; MAX_DIMS];
        // A dim past u32 (zero bytes: the other dim is 0).
        dims[..2].copy_from_slice(&[1 << 33, 0]);
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, b"w");
        desc.write_reservation(0, 8, b"w".len() as u8);
        desc.write_meta(&side, STATUS_COMMITTED, DType::F32.code(), &dims, 2, 0);
        assert_eq!(desc.nbytes.load(Ordering::Relaxed), WIDE);
        let pair = (desc, side);
        let meta = read(&pair, 0, false).unwrap();
        assert_eq!((meta.shape(), meta.nbytes), (&[1 << 33, 0][..], 0));
        // A byte count of 2^32 or more with narrow dims: wide as well.
        dims[..2].copy_from_slice(&[1 << 16, 1 << 16]);
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, b"w");
        desc.write_reservation(0, 1 << 40, b"w".len() as u8);
        desc.write_meta(&side, STATUS_COMMITTED, DType::U8.code(), &dims, 2, 1 << 32);
        assert_eq!(desc.nbytes.load(Ordering::Relaxed), WIDE);
        let big = Bounds {
            walk_end: 0,
            oldest_start: None,
            payload_bytes: 1 << 40,
            mirrored: true,
        };
        let mut out = ItemMeta::EMPTY;
        ItemMeta::read_into(&desc, &side, 0, &big, None, &mut out).unwrap();
        assert_eq!(
            (out.shape(), out.nbytes),
            (&[1 << 16, 1 << 16][..], 1 << 32)
        );
        // A byte count of exactly u32::MAX (the marker's value) is wide.
        dims[..2].copy_from_slice(&[u32::MAX as u64, 1]);
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, b"w");
        desc.write_reservation(0, 1 << 32, b"w".len() as u8);
        desc.write_meta(
            &side,
            STATUS_COMMITTED,
            DType::U8.code(),
            &dims,
            2,
            u32::MAX as u64,
        );
        assert_eq!(desc.nbytes.load(Ordering::Relaxed), WIDE);
        let mut out = ItemMeta::EMPTY;
        ItemMeta::read_into(&desc, &side, 0, &big, None, &mut out).unwrap();
        assert_eq!(
            (out.shape(), out.nbytes),
            (&[u32::MAX as u64, 1][..], u32::MAX as u64)
        );
        // One byte less is narrow.
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        dims[..2].copy_from_slice(&[u32::MAX as u64 - 1, 1]);
        write_id(&side, b"n");
        desc.write_reservation(0, 1 << 32, b"n".len() as u8);
        desc.write_meta(
            &side,
            STATUS_COMMITTED,
            DType::U8.code(),
            &dims,
            2,
            u32::MAX as u64 - 1,
        );
        assert_eq!(desc.nbytes.load(Ordering::Relaxed), WIDE - 1);
        // The largest narrow item: dims of u32::MAX (zero bytes).
        dims[..2].copy_from_slice(&[u32::MAX as u64, 0]);
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, b"n");
        desc.write_reservation(0, 8, b"n".len() as u8);
        desc.write_meta(&side, STATUS_COMMITTED, DType::U8.code(), &dims, 2, 0);
        assert_eq!(desc.nbytes.load(Ordering::Relaxed), 0);
        assert_eq!(side.wide_dims[0].load(Ordering::Relaxed), 0);
        assert_eq!(
            read(&(desc, side), 0, false).unwrap().shape(),
            &[u32::MAX as u64, 0][..]
        );
        // A wide shape whose product overflows is corrupt.
        let pair = committed(0, 8);
        pair.0.nbytes.store(WIDE, Ordering::Relaxed);
        pair.0.info.fetch_add(1 << 16, Ordering::Relaxed); // rank 2
        pair.1.wide_dims[0].store(u64::MAX, Ordering::Relaxed);
        pair.1.wide_dims[1].store(2, Ordering::Relaxed);
        assert!(corrupt(
            read(&pair, 0, false),
            "the shape's byte count overflows"
        ));
        pair.1.wide_dims[0].store(8, Ordering::Relaxed);
        assert!(corrupt(
            read(&pair, 0, false),
            "nbytes 16 exceeds the 8 bytes reserved"
        ));
        // A narrow nbytes that disagrees with the shape is corrupt.
        let pair = committed(0, 8);
        pair.0.nbytes.store(7, Ordering::Relaxed);
        assert!(corrupt(
            read(&pair, 0, false),
            "nbytes 7 disagrees with the shape's 8"
        ));
    }

    #[test]
    fn items_stack_only_with_the_same_dtype_and_shape() {
        let base = read(&committed(0, 64), 0, false).unwrap();
        assert!(base.stacks_with(&base));
        let mut other = base;
        other.dtype = DType::I8;
        assert!(!base.stacks_with(&other));
        let mut other = base;
        other.dims[0] = 32;
        assert!(!base.stacks_with(&other));
        let mut other = base;
        other.ndim = 2;
        assert!(!base.stacks_with(&other));
        // Where they lie does not matter here (the runs check distances).
        let mut other = base;
        other.offset = 4096;
        assert!(base.stacks_with(&other));
    }

    #[test]
    fn a_run_of_same_shaped_items_skips_the_shape_checks_but_not_the_reservation() {
        let first = committed(0, 64);
        let mut prev = ItemMeta::EMPTY;
        let r = ItemMeta::read_into(&first.0, &first.1, 0, &bounds(0, false), None, &mut prev);
        assert!(!r.unwrap().same_shape);
        let next = committed(64, 64);
        let read_next = |prev: &ItemMeta| {
            let mut out = ItemMeta::EMPTY;
            ItemMeta::read_into(
                &next.0,
                &next.1,
                1,
                &bounds(64, false),
                Some(prev),
                &mut out,
            )
            .map(|r| (r, out))
        };
        let (r, out) = read_next(&prev).unwrap();
        assert!(r.same_shape);
        assert_eq!((out.shape(), out.nbytes, out.offset), (&[64][..], 64, 64));
        // The shortcut takes the previous item's checked shape: a copy
        // that claims another one (the words agree, the copy does not)
        // shows it took the copy, never the unchecked words.
        let mut claimed = prev;
        claimed.dims[0] = 3;
        assert!(!read_next(&claimed).unwrap().0.same_shape);
        // Any other word breaks the run: a dim, the dtype, the rank, nbytes.
        let pokes: [&dyn Fn(&Descriptor); 4] = [
            &|d| d.dims[0].store(32, Ordering::Relaxed),
            &|d| {
                d.info.fetch_add(1 << 8, Ordering::Relaxed);
            },
            &|d| {
                d.info.fetch_add(1 << 16, Ordering::Relaxed);
            },
            &|d| {
                d.nbytes.fetch_add(1, Ordering::Relaxed);
            },
        ];
        for poke in pokes {
            let other = committed(64, 64);
            poke(&other.0);
            let mut out = ItemMeta::EMPTY;
            let r = ItemMeta::read_into(
                &other.0,
                &other.1,
                1,
                &bounds(64, false),
                Some(&prev),
                &mut out,
            );
            assert!(
                !matches!(
                    r,
                    Ok(Read {
                        same_shape: true,
                        ..
                    })
                ),
                "{r:?}"
            );
        }
        // The id length is no shape word: the run goes on.
        next.0.info.fetch_add(1 << 24, Ordering::Relaxed);
        assert!(read_next(&prev).unwrap().0.same_shape);
        // The reservation is still checked for every item of a run.
        next.0.offset.store(0, Ordering::Relaxed);
        assert!(corrupt(read_next(&prev), "is outside 64.."));
        next.0.offset.store(64, Ordering::Relaxed);
        next.0.len.store(32, Ordering::Relaxed);
        assert!(corrupt(
            read_next(&prev),
            "nbytes 64 exceeds the 32 bytes reserved"
        ));
        next.0.len.store(64, Ordering::Relaxed);
        next.0.offset.store(72, Ordering::Relaxed);
        assert!(corrupt(read_next(&prev), "is not aligned to 64"));
    }

    #[test]
    fn a_run_s_span_is_checked_against_the_head_s_limits() {
        let head = read(&committed(0, 64), 0, false).unwrap();
        // One item: its own reservation, checked by `read_into` already.
        assert_eq!(head.check_run(0, 1, &bounds(0, false)).unwrap(), (0, 64));
        // 64 items of 64 bytes end the 4096-byte payload exactly.
        assert_eq!(
            head.check_run(0, 64, &bounds(0, false)).unwrap(),
            (64, 4096)
        );
        assert!(corrupt(
            head.check_run(0, 65, &bounds(0, false)),
            "descriptor of position 0: a run of 65 items of 64 bytes each from payload byte 0 spans 4160 bytes, past 4096"
        ));
        // From byte 4032 (everything before released): the second item
        // starts the next lap, fine with a mirror only.
        let late = read(&committed(4032, 64), 4032, true).unwrap();
        assert_eq!(
            late.check_run(9, 2, &bounds(4032, true)).unwrap(),
            (64, 4160)
        );
        assert!(corrupt(
            late.check_run(9, 2, &bounds(4032, false)),
            "a run of 2 items of 64 bytes each from payload byte 4032 crosses the end of an unmirrored payload of 4096 bytes"
        ));
        // Without a mirror, a run inside the lap is fine wherever it starts.
        let inside = read(&committed(64, 64), 64, false).unwrap();
        assert_eq!(
            inside.check_run(1, 2, &bounds(64, false)).unwrap(),
            (64, 192)
        );
        // The oldest unreleased item bounds the run, not the head.
        let mut b = bounds(1024, true);
        b.oldest_start = Some(512);
        let mid = read(&committed(1024, 64), 1024, true).unwrap();
        assert!(mid.check_run(1, 56, &b).is_ok());
        assert!(corrupt(mid.check_run(1, 57, &b), "past 4608"));
        // Spans that overflow are corrupt, not wrapped.
        let mut huge = head;
        huge.len = u64::MAX / 2;
        assert!(corrupt(huge.check_run(0, 3, &bounds(0, true)), "overflows"));
        huge.len = 1 << 40;
        huge.offset = u64::MAX - (1 << 41);
        let mut b = bounds(0, true);
        b.oldest_start = None;
        assert!(corrupt(huge.check_run(0, 3, &b), "past"));
    }
}
