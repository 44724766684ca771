//! Growing an in-process stream by moving it to a bigger ring (issue 26;
//! docs/design.md, "Growing the in-process buffer").
//!
//! A stream whose producer and buffer live in one process (the reference's
//! drop-in) need not be bounded: when a registration finds the ring full,
//! or a `put` is larger than its reservation, [`StreamBuffer::grow`] makes
//! a new ring whose positions start where the consumer stands, carries
//! every position from there to the last registered one over (committed
//! items copied, pending ids registered again, abandoned ones abandoned,
//! `done` kept), and puts it in place of the old one on both sides. Chunks
//! popped before keep reading the old ring, which goes with their last
//! lease. Capacity and payload at least double when short, so each item is
//! copied O(1) times on average.

use crate::buffer::{Retired, StreamBuffer};
use crate::config::StreamConfig;
use crate::error::{Resource, StreamError};
use crate::open::in_process_mem;
use crate::producer::Producer;
use crate::protocol::carry::{carried, rings_at, Carried};
use crate::protocol::layout::{placement_align, FLAG_DONE, MAX_CAPACITY, MAX_PAYLOAD_BYTES, PAGE};
use crate::protocol::ring_consumer::ConsumerRing;

/// What the stream needs room for: why it grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// One more registration of `nbytes`.
    Register {
        /// Its bytes.
        nbytes: u64,
    },
    /// The `put` of the pending `id`, of `nbytes` (more than it reserved).
    Put {
        /// The pending id.
        id: &'a str,
        /// The tensor's bytes.
        nbytes: u64,
    },
}

/// What a move to a bigger ring did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grown {
    /// The first position of the new ring (where the consumer stood).
    pub start: u64,
    /// Positions carried over (`start..registered`).
    pub carried: u64,
    /// Payload bytes copied (the committed items among them).
    pub copied_bytes: u64,
    /// The new ring's item capacity.
    pub capacity: u64,
    /// The new ring's payload bytes.
    pub payload_bytes: u64,
    /// What a registration without a size now reserves: the largest item
    /// seen (see the module).
    pub item_bytes: u64,
}

fn not_grown(why: String) -> StreamError {
    StreamError::NotGrown { why }
}

impl<E> StreamBuffer<E> {
    /// Moves this in-process stream, with `producer` (its own), to a bigger
    /// ring with room for `need`, as the module says. On an error nothing
    /// changed.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process_buffer, policy::Fixed, DType, Need, StreamConfig, StreamId, TensorMeta};
    /// let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(2);
    /// let (mut producer, mut buffer) = in_process_buffer::<()>(&cfg, Fixed::new(1).unwrap()).unwrap();
    /// producer.pre_read_register("a").unwrap();
    /// producer.pre_read_register("b").unwrap();
    /// assert!(producer.try_register("c").is_err()); // full
    /// buffer.grow(&mut producer, Need::Register { nbytes: 4 }).unwrap();
    /// producer.pre_read_register("c").unwrap();
    /// for id in ["c", "a", "b"] {
    ///     producer.put(id, TensorMeta::new(DType::U8, &[1]).unwrap(), &[id.as_bytes()[0]]).unwrap();
    /// }
    /// assert_eq!(buffer.pop_chunk().unwrap().item(0).unwrap().bytes(), b"a");
    /// ```
    ///
    /// # Errors
    ///
    /// [`StreamError::NotGrown`] when `producer` is not this buffer's, when
    /// a write handle ([`Producer::register`]'s [`Slot`](crate::Slot)) is
    /// out (its bytes may be written at any time), or when the ring would
    /// pass [`MAX_CAPACITY`](crate::MAX_CAPACITY) items or
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES); [`StreamError::UnknownId`]
    /// for a `Need::Put` of an id that is not pending; and the errors of
    /// making the new ring's memory.
    pub fn grow(&mut self, producer: &mut Producer, need: Need<'_>) -> Result<Grown, StreamError> {
        let old = producer.ring.get_mut();
        let ours = std::ptr::eq(old.mem().control(), self.consumer.ring.mem().control());
        if !ours {
            return Err(not_grown("the producer is not this buffer's".into()));
        }
        // A run held by adaptive batching is published first: every
        // position is then carried as committed, and the new ring batches
        // as the old one did.
        old.flush();
        let batching = old.batching();
        let start = self.consumer.ring.consumed();
        let end = old.registered();
        let mut items = Vec::with_capacity((end - start) as usize);
        for position in start..end {
            match carried(old, position)? {
                Carried::Held => {
                    return Err(not_grown(format!(
                        "the write handle of position {position} (a slot from register()) is out; commit or drop it first"
                    )))
                }
                c => items.push(c),
            }
        }
        if let Need::Put { id, .. } = need {
            let pending = items
                .iter()
                .any(|c| matches!(c, Carried::Pending { id: p, .. } if p.as_str() == id));
            if !pending {
                return Err(StreamError::UnknownId { id: id.into() });
            }
        }
        let old_item = old.mem().item_bytes();
        let item_bytes = learned_item_bytes(&items, need, old_item, self.learned);
        let plan = Plan::new(&items, need, old_item, item_bytes);
        let (mut capacity, mut payload) =
            plan.sizes(old.mem().capacity(), old.mem().payload_bytes());
        let done = old.mem().flags() & FLAG_DONE != 0;
        loop {
            match self.rebuild(producer, &plan, start, capacity, payload, done)? {
                Ok((mut next, ring, copied)) => {
                    let old = producer.ring.get_mut();
                    if let Some(hook) = old.take_notifier() {
                        next.ring.get_mut().set_notifier(hook);
                    }
                    next.ring.get_mut().set_batching(batching);
                    // The old producer goes (its ring says so to nobody:
                    // the old consumer side only serves leases now).
                    drop(std::mem::replace(producer, next));
                    let old_ring = std::mem::replace(&mut self.consumer.ring, ring);
                    let leases = std::mem::take(&mut self.leases);
                    if !leases.live.is_empty() {
                        self.retired.push(Retired {
                            ring: old_ring,
                            leases,
                        });
                    }
                    self.learned |= learns(&items, need);
                    // A fresh look at the new ring; an error (the next item
                    // abandoned, say) is the next poll's to report.
                    let _ = self.consumer.poll();
                    return Ok(Grown {
                        start,
                        carried: end - start,
                        copied_bytes: copied,
                        capacity,
                        payload_bytes: payload,
                        item_bytes,
                    });
                }
                Err(Resource::Items) => capacity = double(capacity, MAX_CAPACITY, "item slots")?,
                Err(Resource::PayloadBytes) => {
                    payload = double(payload, MAX_PAYLOAD_BYTES, "payload bytes")?
                }
            }
        }
    }

    /// A producer and consumer ring of the given sizes starting at
    /// `start`, holding everything of `plan`; `Err(resource)` when the
    /// sizes were short after all (placement padding).
    #[allow(clippy::type_complexity)]
    fn rebuild(
        &self,
        producer: &mut Producer,
        plan: &Plan<'_>,
        start: u64,
        capacity: u64,
        payload: u64,
        done: bool,
    ) -> Result<Result<(Producer, ConsumerRing, u64), Resource>, StreamError> {
        let config = StreamConfig::new(self.id().clone())
            .with_capacity(capacity)
            .with_item_bytes(plan.item_bytes)
            .with_payload_bytes(payload);
        let (p, c) = in_process_mem(&config).map_err(|e| not_grown(format!("a new ring: {e}")))?;
        let (p, c) = rings_at(p, c, start);
        let next = Producer::from_ring(p, producer.timeout);
        let old = producer.ring.get_mut();
        let mut copied = 0;
        for (carry, len) in &plan.entries {
            // Checked first, so that no registration below waits for room.
            if let Some(short) = short_of(&next, *len)? {
                return Ok(Err(short));
            }
            let r = match &**carry {
                Carried::Item { id, meta, offset } => {
                    let n = meta.nbytes() as usize;
                    // SAFETY: the item is committed and not released (its
                    // position is at or after the consumer's), so nobody
                    // writes its bytes: the producer is borrowed here, and
                    // the consumer only reads. Its reservation of at least
                    // `n` bytes lies in the mapping from `offset` (checked
                    // by `carried`: across the wrap only with the mirror).
                    let bytes =
                        unsafe { std::slice::from_raw_parts(old.mem().payload_ptr(*offset), n) };
                    copied += n as u64;
                    next.try_register_sized(id.as_str(), *len)
                        .and_then(|slot| slot.write(*meta, bytes).map_err(|e| e.error))
                }
                // Dropped uncommitted: published as abandoned again.
                Carried::Abandoned { id, reason } => next
                    .try_register_sized(id.as_str(), 0)
                    .map(|slot| slot.abandon_with(reason.clone())),
                Carried::Pending { id, .. } => {
                    next.pre_read_register_sized(id.as_str(), *len).map(drop)
                }
                Carried::Held => unreachable!("refused before"),
            };
            match r {
                Ok(()) => {}
                Err(StreamError::Full { resource, .. }) => return Ok(Err(resource)),
                Err(StreamError::ExceedsPayload { .. }) => return Ok(Err(Resource::PayloadBytes)),
                Err(e) => return Err(e),
            }
        }
        // Room for the need itself, as the caller will ask for it.
        if plan.need_slot {
            if let Some(short) = short_of(&next, plan.need_bytes)? {
                return Ok(Err(short));
            }
        }
        if done {
            next.signal_done();
        }
        Ok(Ok((next, c, copied)))
    }
}

/// Everything to carry, with the bytes each position reserves in the new
/// ring, and what the need itself asks.
struct Plan<'a> {
    entries: Vec<(&'a Carried, u64)>,
    item_bytes: u64,
    need_bytes: u64,
    need_slot: bool,
    /// The bytes of the entries and the need, with each one's alignment.
    placed: u64,
}

impl<'a> Plan<'a> {
    fn new(items: &'a [Carried], need: Need<'_>, old_item: u64, item_bytes: u64) -> Plan<'a> {
        let entries: Vec<(&Carried, u64)> = items
            .iter()
            .map(|c| {
                let len = match c {
                    Carried::Item { meta, .. } => meta.nbytes(),
                    Carried::Abandoned { .. } | Carried::Held => 0,
                    // The put that asked for room gets its size; a
                    // registration of the old default size (an unsized one,
                    // most likely) gets the learned size, so that its put
                    // does not move the stream again and same-sized items
                    // lie back to back.
                    Carried::Pending { id, len } => match need {
                        Need::Put { id: want, nbytes } if want == id.as_str() => nbytes,
                        _ if *len == old_item => item_bytes,
                        _ => *len,
                    },
                };
                (c, len)
            })
            .collect();
        let (need_bytes, need_slot) = match need {
            Need::Register { nbytes } => (nbytes, true),
            Need::Put { .. } => (0, false),
        };
        let placed = entries
            .iter()
            .map(|(_, len)| *len)
            .chain([need_bytes])
            .map(|len| len + placement_align(len))
            .sum();
        Plan {
            entries,
            item_bytes,
            need_bytes,
            need_slot,
            placed,
        }
    }

    /// Sizes with room for what is carried and half as much again (so
    /// that the next move comes only after a third as many new items as
    /// the ring then holds): the old ones, doubled while short.
    fn sizes(&self, capacity: u64, payload: u64) -> (u64, u64) {
        let items = self.entries.len() as u64 + u64::from(self.need_slot);
        let mut capacity = capacity;
        while capacity < items + items / 2 && capacity < MAX_CAPACITY {
            capacity *= 2;
        }
        let bytes = self.placed + self.placed / 2;
        let mut payload = payload.max(PAGE as u64);
        while (payload < bytes || payload < self.item_bytes) && payload < MAX_PAYLOAD_BYTES {
            payload *= 2;
        }
        (capacity, payload)
    }
}

/// What an unsized registration reserves after the move: the largest item
/// carried or asked for, exactly (same-sized items then lie back to back,
/// one contiguous tensor per chunk); the old default when nothing was put
/// yet. A learned size is kept, and one found too small at least doubles,
/// so that ever larger items move the stream O(log) times.
/// Whether the move sees an item's size to learn from.
fn learns(items: &[Carried], need: Need<'_>) -> bool {
    matches!(need, Need::Put { .. }) || items.iter().any(|c| matches!(c, Carried::Item { .. }))
}

fn learned_item_bytes(items: &[Carried], need: Need<'_>, old: u64, learned: bool) -> u64 {
    let largest = items
        .iter()
        .filter_map(|c| match c {
            Carried::Item { meta, .. } => Some(meta.nbytes()),
            _ => None,
        })
        .chain(match need {
            Need::Put { nbytes, .. } => Some(nbytes),
            Need::Register { .. } => None,
        })
        .max();
    match largest {
        None => old,
        Some(n) if !learned => n.max(1),
        Some(n) if n <= old => old,
        Some(n) => n.max(old.saturating_mul(2)),
    }
}

/// What a fresh ring is short of for one more reservation of `len`.
fn short_of(producer: &Producer, len: u64) -> Result<Option<Resource>, StreamError> {
    match producer.ring.borrow_mut().fits(len) {
        Err(StreamError::ExceedsPayload { .. }) => Ok(Some(Resource::PayloadBytes)),
        r => r,
    }
}

fn double(value: u64, max: u64, what: &str) -> Result<u64, StreamError> {
    if value >= max {
        return Err(not_grown(format!("it would need more than {max} {what}")));
    }
    Ok(value * 2)
}
