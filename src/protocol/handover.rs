//! Who removes a hub stream's segment name: its producer, or the worker
//! it was announced to. One word of the segment's header (`consumer_pid`)
//! decides, once, with one atomic exchange by each party that may go
//! first; whoever loses the exchange leaves the name to the winner's
//! decision. No OS calls here, so loom runs exactly this code
//! (`loom-tests/tests/handover.rs`).
//!
//! | word | written by | means |
//! | --- | --- | --- |
//! | 0 | the creator | nobody decided yet |
//! | a pid | a consumer attaching (swap) | attached first: the producer removes the name when it goes |
//! | [`HANDED_OVER`] | the producer going before any consumer (CAS from 0) | the consumer to come, or the worker's set when it goes without adopting, removes the name |
//! | [`WORKER_CLOSED`] | the worker's set going without adopting (CAS from 0) | the producer removes the name itself (or, if it is dead, the set does) |

use crate::sync::{AtomicU32, Ordering};

/// The word of a segment whose producer went before any consumer attached
/// and left its name to the worker (no pid is this).
pub const HANDED_OVER: u32 = u32::MAX;

/// The word of a segment whose worker's set went before adopting it: the
/// producer keeps its name and removes it itself (no pid is this either:
/// Linux pids stop at 2^22).
pub const WORKER_CLOSED: u32 = u32::MAX - 1;

/// What a leaving producer does with its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Removes it (a consumer attached, the worker closed, or there is no
    /// hand-over for this stream).
    Remove,
    /// Leaves it to the worker.
    HandedOver,
}

/// The producer goes: with `hand_over` (a hub stream whose worker lives),
/// it leaves its name to the worker unless a consumer attached or the
/// worker closed first.
pub fn producer_leaves(word: &AtomicU32, hand_over: bool) -> Leave {
    if hand_over && exchange_for_leave(word) {
        Leave::HandedOver
    } else {
        Leave::Remove
    }
}

/// The producer's exchange. AcqRel on success: every write the producer
/// made to the segment (its last commits, `done`, the gone flag) happens
/// before the accesses of whoever finds `HANDED_OVER` and, reading the
/// stream whole or not, removes the name. `--cfg shmstream_weaken=
/// "handover_release"` makes it Relaxed, to show the loom model catching
/// it (the remover's access races the producer's last write).
#[inline]
fn exchange_for_leave(word: &AtomicU32) -> bool {
    #[cfg(not(shmstream_weaken = "handover_release"))]
    let (success, failure) = (Ordering::AcqRel, Ordering::Acquire);
    #[cfg(shmstream_weaken = "handover_release")]
    let (success, failure) = (Ordering::Relaxed, Ordering::Relaxed);
    word.compare_exchange(0, HANDED_OVER, success, failure)
        .is_ok()
}

/// A consumer attaches with its `pid`: true when the producer had gone
/// and left the name to it (it then removes the name when it goes).
pub fn consumer_attaches(word: &AtomicU32, pid: u32) -> bool {
    // AcqRel: pairs with the producer's exchange (either order).
    word.swap(pid, Ordering::AcqRel) == HANDED_OVER
}

/// What the worker's set does, going, with a stream announced to it that
/// it never adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The producer will remove the name when it goes; if it is dead
    /// already (killed), the set removes it (under the reclaim locks, only
    /// a dead producer's file).
    ProducerRemoves,
    /// The producer went and left the name to the worker: the set removes
    /// it.
    WorkerRemoves,
    /// A consumer attached (or the word was decided already): not the
    /// set's to remove.
    NotOurs,
}

/// The worker's set goes without having adopted the stream.
pub fn worker_closes(word: &AtomicU32) -> Close {
    // AcqRel: Acquire pairs with the producer's exchange (the producer's
    // writes happen before our removal); Release with its failure Acquire
    // (our accesses happen before its own removal).
    match word.compare_exchange(0, WORKER_CLOSED, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Close::ProducerRemoves,
        Err(HANDED_OVER) => Close::WorkerRemoves,
        Err(_) => Close::NotOurs,
    }
}

/// The hub's entry protocol as the loom hand-over model drives it: the
/// real `claim`, `publish` and `close` of a heap hub, which `Hub` and
/// `StreamSet` call in production. Not part of the API.
#[cfg(loom)]
#[derive(Debug)]
pub struct ModelHub {
    hub: crate::protocol::hub::HubMem,
    producer: crate::protocol::hub_layout::ProducerId,
    other: crate::protocol::hub_layout::ProducerId,
}

#[cfg(loom)]
impl ModelHub {
    /// A hub of the fewest entries, with two producers attached.
    pub fn new() -> ModelHub {
        let hub = crate::protocol::hub_heap::heap_hub(crate::protocol::hub_layout::MIN_HUB_ENTRIES)
            .expect("a valid size");
        let producer = hub.attach_producer(1).expect("a free slot");
        let other = hub.attach_producer(2).expect("a free slot");
        ModelHub {
            hub,
            producer,
            other,
        }
    }

    /// A second producer claims an entry, looking from entry 0 too.
    pub fn claim_other(&self) -> Option<(u32, u32)> {
        self.hub.claim(self.other, 0)
    }

    /// The producer claims an entry: `(entry, generation)`.
    pub fn claim(&self) -> Option<(u32, u32)> {
        self.hub.claim(self.producer, 0)
    }

    /// The producer publishes its claim; false when the entry was closed.
    pub fn publish(&self, entry: u32, gen: u32) -> bool {
        self.hub.publish(entry, gen, self.producer, 1)
    }

    /// The worker's set closes entry 0 as its drop does (it closes every
    /// entry, 0 first); returns its generation if it was published. The
    /// model's producer claims from entry 0 and never looks past an entry
    /// it finds closed (by its look or by its failed CAS), so entry 0 is
    /// the only one it can race the close on (the other 63 closes would
    /// only multiply loom's interleavings).
    pub fn close_first(&self) -> Option<u32> {
        match self.hub.close(0) {
            crate::protocol::hub_layout::EntryState::Published { gen, .. } => Some(gen),
            _ => None,
        }
    }

    /// The worker takes the announce bits (as `wait_any` does) and returns
    /// the entries it finds published.
    pub fn take_announced(&self) -> Vec<u32> {
        let mut announced = Vec::new();
        self.hub
            .take(crate::protocol::hub::Bitmap::Announce, 0, |e| {
                announced.push(e)
            });
        announced.retain(|&e| {
            matches!(
                self.hub.state(e),
                crate::protocol::hub_layout::EntryState::Published { .. }
            )
        });
        announced
    }
}

#[cfg(loom)]
impl Default for ModelHub {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_first_exchange_decides_and_the_second_side_learns_it() {
        let word = AtomicU32::new(0);
        assert_eq!(producer_leaves(&word, true), Leave::HandedOver);
        assert_eq!(worker_closes(&word), Close::WorkerRemoves);

        let word = AtomicU32::new(0);
        assert_eq!(worker_closes(&word), Close::ProducerRemoves);
        assert_eq!(producer_leaves(&word, true), Leave::Remove);
        assert_eq!(word.load(Ordering::Relaxed), WORKER_CLOSED);

        let word = AtomicU32::new(0);
        assert!(!consumer_attaches(&word, 42));
        assert_eq!(producer_leaves(&word, true), Leave::Remove);
        assert_eq!(worker_closes(&word), Close::NotOurs);

        let word = AtomicU32::new(0);
        assert_eq!(producer_leaves(&word, true), Leave::HandedOver);
        assert!(consumer_attaches(&word, 42));
    }

    #[test]
    fn a_producer_without_hand_over_removes_and_leaves_the_word() {
        let word = AtomicU32::new(0);
        assert_eq!(producer_leaves(&word, false), Leave::Remove);
        assert_eq!(word.load(Ordering::Relaxed), 0);
        assert_eq!(worker_closes(&word), Close::ProducerRemoves);
    }
}
