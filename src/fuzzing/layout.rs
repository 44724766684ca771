//! The layout as the code has it, for `tests/design_doc.rs`, which holds
//! docs/design.md's tables to it: every field's offset and size (from
//! `offset_of!` and the field's type), every shared struct's size and
//! alignment, and the geometry functions. Not part of the stable API.

use crate::os::hub_segment::HubHeader;
use crate::protocol::descriptor::{Descriptor, SideEntry};
use crate::protocol::hub_layout::{Entry, HubControl, HubGeometry, HUB_CONTROL_OFFSET};
use crate::protocol::layout::{Control, Geometry, Header, CONTROL_OFFSET};
use crate::sync::doorbell::Doorbell;
use core::mem::{align_of, offset_of, size_of};

/// One field of a shared struct, where a documented table places it.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Byte offset from the start of the table's region (a segment's or a
    /// hub's first byte, a descriptor's, a side entry's, an entry's).
    pub offset: u64,
    /// Bytes.
    pub size: u64,
    /// A word the documented row names the field by (case-insensitive).
    pub word: &'static str,
}

/// The size of the field `field` points into, without a value.
const fn size_of_pointee<S, F>(_field: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! field {
    ($base:expr, $ty:ty, $field:ident, $word:expr) => {
        Field {
            offset: ($base + offset_of!($ty, $field)) as u64,
            size: size_of_pointee::<$ty, _>(|s| &s.$field) as u64,
            word: $word,
        }
    };
}

/// A documented table of fixed offsets, by the heading it stands under
/// (`"Header page"`, `"Descriptor table"`, `"Side table"`, `"The hub
/// segment"`, `"The hub segment: an entry"`): its fields in order, padding
/// included. `None` for another name.
pub fn table(name: &str) -> Option<Vec<Field>> {
    let c = CONTROL_OFFSET;
    let h = HUB_CONTROL_OFFSET as usize;
    Some(match name {
        "Header page" => vec![
            field!(0, Header, magic, "magic"),
            field!(0, Header, version, "version"),
            field!(0, Header, header_bytes, "header bytes"),
            field!(0, Header, capacity, "capacity"),
            field!(0, Header, item_bytes, "default item bytes"),
            field!(0, Header, descriptor_bytes, "descriptor bytes"),
            field!(0, Header, max_dims, "max dims"),
            field!(0, Header, max_id_len, "max id length"),
            field!(0, Header, control_offset, "control offset"),
            field!(0, Header, descriptors_offset, "descriptor table offset"),
            field!(0, Header, payload_offset, "payload offset"),
            field!(0, Header, payload_bytes, "payload bytes"),
            field!(0, Header, total_bytes, "total bytes"),
            field!(0, Header, producer_pid, "producer pid"),
            field!(0, Header, consumer_pid, "consumer pid"),
            field!(0, Header, producer_uid, "producer uid"),
            field!(0, Header, name_lens, "lengths"),
            field!(0, Header, names, "names"),
            field!(0, Header, layout_fingerprint, "fingerprint"),
            field!(0, Header, side_offset, "side table offset"),
            field!(0, Header, side_entry_bytes, "side entry bytes"),
            field!(0, Header, _pad, "padding"),
            field!(c, Control, registered, "registered"),
            field!(c, Control, released, "released"),
            field!(c, Control, flags, "flags"),
            field!(c, Control, data_bell, "data bell"),
            field!(c, Control, space_bell, "space bell"),
            field!(c, Control, staged, "staged"),
        ],
        "Descriptor table" => vec![
            field!(0, Descriptor, seq, "seq"),
            field!(0, Descriptor, offset, "offset"),
            field!(0, Descriptor, len, "len"),
            field!(0, Descriptor, info, "status"),
            field!(0, Descriptor, nbytes, "nbytes"),
            field!(0, Descriptor, dims, "dims"),
        ],
        "Side table" => vec![
            field!(0, SideEntry, id, "id"),
            field!(0, SideEntry, wide_dims, "wide"),
        ],
        "The hub segment" => vec![
            field!(0, HubHeader, magic, "magic"),
            field!(0, HubHeader, version, "version"),
            field!(0, HubHeader, header_bytes, "header bytes"),
            field!(0, HubHeader, entries, "entries"),
            field!(0, HubHeader, entry_bytes, "entry bytes"),
            field!(0, HubHeader, max_producers, "producer slots"),
            field!(0, HubHeader, control_offset, "control offset"),
            field!(0, HubHeader, ready_offset, "ready"),
            field!(0, HubHeader, announce_offset, "announce"),
            field!(0, HubHeader, entries_offset, "entries"),
            field!(0, HubHeader, total_bytes, "total bytes"),
            field!(0, HubHeader, layout_fingerprint, "fingerprint"),
            field!(0, HubHeader, _reserved, "reserved"),
            field!(0, HubHeader, consumer_pid, "worker pid"),
            field!(0, HubHeader, consumer_uid, "worker uid"),
            field!(0, HubHeader, worker_len, "name length"),
            field!(0, HubHeader, _pad, "padding"),
            field!(0, HubHeader, worker, "worker name"),
            field!(h, HubControl, bell, "bell"),
            field!(h, HubControl, producers, "producer slots"),
        ],
        "The hub segment: an entry" => vec![
            field!(0, Entry, state, "state"),
            field!(0, Entry, pid, "pid"),
            field!(0, Entry, lens, "lengths"),
            field!(0, Entry, _pad, "padding"),
            field!(0, Entry, text, "strings"),
        ],
        _ => return None,
    })
}

/// Every struct whose bytes are shared: its name in docs/design.md's
/// table of sizes, its size and its alignment.
pub fn structs() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("Header", size_of::<Header>(), align_of::<Header>()),
        ("Control", size_of::<Control>(), align_of::<Control>()),
        ("Doorbell", size_of::<Doorbell>(), align_of::<Doorbell>()),
        (
            "Descriptor",
            size_of::<Descriptor>(),
            align_of::<Descriptor>(),
        ),
        ("SideEntry", size_of::<SideEntry>(), align_of::<SideEntry>()),
        ("HubHeader", size_of::<HubHeader>(), align_of::<HubHeader>()),
        (
            "HubControl",
            size_of::<HubControl>(),
            align_of::<HubControl>(),
        ),
        ("Entry", size_of::<Entry>(), align_of::<Entry>()),
    ]
}

/// A stream segment's offsets for `capacity` items: the descriptor table,
/// the side table, the payload, the file's length (payload of one page).
///
/// # Panics
///
/// For a capacity `Geometry` refuses.
pub fn segment_offsets(capacity: u64) -> (u64, u64, u64, u64) {
    let g =
        Geometry::new(capacity, 0, crate::protocol::layout::PAGE as u64).expect("a valid capacity");
    (
        g.descriptors_offset,
        g.side_offset,
        g.payload_offset,
        g.total_bytes,
    )
}

/// A hub's offsets for `entries` entries: the ready and announce bitmaps,
/// the entries, the file's length.
///
/// # Panics
///
/// For a number of entries `HubGeometry` refuses.
pub fn hub_offsets(entries: u32) -> (u64, u64, u64, u64) {
    let g = HubGeometry::new(entries).expect("a valid number of entries");
    (
        g.ready_offset,
        g.announce_offset,
        g.entries_offset,
        g.total_bytes,
    )
}
