//! An abandoned slot's reason in shared memory: a producer's
//! [`AbandonReason`] written into the slot's own descriptor and side entry
//! (the words a committed item's shape uses, which an abandoned one has no
//! use for), and read back by the consumer with its length and bytes
//! checked like every other value read from the segment.

use crate::error::{AbandonReason, StreamError, MAX_REASON_LEN};
use crate::protocol::descriptor::{Descriptor, SideEntry};
use crate::protocol::layout::STATUS_ABANDONED;
use crate::protocol::tensor::MAX_DIMS;
use crate::sync::Ordering;

/// Bytes of the reason text held in the descriptor's dims; the rest is in
/// the side entry's wide dims.
const IN_DESCRIPTOR: usize = MAX_DIMS * 4;
const _: () = assert!(IN_DESCRIPTOR + MAX_DIMS * 8 == MAX_REASON_LEN);

/// Writes the abandoned status with `reason` into the descriptor
/// and side entry of a held position (producer). Relaxed: published by
/// the Release store of `seq` that follows, like a commit's metadata.
/// The id's length (the top byte of `info`) is kept.
pub(crate) fn write(reason: &AbandonReason, desc: &Descriptor, side: &SideEntry) {
    let mut bytes = [0u8; MAX_REASON_LEN];
    bytes[..reason.text().len()].copy_from_slice(reason.text().as_bytes());
    let (head, tail) = bytes.split_at(IN_DESCRIPTOR);
    // Only the words the text covers: the consumer reads no further.
    let len = reason.text().len();
    for (cell, word) in desc.dims.iter().zip(head.chunks(4)).take(len.div_ceil(4)) {
        cell.store(
            u32::from_le_bytes(word.try_into().expect("4 bytes")),
            Ordering::Relaxed,
        );
    }
    let rest = len.saturating_sub(IN_DESCRIPTOR);
    for (cell, word) in side
        .wide_dims
        .iter()
        .zip(tail.chunks(8))
        .take(rest.div_ceil(8))
    {
        cell.store(
            u64::from_le_bytes(word.try_into().expect("8 bytes")),
            Ordering::Relaxed,
        );
    }
    desc.nbytes.store(reason.code() as u32, Ordering::Relaxed);
    let id_len = desc.info.load(Ordering::Relaxed) & 0xff00_0000;
    desc.info.store(
        id_len | (len as u32) << 16 | STATUS_ABANDONED,
        Ordering::Relaxed,
    );
}

/// Reads and checks the reason of the abandoned `position`, whose
/// descriptor's `info` word (loaded after the Acquire of its `seq`) is
/// `info`. Called while the position is published and unreleased: the
/// producer does not write it then (a hostile one may: the length is
/// checked before a byte is read, the bytes are checked as UTF-8).
///
/// # Errors
///
/// [`StreamError::Corrupt`] when the length exceeds
/// [`MAX_REASON_LEN`] or the text is not UTF-8.
pub(crate) fn read(
    desc: &Descriptor,
    side: &SideEntry,
    position: u64,
    info: u32,
) -> Result<AbandonReason, StreamError> {
    let len = ((info >> 16) & 0xff) as usize;
    if len > MAX_REASON_LEN {
        return Err(StreamError::Corrupt(format!(
            "descriptor of position {position}: abandon reason length {len} exceeds the limit of {MAX_REASON_LEN} bytes"
        )));
    }
    let mut bytes = [0u8; MAX_REASON_LEN];
    let (head, tail) = bytes.split_at_mut(IN_DESCRIPTOR);
    for (word, cell) in head.chunks_mut(4).zip(&desc.dims).take(len.div_ceil(4)) {
        word.copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
    }
    let rest = len.saturating_sub(IN_DESCRIPTOR);
    for (word, cell) in tail
        .chunks_mut(8)
        .zip(&side.wide_dims)
        .take(rest.div_ceil(8))
    {
        word.copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
    }
    let text = std::str::from_utf8(&bytes[..len]).map_err(|_| {
        StreamError::Corrupt(format!(
            "descriptor of position {position}: the abandon reason is not UTF-8"
        ))
    })?;
    // Within the bound: nothing is cut.
    Ok(AbandonReason::new(
        desc.nbytes.load(Ordering::Relaxed) as i32,
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::descriptor::write_id;

    /// Writes `reason` into a fresh descriptor whose id is 2 bytes long,
    /// and reads it back as position 5.
    fn round_trip(reason: &AbandonReason) -> Result<AbandonReason, StreamError> {
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write_id(&side, b"t5");
        desc.write_reservation(0, 8, b"t5".len() as u8);
        write(reason, &desc, &side);
        let info = desc.info.load(Ordering::Relaxed);
        assert_eq!(info & 0xff, STATUS_ABANDONED);
        assert_eq!(info >> 24, 2, "the id's length is kept");
        read(&desc, &side, 5, info)
    }

    #[test]
    fn a_reason_of_every_length_round_trips_through_both_places() {
        let text: String = ('a'..='z').cycle().take(MAX_REASON_LEN).collect();
        for len in 0..=MAX_REASON_LEN {
            for code in [0, -1, i32::MIN, i32::MAX, 7] {
                let reason = AbandonReason::new(code, &text[..len]);
                assert_eq!(round_trip(&reason).unwrap(), reason, "{len} {code}");
            }
        }
    }

    #[test]
    fn a_lying_length_or_bytes_that_are_not_utf8_are_corrupt() {
        let (desc, side) = (Descriptor::new(), SideEntry::new());
        write(&AbandonReason::new(1, "ok"), &desc, &side);
        for len in [MAX_REASON_LEN as u32 + 1, 255] {
            let info = len << 16 | STATUS_ABANDONED;
            let err = read(&desc, &side, 3, info).unwrap_err();
            assert_eq!(
                err,
                StreamError::Corrupt(format!("descriptor of position 3: abandon reason length {len} exceeds the limit of 96 bytes"))
            );
        }
        // A bad byte in the descriptor's part (the bytes before it are
        // fine), then in the side entry's.
        desc.dims[0].store(u32::from_le_bytes(*b"o\xffk!"), Ordering::Relaxed);
        let info = 1 << 16 | STATUS_ABANDONED;
        assert_eq!(read(&desc, &side, 3, info).unwrap().text(), "o");
        let info = 2 << 16 | STATUS_ABANDONED;
        assert!(matches!(
            read(&desc, &side, 3, info),
            Err(StreamError::Corrupt(m)) if m.contains("position 3: the abandon reason is not UTF-8")
        ));
        let full = AbandonReason::new(0, &"y".repeat(MAX_REASON_LEN));
        write(&full, &desc, &side);
        side.wide_dims[7].store(u64::MAX, Ordering::Relaxed);
        let info = desc.info.load(Ordering::Relaxed);
        assert!(matches!(
            read(&desc, &side, 0, info),
            Err(StreamError::Corrupt(m)) if m.contains("not UTF-8")
        ));
    }
}
