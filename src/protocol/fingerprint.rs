//! The layout's fingerprint and its compile-time checks: every offset and
//! size of the shared structures (header, control block, descriptor, side
//! entry) that docs/design.md documents, asserted, and hashed into the
//! number a segment's header carries, so two builds whose layouts differ
//! refuse each other.

use crate::error::MAX_REASON_LEN;
use crate::protocol::descriptor::{Descriptor, SideEntry, WIDE};
use crate::protocol::layout::{
    Control, Header, Padded, CONTROL_OFFSET, DESCRIPTOR_BYTES, FLAG_CONSUMER_ATTACHED,
    FLAG_CONSUMER_GONE, FLAG_DONE, FLAG_KNOWN, FLAG_PRODUCER_GONE, HEADER_BYTES, LINE_BYTES, MAGIC,
    MAX_ALIGN, MAX_CAPACITY, MAX_ID_LEN, MAX_NAME_LEN, MAX_PAYLOAD_BYTES, MIN_ALIGN, PAGE,
    SIDE_ENTRY_BYTES, STATUS_ABANDONED, STATUS_COMMITTED, VERSION,
};
use crate::protocol::tensor::MAX_DIMS;
use crate::sync::doorbell::Doorbell;
use crate::sync::{AtomicU32, AtomicU64};

/// The offsets `docs/design.md` documents, checked at compile time: a
/// change of a type (an atomic of another size, a padding rule) that moves
/// a byte of the shared layout stops the build here instead of making two
/// builds misread each other.
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
        assert!(offset_of!(Header, side_offset) == 496);
        assert!(offset_of!(Header, side_entry_bytes) == 504);
        assert!(offset_of!(Header, _pad) == 508);
        assert!(size_of::<Header>() == 512);
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
        assert!(offset_of!(Control, staged) == 640);
        assert!(size_of::<Control>() == 768);
        assert!(CONTROL_OFFSET % LINE_BYTES == 0);
        assert!(CONTROL_OFFSET + size_of::<Control>() <= HEADER_BYTES);
        // A descriptor: one 64-byte line, line-aligned.
        assert!(offset_of!(Descriptor, seq) == 0);
        assert!(offset_of!(Descriptor, offset) == 8);
        assert!(offset_of!(Descriptor, len) == 16);
        assert!(offset_of!(Descriptor, info) == 24);
        assert!(offset_of!(Descriptor, nbytes) == 28);
        assert!(offset_of!(Descriptor, dims) == 32);
        assert!(size_of::<Descriptor>() == DESCRIPTOR_BYTES);
        assert!(DESCRIPTOR_BYTES == 64);
        assert!(align_of::<Descriptor>() == 64);
        // A side entry: the id's line, then the wide dims' line.
        assert!(offset_of!(SideEntry, id) == 0);
        assert!(offset_of!(SideEntry, wide_dims) == 64);
        assert!(size_of::<SideEntry>() == SIDE_ENTRY_BYTES);
        assert!(align_of::<SideEntry>() == 64);
        // The side table starts line-aligned after the descriptors.
        assert!(HEADER_BYTES % 64 == 0);
        assert!(HEADER_BYTES % PAGE == 0);
    };
}

/// One step of 64-bit FNV-1a over the eight bytes of `value`.
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
/// the control block, a descriptor and a side entry, the wide marker, the
/// flag and status codes, where an abandoned slot keeps its reason, what
/// `seq` encodes (a run: head plus count), the byte
/// order and the pointer width. Stored in the header by the producer;
/// `open` refuses a segment whose fingerprint differs, so two builds whose
/// layouts differ in any of these refuse each other even where every field
/// the consumer checks one by one happens to agree.
pub(crate) const LAYOUT_FINGERPRINT: u64 = {
    use core::mem::{align_of, offset_of, size_of};
    let parts: [u64; 71] = [
        MAGIC,
        VERSION as u64,
        HEADER_BYTES as u64,
        PAGE as u64,
        CONTROL_OFFSET as u64,
        DESCRIPTOR_BYTES as u64,
        SIDE_ENTRY_BYTES as u64,
        WIDE as u64,
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
        offset_of!(Header, side_offset) as u64,
        offset_of!(Header, side_entry_bytes) as u64,
        size_of::<Control>() as u64,
        align_of::<Control>() as u64,
        offset_of!(Control, registered) as u64,
        offset_of!(Control, released) as u64,
        offset_of!(Control, flags) as u64,
        offset_of!(Control, data_bell) as u64,
        offset_of!(Control, space_bell) as u64,
        offset_of!(Control, staged) as u64,
        size_of::<Doorbell>() as u64,
        size_of::<Descriptor>() as u64,
        align_of::<Descriptor>() as u64,
        offset_of!(Descriptor, seq) as u64,
        offset_of!(Descriptor, offset) as u64,
        offset_of!(Descriptor, len) as u64,
        offset_of!(Descriptor, info) as u64,
        offset_of!(Descriptor, nbytes) as u64,
        offset_of!(Descriptor, dims) as u64,
        size_of::<AtomicU32>() as u64,
        size_of::<SideEntry>() as u64,
        align_of::<SideEntry>() as u64,
        offset_of!(SideEntry, id) as u64,
        offset_of!(SideEntry, wide_dims) as u64,
        // The descriptor's `info` word: status, dtype, ndim, id length.
        8 << 8 | 16 << 16 | 24 << 24,
        // An abandoned slot's reason: its bound; its length in the `ndim`
        // bits, its code in `nbytes`, its text in the dims, then the side
        // entry's wide dims.
        MAX_REASON_LEN as u64,
        16 | (offset_of!(Descriptor, nbytes) as u64) << 8
            | (offset_of!(Descriptor, dims) as u64) << 16
            | (offset_of!(SideEntry, wide_dims) as u64) << 24,
        // A descriptor's `seq` publishes a run: head position plus count
        // (issue 24; before, position plus one for each item).
        u64::from_le_bytes(*b"seq=p+n\0"),
        // The staged word (issue 24): taken bit 63, the head's low 42 bits
        // from bit 21, the count in bits 0-20.
        63 | 21 << 8 | 42 << 16,
    ];
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        hash = fnv1a(hash, parts[i]);
        i += 1;
    }
    hash
};
