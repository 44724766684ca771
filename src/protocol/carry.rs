//! What a growing in-process stream carries from its ring to a bigger one
//! (issue 26, `grow.rs`): the producer reads back what it registered and
//! published itself, position by position, and a fresh ring's two sides
//! start at the position the consumer stands at. No OS calls.

use crate::error::{AbandonReason, StreamError};
use crate::protocol::descriptor::{Bounds, ItemId, ItemMeta};
use crate::protocol::layout::STATUS_ABANDONED;
use crate::protocol::reason;
use crate::protocol::ring::RingMem;
use crate::protocol::ring_consumer::ConsumerRing;
use crate::protocol::ring_producer::{ProducerRing, SlotState};
use crate::protocol::tensor::TensorMeta;
use crate::sync::Ordering;

/// A registered position as the producer left it.
#[derive(Clone, Debug)]
pub(crate) enum Carried {
    /// Committed: its tensor, and where its bytes lie in the payload.
    Item {
        id: ItemId,
        meta: TensorMeta,
        offset: u64,
    },
    /// Published as given up.
    Abandoned { id: ItemId, reason: AbandonReason },
    /// `pre_read_register`ed, waiting for its `put`, with `len` bytes.
    Pending { id: ItemId, len: u64 },
    /// A write handle has it: its bytes may be written at any moment.
    Held,
}

/// What the producer of `ring` registered at `position`, which must be
/// registered and not released (`released <= position < registered`).
pub(crate) fn carried(ring: &ProducerRing, position: u64) -> Result<Carried, StreamError> {
    let mem = ring.mem();
    let desc = mem.descriptor(position);
    let side = mem.side(position);
    match ring.state(position) {
        SlotState::Held => return Ok(Carried::Held),
        SlotState::Pending => {
            // Not published: its descriptor does not have the reservation
            // yet (the producer writes it at commit), our private copy does.
            let (len, id_len) = ring.reserved(position);
            return Ok(Carried::Pending {
                id: ItemId::read(side, position, id_len)?,
                len,
            });
        }
        SlotState::Free => {}
    }
    // Our own writes, read back on the producer's thread: Relaxed suffices.
    let id_len = (desc.info.load(Ordering::Relaxed) >> 24) as u8;
    // Published. Inside a run of more than one, whose head alone has the
    // metadata: our private copy of it, and the reservation our
    // registration wrote.
    let info = desc.info.load(Ordering::Relaxed);
    match ring.committed_meta(position) {
        Some(meta) if info & 0xff != STATUS_ABANDONED => Ok(Carried::Item {
            id: ItemId::read(side, position, id_len)?,
            meta,
            offset: desc.offset.load(Ordering::Relaxed),
        }),
        _ => read_alone(mem, position, id_len, info),
    }
}

/// A published position whose own descriptor has its metadata (committed
/// alone, or abandoned), read back with the checks of the consumer's walk,
/// with bounds that only ask the reservation to lie in the payload (it is
/// our own).
fn read_alone(mem: &RingMem, position: u64, id_len: u8, info: u32) -> Result<Carried, StreamError> {
    let (desc, side) = (mem.descriptor(position), mem.side(position));
    let bounds = Bounds {
        walk_end: 0,
        oldest_start: None,
        payload_bytes: mem.payload_bytes(),
        mirrored: mem.mirrored(),
    };
    let mut meta = ItemMeta::EMPTY;
    let read = ItemMeta::read_into(desc, side, position, &bounds, None, &mut meta)?;
    let id = ItemId::read(side, position, id_len)?;
    if read.status == STATUS_ABANDONED {
        // Its reason too, checked as the consumer's poll checks it.
        let reason = reason::read(desc, side, position, info)?;
        return Ok(Carried::Abandoned { id, reason });
    }
    Ok(Carried::Item {
        id,
        meta: TensorMeta::new(meta.dtype, meta.shape())?,
        offset: meta.offset,
    })
}

/// The two sides of a fresh ring whose first position is `start` (the
/// counters of a new ring are 0; a ring that takes over a stream goes on
/// from where the consumer stands).
pub(crate) fn rings_at(
    producer: RingMem,
    consumer: RingMem,
    start: u64,
) -> (ProducerRing, ConsumerRing) {
    // Nothing is shared yet: both counters are set before either side runs.
    producer
        .control()
        .registered
        .store(start, Ordering::Release);
    producer.control().released.store(start, Ordering::Release);
    (
        ProducerRing::starting_at(producer, start),
        ConsumerRing::starting_at(consumer, start),
    )
}
