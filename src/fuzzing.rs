//! Entry points for the fuzz targets (`fuzz/`): the checks the consumer
//! applies to bytes read back from a segment, callable on arbitrary input.
//! Not part of the stable API.

use crate::error::MAX_REASON_LEN;
use crate::error::{SetupError, StreamError};
use crate::protocol::descriptor::{Descriptor, ItemId, ItemMeta, SideEntry};
use crate::protocol::layout::{DESCRIPTOR_BYTES, HEADER_BYTES, SIDE_ENTRY_BYTES};
use crate::protocol::reason;
use crate::sync::Ordering;

pub mod layout;

/// Runs the open-time header checks on `page` (padded or cut to one page)
/// as if it were the first page of a file `file_len` bytes long.
///
/// # Errors
///
/// What `Consumer::open` would report for such a header.
pub fn check_header(page: &[u8], file_len: u64) -> Result<(), SetupError> {
    // An aligned, page-sized copy: the header is read in place as a struct.
    #[repr(C, align(4096))]
    struct Page([u8; HEADER_BYTES]);
    let mut copy = Box::new(Page([0; HEADER_BYTES]));
    let n = page.len().min(HEADER_BYTES);
    copy.0[..n].copy_from_slice(&page[..n]);
    // SAFETY: `copy` is HEADER_BYTES readable, page-aligned bytes that live
    // for the call.
    unsafe { crate::os::header::read_header(copy.0.as_ptr(), file_len, "(fuzz)") }.map(|_| ())
}

/// What [`check_descriptor`] accepted: the run head's id, byte count and
/// reservation, and the run's count and stride.
#[derive(Debug)]
pub struct Accepted {
    /// The id.
    pub id: String,
    /// The tensor's bytes.
    pub nbytes: u64,
    /// Payload byte position of its reservation.
    pub offset: u64,
    /// Bytes reserved (for each item of the run).
    pub len: u64,
    /// Items in the run (1 for one item).
    pub count: u64,
    /// Between consecutive items of the run (0 for one item).
    pub stride: u64,
}

/// The capacity [`check_descriptor`] checks a run's count against.
pub const FUZZ_CAPACITY: u64 = 1024;
/// How many positions past the head [`check_descriptor`] takes as
/// registered: a run's count must stay within them.
pub const FUZZ_REGISTERED: u64 = 256;

/// Runs the per-item descriptor checks on `bytes` (padded or cut to one
/// descriptor, 64 bytes, followed by its side entry, 128 bytes: the id's
/// line and the wide dims' line) as the descriptor of `position`, after a
/// previous item ending at `walk_end`, with the oldest unreleased item
/// starting at `oldest_start` (`u64::MAX`: this is the oldest unreleased
/// one), in a payload ring of `payload_bytes` (rounded to a power of two of
/// at least a page), `mirrored` or not. Returns what a committed item
/// carries, its id read from the side entry as the by-id calls read it;
/// an abandoned one gives `Ok(None)` once its id and reason are read.
/// An accepted descriptor is read a second time as the next item of its
/// own run (the per-run shortcut), which must agree with the first read.
/// The `seq` word (the first) is a run's count when above `position`
/// (`seq - position` items, checked against [`FUZZ_CAPACITY`] and
/// [`FUZZ_REGISTERED`] positions registered past it, then the run's span);
/// at or below it, the descriptor is read as one item, so every input
/// reaches the descriptor's checks.
///
/// # Errors
///
/// [`StreamError::Corrupt`] for what a correct producer never writes.
pub fn check_descriptor(
    bytes: &[u8],
    position: u64,
    walk_end: u64,
    oldest_start: u64,
    payload_bytes: u64,
    mirrored: bool,
) -> Result<Option<Accepted>, StreamError> {
    let mut raw = [0u8; DESCRIPTOR_BYTES + SIDE_ENTRY_BYTES];
    let n = bytes.len().min(raw.len());
    raw[..n].copy_from_slice(&bytes[..n]);
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u32::from_ne_bytes(raw[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let desc = Descriptor::new();
    desc.seq.store(word(0), Ordering::Relaxed);
    desc.offset.store(word(1), Ordering::Relaxed);
    desc.len.store(word(2), Ordering::Relaxed);
    desc.info.store(half(6), Ordering::Relaxed);
    desc.nbytes.store(half(7), Ordering::Relaxed);
    for (k, d) in desc.dims.iter().enumerate() {
        d.store(half(8 + k), Ordering::Relaxed);
    }
    let side = SideEntry::new();
    for (k, d) in side.id.iter().enumerate() {
        d.store(u64::from_le(word(8 + k)), Ordering::Relaxed);
    }
    for (k, d) in side.wide_dims.iter().enumerate() {
        d.store(word(16 + k), Ordering::Relaxed);
    }
    let payload_bytes = payload_bytes
        .clamp(4096, crate::protocol::layout::MAX_PAYLOAD_BYTES)
        .next_power_of_two();
    let bounds = crate::protocol::descriptor::Bounds {
        walk_end,
        oldest_start: (oldest_start != u64::MAX).then_some(oldest_start),
        payload_bytes,
        mirrored,
    };
    let seq = desc.seq.load(Ordering::Relaxed);
    let count = crate::protocol::run::run_count(
        position,
        seq,
        FUZZ_CAPACITY,
        position.saturating_add(FUZZ_REGISTERED),
    )?
    .unwrap_or(1);
    let mut meta = ItemMeta::EMPTY;
    let read = ItemMeta::read_into(&desc, &side, position, &bounds, None, &mut meta)?;
    let id = ItemId::read(&side, position, meta.id_len)?;
    if read.status != crate::protocol::layout::STATUS_COMMITTED && count > 1 {
        return Err(StreamError::Corrupt(format!(
            "descriptor of position {position}: completion sequence {seq} claims an abandoned run of {count} items"
        )));
    }
    if read.status != crate::protocol::layout::STATUS_COMMITTED {
        // Abandoned: its reason is read as the consumer reads it.
        let info = desc.info.load(Ordering::Relaxed);
        let reason = reason::read(&desc, &side, position, info)?;
        assert!(reason.text().len() <= MAX_REASON_LEN);
        return Ok(None);
    }
    // The same words again, as the next item of a run: the shortcut must
    // accept them and agree on every field.
    let mut again = ItemMeta::EMPTY;
    let second = ItemMeta::read_into(&desc, &side, position, &bounds, Some(&meta), &mut again)
        .expect("the same descriptor is accepted as the next item of its run");
    assert_eq!(second.status, read.status);
    assert_eq!(
        second.same_shape,
        meta.shape_key.1 != crate::protocol::descriptor::WIDE
    );
    assert_eq!(
        (
            again.dtype,
            again.shape(),
            again.nbytes,
            again.offset,
            again.len
        ),
        (meta.dtype, meta.shape(), meta.nbytes, meta.offset, meta.len)
    );
    let (stride, end) = meta.check_run(position, count, &bounds)?;
    assert_eq!(end, meta.offset + (count - 1) * stride + meta.len);
    Ok(Some(Accepted {
        id: id.as_str().to_string(),
        nbytes: meta.nbytes,
        offset: meta.offset,
        len: meta.len,
        count,
        stride,
    }))
}

// The seeds are files: Miri's isolation refuses to read them (the feature
// is on in Miri's run too, through the tests' self dev-dependency).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::path::Path;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        out.sort();
        assert!(out.len() >= 2, "{} seeds in {dir:?}", out.len());
        out
    }

    /// The header seeds are headers of this build's layout (regenerate
    /// them when it changes: version, fingerprint, offsets).
    #[test]
    fn the_header_seeds_are_valid_headers_of_this_layout() {
        for (name, data) in seeds("header") {
            let (len, page) = data.split_first_chunk::<8>().unwrap();
            check_header(page, u64::from_ne_bytes(*len)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    /// Each descriptor seed does what its name says in this layout
    /// (`fuzz/gen-descriptor-seeds.py` writes them).
    #[test]
    fn the_descriptor_seeds_commit_abandon_or_refuse_as_named() {
        for (name, data) in seeds("descriptor") {
            let (head, bytes) = data.split_first_chunk::<32>().unwrap();
            let word = |i: usize| u64::from_ne_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
            let r = check_descriptor(bytes, word(0), word(1), word(2), word(3), word(0) & 1 == 1);
            match name.split('-').next().unwrap() {
                "committed" => assert!(matches!(r, Ok(Some(_))), "{name}: {r:?}"),
                "abandoned" => assert!(matches!(r, Ok(None)), "{name}: {r:?}"),
                "refused" => assert!(matches!(r, Err(StreamError::Corrupt(_))), "{name}: {r:?}"),
                other => panic!("{name}: unknown kind {other}"),
            }
        }
    }
}
