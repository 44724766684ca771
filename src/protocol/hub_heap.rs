//! A hub on the heap: for streams within one process, and what loom and
//! Miri run; with the tests of the hub protocol, which run on it.

use crate::protocol::hub::{HubBacking, HubMem};
use crate::protocol::hub_layout::{Entry, HubControl, HubGeometry, MAX_HUB_PRODUCERS};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use std::ptr::NonNull;

/// A hub on the heap: for streams within one process, and what loom and
/// Miri run. Producer-slot locks are flags here (a thread cannot die alone).
#[derive(Debug)]
pub(crate) struct HeapHub {
    control: NonNull<HubControl>,
    ready: NonNull<[AtomicU64]>,
    announce: NonNull<[AtomicU64]>,
    entries: NonNull<[Entry]>,
    locks: Box<[AtomicU32]>,
}

// SAFETY: the backing owns its allocations and touches them only to free
// them in `drop`, when the last `HubMem` is gone.
unsafe impl Send for HeapHub {}
// SAFETY: as above; `&HeapHub` reaches only the lock flags, atomics.
unsafe impl Sync for HeapHub {}

impl HubBacking for HeapHub {
    fn name(&self) -> &str {
        "(in-process hub)"
    }

    fn try_lock_slot(&self, slot: usize) -> bool {
        self.locks[slot]
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn unlock_slot(&self, slot: usize) {
        self.locks[slot].store(0, Ordering::Release);
    }

    fn slot_locked(&self, slot: usize) -> bool {
        self.locks[slot].load(Ordering::Acquire) != 0
    }

    fn owner_alive(&self) -> bool {
        true
    }
}

impl Drop for HeapHub {
    fn drop(&mut self) {
        // SAFETY: these came from `Box::leak` in `heap_hub` and are freed
        // once, here, when the `HubMem` holding this backing goes.
        unsafe {
            drop(Box::from_raw(self.control.as_ptr()));
            drop(Box::from_raw(self.ready.as_ptr()));
            drop(Box::from_raw(self.announce.as_ptr()));
            drop(Box::from_raw(self.entries.as_ptr()));
        }
    }
}

/// A hub of `entries` streams on the heap.
///
/// # Errors
///
/// As [`HubGeometry::new`].
pub(crate) fn heap_hub(entries: u32) -> Result<HubMem, String> {
    let geometry = HubGeometry::new(entries)?;
    let words = geometry.words();
    let bitmap = || -> NonNull<[AtomicU64]> {
        NonNull::from(Box::leak(
            (0..words).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>(),
        ))
    };
    let control = NonNull::from(Box::leak(Box::new(HubControl::new())));
    let ready = bitmap();
    let announce = bitmap();
    let table: Box<[Entry]> = (0..entries).map(|_| Entry::new()).collect();
    let entries = NonNull::from(Box::leak(table));
    let backing = Box::new(HeapHub {
        control,
        ready,
        announce,
        entries,
        locks: (0..MAX_HUB_PRODUCERS).map(|_| AtomicU32::new(0)).collect(),
    });
    // SAFETY: the allocations above hold a control block, `words` atomics
    // per bitmap and `entries` entries; `backing` owns them and the
    // `HubMem` owns `backing`.
    Ok(unsafe {
        HubMem::new(
            control,
            ready.cast(),
            announce.cast(),
            entries.cast(),
            geometry,
            backing,
        )
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::hub::*;
    use crate::protocol::hub_layout::*;
    use std::sync::Arc;

    fn hub() -> Arc<HubMem> {
        Arc::new(heap_hub(64).unwrap())
    }

    #[test]
    fn a_claim_left_by_a_dead_producer_is_taken_over_by_the_next_claimer() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (entry, gen) = hub.claim(a, 0).unwrap();
        // Alive: the entry stays a's, also for the consumer's sweep.
        let b = hub.attach_producer(2).unwrap();
        assert_ne!(hub.claim(b, entry).unwrap().0, entry);
        assert_eq!(hub.sweep_dead_claims(|_| {}), 0);
        // `a` dies between claim and publish: its slot's lock goes.
        hub.detach_producer(a);
        let (taken, gen2) = hub.claim(b, entry).unwrap();
        assert_eq!((taken, gen2), (entry, gen + 1));
        hub.publish(taken, gen2, b, 2);
        assert_eq!(hub.state(entry), EntryState::Published { gen: gen2, by: b });
    }

    #[test]
    fn a_dead_producers_claim_reports_the_identity_it_wrote_to_whoever_frees_it() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (taken, _) = hub.claim(a, 3).unwrap();
        hub.write_identity(taken, ["pre-", "r1", "e", "p"]);
        let (swept, _) = hub.claim(a, 9).unwrap();
        hub.write_identity(swept, ["pre-", "r2", "e", "p"]);
        let (fresh, _) = hub.claim(a, 20).unwrap();
        hub.clear_identity(fresh);
        hub.detach_producer(a);
        let b = hub.attach_producer(2).unwrap();
        let mut stale = vec![];
        assert_eq!(
            hub.claim_reporting(b, 3, |id| stale.push(id[1].clone())),
            Some((taken, 2))
        );
        assert_eq!(stale, ["r1"]);
        let mut swept_ids = vec![];
        assert_eq!(hub.sweep_dead_claims(|id| swept_ids.push(id[1].clone())), 2);
        assert_eq!(swept_ids, ["r2"], "an entry without text reports nothing");
        assert_eq!(hub.sweep_dead_claims(|_| panic!("swept already")), 0);
    }

    #[test]
    fn a_later_attachment_in_the_same_slot_makes_the_old_claim_stale() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (entry, _) = hub.claim(a, 7).unwrap();
        hub.detach_producer(a);
        let a2 = hub.attach_producer(3).unwrap();
        assert_eq!(a2.slot, a.slot, "the slot is reused");
        assert_ne!(a2.epoch, a.epoch);
        assert!(!hub.producer_alive(a), "the old epoch is dead");
        assert_eq!(hub.sweep_dead_claims(|_| {}), 1);
        assert!(matches!(hub.state(entry), EntryState::Free { .. }));
    }

    #[test]
    fn a_producers_own_claim_in_flight_is_never_taken_from_it() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (first, _) = hub.claim(a, 0).unwrap();
        // Another thread of the same attachment claims meanwhile: the
        // heap backing reports no other holder, as an OFD lock test from
        // one's own description would not.
        let (second, _) = hub.claim(a, first).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn a_full_hub_has_no_entry_to_claim_and_a_retired_one_frees_one() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let claims: Vec<_> = (0..64).map(|_| hub.claim(a, 0).unwrap()).collect();
        assert!(hub.claim(a, 0).is_none());
        let (entry, gen) = claims[10];
        hub.publish(entry, gen, a, 1);
        let mut announced = vec![];
        hub.take(Bitmap::Announce, 0, |e| announced.push(e));
        assert_eq!(announced, [entry]);
        assert!(
            !hub.retire(entry, gen + 1, a),
            "only the adopted generation"
        );
        assert!(hub.retire(entry, gen, a));
        assert_eq!(hub.claim(a, 0), Some((entry, gen + 1)));
    }

    #[test]
    fn bits_are_taken_once_from_a_rotating_start() {
        let hub = Arc::new(heap_hub(192).unwrap());
        for e in [3, 70, 130, 191] {
            hub.set_bit(Bitmap::Ready, e);
            hub.set_bit(Bitmap::Ready, e);
        }
        assert!(hub.any_pending());
        let mut seen = vec![];
        hub.take(Bitmap::Ready, 1, |e| seen.push(e));
        assert_eq!(seen, [70, 130, 191, 3]);
        assert!(!hub.any_pending());
        hub.take(Bitmap::Ready, 0, |_| panic!("taken already"));
    }

    #[test]
    fn identities_round_trip_and_bad_lengths_name_their_limit() {
        let hub = hub();
        hub.write_identity(5, ["pre-", "req", "edge", "part"]);
        assert_eq!(
            hub.identity(5).unwrap().unwrap(),
            ["pre-", "req", "edge", "part"].map(String::from)
        );
        hub.clear_identity(5);
        assert_eq!(hub.identity(5).unwrap(), None);
        hub.entry(6).lens[2].store(121, Ordering::Relaxed);
        let err = hub.identity(6).unwrap_err();
        assert!(
            err.contains("edge_name length 121 exceeds the limit of 120"),
            "{err}"
        );
        hub.write_identity(7, ["p", "r", "e", "f"]);
        hub.entry(7).text[0].store(u64::MAX, Ordering::Relaxed);
        assert!(hub.identity(7).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn a_closed_entry_refuses_claims_and_publications_and_says_what_it_held() {
        let hub = hub();
        let a = hub.attach_producer(1).unwrap();
        let (published, gen) = hub.claim(a, 5).unwrap();
        assert!(hub.publish(published, gen, a, 1));
        let (claimed, gen2) = hub.claim(a, 5).unwrap();
        assert_eq!(hub.close(published), EntryState::Published { gen, by: a });
        assert_eq!(hub.close(claimed), EntryState::Claimed { gen: gen2, by: a });
        assert!(!hub.publish(claimed, gen2, a, 1), "closed under its claim");
        assert!(!hub.closed(), "entry 0 is still open");
        for i in 0..64 {
            hub.close(i);
        }
        assert!(hub.closed());
        assert_eq!(hub.claim(a, 0), None);
        // A claimer stops at the first closed entry it meets.
        let hub2 = super::tests::hub();
        let b = hub2.attach_producer(1).unwrap();
        hub2.close(7);
        assert_eq!(hub2.claim(b, 7), None, "not entry 8");
        assert_eq!(hub2.claim(b, 6), Some((6, 1)));
        assert!(matches!(hub.close(3), EntryState::Closed { .. }));
        assert!(!hub.retire(published, gen, a));
    }

    #[test]
    fn state_words_decode_or_are_invalid() {
        let by = ProducerId { slot: 63, epoch: 9 };
        for (kind, state) in [
            (KIND_CLAIMED, EntryState::Claimed { gen: 4, by }),
            (KIND_PUBLISHED, EntryState::Published { gen: 4, by }),
        ] {
            assert_eq!(EntryState::decode(EntryState::encode(kind, 4, by)), state);
        }
        let bad_slot = EntryState::encode(KIND_PUBLISHED, 1, ProducerId { slot: 64, epoch: 0 });
        assert!(matches!(
            EntryState::decode(bad_slot),
            EntryState::Invalid(_)
        ));
        assert!(matches!(EntryState::decode(7), EntryState::Invalid(7)));
        assert!(matches!(EntryState::decode(0x100), EntryState::Invalid(_)));
    }
}
