//! Entry points for the fuzz targets (`fuzz/`): the checks the consumer
//! applies to bytes read back from a segment, callable on arbitrary input.
//! Not part of the stable API.

use crate::error::{SetupError, StreamError};
use crate::layout::{Descriptor, ItemMeta, DESCRIPTOR_BYTES, HEADER_BYTES};
use crate::sync::Ordering;

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
    unsafe { crate::segment::read_header(copy.0.as_ptr(), file_len, "(fuzz)") }.map(|_| ())
}

/// Runs the per-item descriptor checks on `bytes` (padded or cut to one
/// descriptor) as the descriptor of `position` in a ring of `slot_bytes`.
/// Returns the id and byte count of a committed item.
///
/// # Errors
///
/// [`StreamError::Corrupt`] for what a correct producer never writes.
pub fn check_descriptor(
    bytes: &[u8],
    position: u64,
    slot_bytes: u64,
) -> Result<Option<(String, u64)>, StreamError> {
    let mut raw = [0u8; DESCRIPTOR_BYTES];
    let n = bytes.len().min(DESCRIPTOR_BYTES);
    raw[..n].copy_from_slice(&bytes[..n]);
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let desc = Descriptor::new();
    desc.seq.store(word(0), Ordering::Relaxed);
    desc.nbytes.store(word(1), Ordering::Relaxed);
    desc.info.store(word(2) as u32, Ordering::Relaxed);
    for (k, d) in desc.dims.iter().enumerate() {
        d.store(word(3 + k), Ordering::Relaxed);
    }
    for (k, d) in desc.id.iter().enumerate() {
        d.store(u64::from_le(word(11 + k)), Ordering::Relaxed);
    }
    let mut meta = ItemMeta::EMPTY;
    let status = ItemMeta::read_into(&desc, position, slot_bytes, &mut meta)?;
    Ok((status == crate::layout::STATUS_COMMITTED).then(|| (meta.id().to_string(), meta.nbytes)))
}
