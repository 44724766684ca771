//! Adaptive batching (issue 24): the producer's held run, *staged* in one
//! shared word instead of published by its head's `seq`, and the consumer
//! that takes it when its walk stops there (docs/design.md, "Adaptive
//! batching (issue 24)").
//!
//! The word (`Control::staged`) packs a run: bit 63 **taken**, the head's
//! low [`HEAD_BITS`] bits from bit [`COUNT_BITS`], the count in the low
//! [`COUNT_BITS`] bits. An untaken word with a count says "the count
//! positions from the head are complete, the head's descriptor has their
//! metadata, and no `seq` says so": the producer extends it with one RMW
//! per commit, and whoever sets the taken bit first owns the run: the
//! consumer (it reads the run as if its head's `seq` said so) or the
//! producer (`flush`, which then publishes it by the `seq`). The head's
//! `seq` is stored by the producer either way, for a taken run when it
//! learns of the take (its next commit or flush): the consumer maps the
//! descriptors read-only, and only the header page, where the word lives,
//! writable. Zeroed memory (count 0) stages nothing.
//!
//! **No timer.** A staged item is never invisible to a consumer that
//! looks: every poll that stops at the run's head takes it. So nothing
//! waits for a time threshold: a run grows only while the consumer is
//! busy elsewhere, and `max_items` merely bounds it.
//!
//! **Wake-ups.** The word is one more publication under the doorbell's
//! Dekker handshake (`doorbell.rs`): every staging commit stores or RMWs
//! the word and then rings (`ring_bells`: its barrier, then the load of
//! `sleepers`), and the sleeper's re-check is a poll, which loads the word
//! after its announcement and its barrier. With SeqCst fences on both sides
//! either the producer sees the sleeper or the re-check sees the word, as
//! for a `seq` store. With the asymmetric barrier (the producer's compiler
//! fence, the sleeper's membarrier) the case analysis of docs/design.md
//! ("The wake-up handshake") holds word for word with the RMW in place of
//! the `seq` store: the IPI's full barrier on the producer's CPU falls
//! before the RMW (its later load of `sleepers` sees the announcement) or
//! after its load of `sleepers` (the RMW is visible to the re-check). Loom
//! model 14 checks the symmetric form (`loom-tests/tests/staged.rs`).

use crate::error::StreamError;
use crate::protocol::ring::RingMem;
use crate::sync::{AtomicU64, Ordering};

/// Set once the run was taken (by the consumer) or claimed (by the
/// producer's flush): the word then stages nothing.
pub(crate) const TAKEN: u64 = 1 << 63;
/// Bits of the count: a run is at most `MAX_CAPACITY` (2^20) long.
pub(crate) const COUNT_BITS: u32 = 21;
/// Bits of the head kept: positions are compared modulo 2^42, and the
/// consumer's walk and the producer's head are never that far apart (at
/// most a capacity).
pub(crate) const HEAD_BITS: u32 = 42;
/// The longest run the word can stage.
pub(crate) const MAX_COUNT: u64 = (1 << COUNT_BITS) - 1;
const HEAD_MASK: u64 = (1 << HEAD_BITS) - 1;
// A run of a whole ring fits the count, and the three parts the word.
const _: () = assert!(MAX_COUNT >= crate::protocol::layout::MAX_CAPACITY);
const _: () = assert!(COUNT_BITS + HEAD_BITS < 64);

/// The word that stages `n` positions from `head`.
#[inline]
pub(crate) fn pack(head: u64, n: u64) -> u64 {
    debug_assert!((1..=MAX_COUNT).contains(&n));
    (head & HEAD_MASK) << COUNT_BITS | n
}

fn count(word: u64) -> u64 {
    word & MAX_COUNT
}

/// The producer starts a run at `head` (its metadata is in the head's
/// descriptor, its bytes in place). The word is taken (or zero) here, so no
/// consumer CAS can succeed on it: a plain store.
#[inline]
pub(crate) fn start(word: &AtomicU64, head: u64) {
    // Release: pairs with the consumer's Acquire load in `take`: the run's
    // bytes, its head's metadata and its registrations are visible to a
    // consumer that sees the word.
    word.store(pack(head, 1), Ordering::Release);
}

/// The producer adds the position after the `n` staged from `head` (its
/// bytes written, its registration published); false when the consumer
/// took the run first (the word then stays taken, and a new run starts
/// over it).
#[inline]
pub(crate) fn extend(word: &AtomicU64, head: u64, n: u64) -> bool {
    // An RMW, not a store: it learns whether the consumer took the run (the
    // only other change the word sees). Adding 1 to a taken word leaves it
    // taken, so it needs no retry. Release: as in `start`, for the new
    // item's bytes. `--cfg shmstream_weaken="staged_release"` makes it
    // Relaxed to show loom catching it.
    #[cfg(not(shmstream_weaken = "staged_release"))]
    let was = word.fetch_add(1, Ordering::Release);
    #[cfg(shmstream_weaken = "staged_release")]
    let was = word.fetch_add(1, Ordering::Relaxed);
    // Anything but our own untaken run (the consumer's taken bit, or a
    // word a broken consumer wrote) ends the run: a new one is started over
    // it with a store.
    was == pack(head, n)
}

/// The producer claims its run to publish it by the head's `seq` (a
/// flush); false when the consumer took it first.
#[inline]
pub(crate) fn claim(word: &AtomicU64, head: u64, n: u64) -> bool {
    // Relaxed: the `seq` store that follows (Release) carries everything; a
    // consumer that acquires that `seq` then sees this taken bit (it comes
    // earlier in the producer's order), so it never takes the run twice.
    word.compare_exchange(
        pack(head, n),
        pack(head, n) | TAKEN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    )
    .is_ok()
}

/// The consumer's walk stopped at `position`, whose `seq` says it is not
/// published: the `seq` of the run there after all, or `None`. A run staged
/// at `position` is taken (a CAS sets the taken bit) and read as the `seq`
/// that would publish it, so the result is checked like any `seq` by the caller
/// (its count against the capacity, the window and `registered`, its head
/// and span). What only this word can get wrong is checked here, and named:
/// a count of more than `capacity`, past the consumer's window (`limit`)
/// or past `registered` (loaded only when the run reaches past
/// `cached_registered`, as the walk does), a head behind the walk (a run
/// the consumer already has), or ahead of it while `position` stays
/// unpublished. Nothing is taken or stored when a check fails.
#[inline]
pub(crate) fn take(
    mem: &RingMem,
    position: u64,
    limit: u64,
    cached_registered: u64,
) -> Result<Option<u64>, StreamError> {
    // Acquire: pairs with the producer's Release in `start` and `extend`.
    // The common answers (nothing staged: batching off, or the run taken)
    // inline in the walk, the rest out of line.
    let seen = mem.control().staged.load(Ordering::Acquire);
    if seen & TAKEN != 0 || count(seen) == 0 {
        return Ok(None);
    }
    take_staged(mem, position, limit, cached_registered, seen)
}

/// [`take`] of a word `seen` that stages a run.
#[inline(never)]
fn take_staged(
    mem: &RingMem,
    position: u64,
    limit: u64,
    cached_registered: u64,
    mut seen: u64,
) -> Result<Option<u64>, StreamError> {
    let word = &mem.control().staged;
    let capacity = mem.capacity;
    loop {
        let n = count(seen);
        if seen & TAKEN != 0 || n == 0 {
            return Ok(None);
        }
        let ahead = ((seen >> COUNT_BITS) & HEAD_MASK).wrapping_sub(position) & HEAD_MASK;
        if n > capacity || ahead > capacity {
            return Err(StreamError::Corrupt(format!(
                "staged word {seen:#x} (a run of {n} items from position {}) is not a run the consumer at {position} can take: its count must be at most the capacity of {capacity}, its head at most {capacity} past the walk and not behind it",
                if ahead > capacity {
                    position.wrapping_sub(HEAD_MASK + 1 - ahead)
                } else {
                    position + ahead
                },
            )));
        }
        if ahead != 0 {
            // The producer stages a head only when every position before
            // it is published, and the Acquire above made those stores
            // visible: `position` is published now, or the word lies.
            let seq = mem.descriptor(position).seq.load(Ordering::Acquire);
            if seq > position {
                return Ok(Some(seq));
            }
            return Err(StreamError::Corrupt(format!(
                "staged word {seen:#x} stages a run from position {}, past position {position}, whose descriptor is not published (completion sequence {seq}): a run is staged only after every position before it is published",
                position + ahead
            )));
        }
        if n > limit - position {
            return Err(StreamError::Corrupt(format!(
                "staged word {seen:#x} stages a run of {n} items from position {position}, past position {limit} (the consumer's window: released plus the capacity)"
            )));
        }
        if position + n > cached_registered {
            // Acquire: pairs with the producer's Release store of
            // `registered`, which precedes its store of the word anyway.
            let registered = mem.control().registered.load(Ordering::Acquire);
            if position + n > registered {
                return Err(StreamError::Corrupt(format!(
                    "staged word {seen:#x} stages a run of {n} items from position {position}, past the registered count {registered}"
                )));
            }
        }
        // Acquire (success): the run's bytes and metadata, as for the load
        // (the value is the one loaded, so this is not needed for them, but
        // it keeps the take a synchronisation point of its own). Failure:
        // Acquire, the new value is examined as the load's was.
        match word.compare_exchange(seen, seen | TAKEN, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return Ok(Some(position + n)),
            // The producer extended the run (or claimed it): look again.
            Err(now) => seen = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_run_keeps_its_count_and_the_low_bits_of_its_head() {
        let word = pack((1 << HEAD_BITS) + 5, 3);
        assert_eq!(count(word), 3);
        assert_eq!((word >> COUNT_BITS) & HEAD_MASK, 5);
        assert_eq!(word & TAKEN, 0);
        assert_eq!(count(pack(7, MAX_COUNT)), MAX_COUNT);
    }
}
