//! The bytes of a worker hub: its limits, geometry, control block,
//! producer slots and entries (one per announced stream), and the entry
//! states they encode; checked at compile time like the stream layout.

use crate::protocol::layout::MAX_PREFIX_LEN;
use crate::protocol::layout::{Padded, MAX_NAME_LEN};
use crate::sync::doorbell::Doorbell;
use crate::sync::{AtomicU32, AtomicU64};

/// Fewest streams a hub holds (one bitmap word).
pub const MIN_HUB_ENTRIES: u32 = 64;

/// Most streams a hub holds.
pub const MAX_HUB_ENTRIES: u32 = 4096;

/// Streams a hub holds unless told otherwise.
pub const DEFAULT_HUB_ENTRIES: u32 = 1024;

/// Producer processes (attachments) a hub admits at once.
pub const MAX_HUB_PRODUCERS: usize = 64;

/// Bytes of one entry.
pub(crate) const ENTRY_BYTES: usize = 512;

/// Words of identity text in an entry.
pub(crate) const TEXT_WORDS: usize = 60;

/// Where the identity's four strings start in an entry's text and how long
/// each may be: the prefix, request_id, edge_name, from_partition.
pub(crate) const TEXT_FIELDS: [(usize, usize); 4] = [
    (0, MAX_PREFIX_LEN),
    (MAX_PREFIX_LEN, MAX_NAME_LEN),
    (MAX_PREFIX_LEN + MAX_NAME_LEN, MAX_NAME_LEN),
    (MAX_PREFIX_LEN + 2 * MAX_NAME_LEN, MAX_NAME_LEN),
];
const _: () = assert!(MAX_PREFIX_LEN + 3 * MAX_NAME_LEN <= TEXT_WORDS * 8);

/// Bytes of the hub's first page (header, then the control block).
pub(crate) const HUB_HEADER_BYTES: u64 = 4096;
/// Where the control block starts.
#[cfg_attr(loom, allow(dead_code))] // segments only
pub(crate) const HUB_CONTROL_OFFSET: u64 = 1024;
pub(crate) const ALIGN: u64 = 128;
/// Exchanges `close` tries on one entry word before it gives up: each
/// failure follows a change of the word by another party, and a correct
/// producer changes it at most twice (claim, publish).
pub(crate) const CLOSE_ATTEMPTS: u32 = 64;

pub(crate) const KIND_FREE: u64 = 0;
pub(crate) const KIND_CLAIMED: u64 = 1;
pub(crate) const KIND_PUBLISHED: u64 = 2;
pub(crate) const KIND_CLOSED: u64 = 3;

/// One producer attachment: its slot in the hub and the epoch of the
/// attachment that holds the slot (the slot is reused by later ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProducerId {
    /// `0 .. MAX_HUB_PRODUCERS`.
    pub(crate) slot: u8,
    /// The slot's epoch when this producer attached (low 16 bits).
    pub(crate) epoch: u16,
}

/// An entry's state word, decoded: `kind` (bits 0-7), producer slot
/// (8-15), producer epoch (16-31), generation (32-63). The generation grows
/// by one at every claim, so a stale view of an entry never matches a
/// later stream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryState {
    Free {
        gen: u32,
    },
    Claimed {
        gen: u32,
        by: ProducerId,
    },
    Published {
        gen: u32,
        by: ProducerId,
    },
    /// The worker's set went (`close`): nothing is claimed or published
    /// here any more.
    Closed {
        gen: u32,
    },
    /// A value no correct party writes.
    Invalid(u64),
}

impl EntryState {
    pub(crate) fn decode(word: u64) -> EntryState {
        let gen = (word >> 32) as u32;
        let by = ProducerId {
            slot: (word >> 8) as u8,
            epoch: (word >> 16) as u16,
        };
        match word & 0xff {
            KIND_FREE if word & 0xffff_ff00 == 0 => EntryState::Free { gen },
            KIND_CLAIMED if (by.slot as usize) < MAX_HUB_PRODUCERS => {
                EntryState::Claimed { gen, by }
            }
            KIND_PUBLISHED if (by.slot as usize) < MAX_HUB_PRODUCERS => {
                EntryState::Published { gen, by }
            }
            KIND_CLOSED if word & 0xffff_ff00 == 0 => EntryState::Closed { gen },
            _ => EntryState::Invalid(word),
        }
    }

    pub(crate) fn encode(kind: u64, gen: u32, by: ProducerId) -> u64 {
        kind | (by.slot as u64) << 8 | (by.epoch as u64) << 16 | (gen as u64) << 32
    }
}

/// Where the parts of a hub lie, from its number of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HubGeometry {
    /// A multiple of 64 in `MIN_HUB_ENTRIES ..= MAX_HUB_ENTRIES`.
    pub(crate) entries: u32,
    pub(crate) ready_offset: u64,
    pub(crate) announce_offset: u64,
    pub(crate) entries_offset: u64,
    pub(crate) total_bytes: u64,
}

impl HubGeometry {
    /// The layout of a hub of `entries` streams.
    ///
    /// # Errors
    ///
    /// A sentence naming the limits when `entries` is out of range.
    pub(crate) fn new(entries: u32) -> Result<HubGeometry, String> {
        if !(MIN_HUB_ENTRIES..=MAX_HUB_ENTRIES).contains(&entries) || entries % 64 != 0 {
            return Err(format!(
                "a hub holds {MIN_HUB_ENTRIES} to {MAX_HUB_ENTRIES} streams in multiples of 64, not {entries}"
            ));
        }
        let bitmap = (entries as u64 / 64 * 8).next_multiple_of(ALIGN);
        let ready_offset = HUB_HEADER_BYTES;
        let announce_offset = ready_offset + bitmap;
        let entries_offset = announce_offset + bitmap;
        let total_bytes =
            (entries_offset + entries as u64 * ENTRY_BYTES as u64).next_multiple_of(4096);
        Ok(HubGeometry {
            entries,
            ready_offset,
            announce_offset,
            entries_offset,
            total_bytes,
        })
    }

    pub(crate) fn words(&self) -> usize {
        self.entries as usize / 64
    }
}

/// A producer slot: its attachment epoch and its holder's pid (for
/// messages; liveness is the backing's lock).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ProducerSlot {
    /// Bumped by each attachment that takes the slot.
    pub(crate) epoch: AtomicU32,
    pub(crate) pid: AtomicU32,
}

/// The hub's control block: the worker's bell and the producer slots.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HubControl {
    /// The consumer sleeps here; producers ring.
    pub(crate) bell: Padded<Doorbell>,
    pub(crate) producers: [ProducerSlot; MAX_HUB_PRODUCERS],
}

impl HubControl {
    // Only heap hubs build these; segments start from zeroed memory.
    pub(crate) fn new() -> Self {
        HubControl {
            bell: Padded::new(Doorbell::new()),
            producers: std::array::from_fn(|_| ProducerSlot {
                epoch: AtomicU32::new(0),
                pid: AtomicU32::new(0),
            }),
        }
    }
}

/// One stream's entry. Every field is an atomic: other processes write it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Entry {
    /// An [`EntryState`], encoded.
    pub(crate) state: AtomicU64,
    /// The claimer's pid (for messages and `inspect`).
    pub(crate) pid: AtomicU32,
    /// Lengths of the identity's four strings (0 for an in-process stream,
    /// which is adopted through its own table and needs no text).
    pub(crate) lens: [AtomicU32; 4],
    pub(crate) _pad: AtomicU32,
    /// The strings, at the offsets of `TEXT_FIELDS`, little-endian packed.
    pub(crate) text: [AtomicU64; TEXT_WORDS],
}

impl Entry {
    pub(crate) fn new() -> Self {
        Entry {
            state: AtomicU64::new(0),
            pid: AtomicU32::new(0),
            lens: std::array::from_fn(|_| AtomicU32::new(0)),
            _pad: AtomicU32::new(0),
            text: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Entry>() == ENTRY_BYTES);
    assert!(offset_of!(Entry, state) == 0);
    assert!(offset_of!(Entry, pid) == 8);
    assert!(offset_of!(Entry, lens) == 12);
    assert!(offset_of!(Entry, text) == 32);
    assert!(offset_of!(HubControl, bell) == 0);
    assert!(offset_of!(HubControl, producers) == 128);
    assert!(size_of::<ProducerSlot>() == 8);
    assert!(HUB_CONTROL_OFFSET as usize + size_of::<HubControl>() <= HUB_HEADER_BYTES as usize);
};
