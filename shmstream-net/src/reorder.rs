//! The receiver's reorder buffer: offers that arrived before their turn
//! (ahead of a missing `seq`, or behind one that waits for room in the
//! ring), each charged the bytes it holds, under a bound in bytes.
//!
//! A count limit alone bounds nothing: an eager offer carries its tensor
//! (up to the stream's payload capacity), so 1000 of them ahead of a seq
//! the sender never sends held a GiB (issue 21). Every entry is charged
//! [`REORDER_ENTRY_BYTES`] plus the eager bytes it carries, and an insert that
//! would take the sum past the bound is refused: the caller ends that
//! stream.

use crate::budget::{ByteBudget, OverBound};
use std::collections::BTreeMap;

/// What an entry costs beyond the eager bytes it carries: its header, the
/// map's node, and UCX's descriptor of a rendezvous payload (which UCX
/// keeps until the payload is received or released). Measured on UCX
/// 1.13's tcp transport: 20 000 rendezvous offers held ahead of a gap
/// grew the process (receiver and the peer's sends together) by 42 MiB,
/// 2.1 KiB each; 2 KiB is charged (a bound, not an estimate: the peer's
/// side of that measurement is counted too).
pub const REORDER_ENTRY_BYTES: u64 = 2 << 10;

/// Entries by `seq`, with the bytes charged for them.
#[derive(Debug)]
pub(crate) struct Reorder<T> {
    entries: BTreeMap<u64, (T, u64)>,
    /// The charges of `entries`.
    bytes: ByteBudget,
}

impl<T> Reorder<T> {
    pub fn new(limit: u64) -> Reorder<T> {
        Reorder {
            entries: BTreeMap::new(),
            bytes: ByteBudget::new(limit),
        }
    }

    /// Adds `item` under `seq` (not present: checked before), charged
    /// `REORDER_ENTRY_BYTES + payload`; refused, handing the item back,
    /// when the buffer would then hold more than its bound.
    pub fn insert(&mut self, seq: u64, item: T, payload: u64) -> Result<(), (T, OverBound)> {
        let cost = REORDER_ENTRY_BYTES.saturating_add(payload);
        if let Err(over) = self.bytes.charge(cost) {
            return Err((item, over));
        }
        self.entries.insert(seq, (item, cost));
        Ok(())
    }

    /// Re-inserts an entry taken by [`pop_first`](Self::pop_first) with its
    /// charge: it was within the bound before it was taken.
    pub fn put_back(&mut self, seq: u64, item: T, cost: u64) {
        self.bytes.restore(cost);
        self.entries.insert(seq, (item, cost));
    }

    /// The lowest seq held.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.first_key_value().map(|(s, _)| *s)
    }

    /// Takes the entry of the lowest seq, with its charge.
    pub fn pop_first(&mut self) -> Option<(u64, T, u64)> {
        let (seq, (item, cost)) = self.entries.pop_first()?;
        self.bytes.credit(cost);
        Some((seq, item, cost))
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.entries.contains_key(&seq)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes charged for the entries held now.
    pub fn held(&self) -> u64 {
        self.bytes.held()
    }

    /// The most bytes held at once.
    pub fn peak(&self) -> u64 {
        self.bytes.peak()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_stop_at_the_byte_bound_not_at_a_count() {
        let limit = 4 * REORDER_ENTRY_BYTES + 3000;
        let mut r = Reorder::new(limit);
        // Eager payloads of 1000 bytes: three fit with their entries...
        for seq in 1..=3 {
            r.insert(seq, seq, 1000).unwrap();
        }
        assert_eq!(r.held(), 3 * (REORDER_ENTRY_BYTES + 1000));
        // ...and a fourth entry with one byte would pass the bound by one.
        let (item, over) = r.insert(4, 4, 1).unwrap_err();
        assert_eq!(item, 4);
        assert_eq!(
            over,
            OverBound {
                held: limit + 1,
                limit
            }
        );
        assert_eq!(r.held(), 3 * (REORDER_ENTRY_BYTES + 1000));
        // Exactly at the bound is allowed: an entry without eager bytes (a
        // rendezvous descriptor) is charged its entry.
        r.insert(4, 4, 0).unwrap();
        assert_eq!(r.held(), limit);
        assert_eq!(r.peak(), limit);
        assert_eq!(r.len(), 4);
        assert!(r.insert(5, 5, 0).is_err());
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn taking_an_entry_frees_its_charge_and_put_back_restores_it() {
        let mut r = Reorder::new(1 << 20);
        assert!(r.is_empty());
        r.insert(7, "b", 100).unwrap();
        assert!(!r.is_empty());
        r.insert(3, "a", 10).unwrap();
        assert_eq!(r.first_seq(), Some(3));
        assert!(r.contains(7) && !r.contains(4));
        let (seq, item, cost) = r.pop_first().unwrap();
        assert_eq!((seq, item, cost), (3, "a", REORDER_ENTRY_BYTES + 10));
        assert_eq!(r.held(), REORDER_ENTRY_BYTES + 100);
        r.put_back(seq, item, cost);
        assert_eq!(r.held(), 2 * REORDER_ENTRY_BYTES + 110);
        assert_eq!(r.peak(), 2 * REORDER_ENTRY_BYTES + 110);
        while r.pop_first().is_some() {}
        assert!(r.is_empty());
        assert_eq!(r.held(), 0);
        assert_eq!(r.peak(), 2 * REORDER_ENTRY_BYTES + 110);
    }

    #[test]
    fn a_huge_claimed_payload_saturates_instead_of_wrapping() {
        let mut r: Reorder<()> = Reorder::new(1 << 20);
        assert!(r.insert(1, (), u64::MAX).is_err());
        assert_eq!(r.held(), 0);
    }
}
