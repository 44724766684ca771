//! A run's count and stride (issue 24): items committed together are
//! published by one `seq` word on their head, `head + n`. The word is the
//! other process's, so its count is checked here before anything trusts
//! it; the head's record and the span the run covers are checked with the
//! item's record (`descriptor.rs`).

use crate::error::StreamError;
use crate::protocol::layout::placement_align;

/// The distance between consecutive items of a run whose reservations are
/// `len` bytes each: the producer places each one after the previous,
/// aligned for its size (`None`: a length no producer reserves).
pub(crate) fn run_stride(len: u64) -> Option<u64> {
    let align = placement_align(len);
    Some(len.checked_add(align - 1)? & !(align - 1))
}

/// The number of items of the run published at `position` by a `seq` word,
/// checked before anything trusts it: `None` while the position is not
/// published in this lap (`seq <= position`: never used, or an older
/// lap's run, whose `seq` is at most its head plus `capacity`, at most
/// `position`). A run reaches at most to `end` (the registered count, or
/// the end of the consumer's window: `released + capacity`) and spans at
/// most `capacity` positions.
pub(crate) fn run_count(
    position: u64,
    seq: u64,
    capacity: u64,
    end: u64,
) -> Result<Option<u64>, StreamError> {
    if seq <= position {
        return Ok(None);
    }
    let n = seq - position;
    if n > capacity {
        return Err(StreamError::Corrupt(format!(
            "descriptor of position {position}: completion sequence {seq} claims a run of {n} items, more than the capacity of {capacity}"
        )));
    }
    if n > end.saturating_sub(position) {
        return Err(StreamError::Corrupt(format!(
            "descriptor of position {position}: completion sequence {seq} claims a run of {n} items, past position {end} (registered, and within the consumer's window)"
        )));
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt<T: std::fmt::Debug>(result: Result<T, StreamError>, needle: &str) -> bool {
        match result {
            Err(StreamError::Corrupt(what)) => what.contains(needle),
            other => panic!("{other:?} is not corrupt ({needle})"),
        }
    }

    #[test]
    fn a_run_s_stride_is_its_length_rounded_up_to_its_placement() {
        for (len, stride) in [
            (56, 56),
            (8, 8),
            (12, 16),
            (64, 64),
            (96, 96),
            (36, 40),
            (100, 104),
            (0, 0),
        ] {
            assert_eq!(run_stride(len), Some(stride), "len {len}");
        }
        assert_eq!(run_stride(u64::MAX), None);
        assert_eq!(run_stride(u64::MAX - 6), None);
    }

    #[test]
    fn a_seq_at_most_the_position_is_not_a_run_and_a_count_is_checked_before_use() {
        let cap = 8;
        // Never used, or any older lap's run of this slot: q + m with
        // q = p - k * capacity (k >= 1) and 1 <= m <= capacity.
        let p = 3 * cap + 5;
        assert_eq!(run_count(p, 0, cap, p + cap).unwrap(), None);
        for k in 1..=3 {
            for m in 1..=cap {
                let q = p - k * cap;
                assert_eq!(
                    run_count(p, q + m, cap, p + cap).unwrap(),
                    None,
                    "q {q} m {m}"
                );
            }
        }
        // A run of one, of the capacity, of what is registered.
        assert_eq!(run_count(p, p + 1, cap, p + 1).unwrap(), Some(1));
        assert_eq!(run_count(p, p + cap, cap, p + cap).unwrap(), Some(cap));
        assert_eq!(run_count(p, p + 3, cap, p + 3).unwrap(), Some(3));
        // Lies: past the end (registered or the window), past the capacity.
        assert!(corrupt(
            run_count(p, p + 4, cap, p + 3),
            "descriptor of position 29: completion sequence 33 claims a run of 4 items, past position 32"
        ));
        assert!(corrupt(
            run_count(p, p + cap + 1, cap, u64::MAX),
            "claims a run of 9 items, more than the capacity of 8"
        ));
        assert!(corrupt(
            run_count(p, u64::MAX, cap, u64::MAX),
            "more than the capacity of 8"
        ));
        // An end behind the position (a corrupt registered): no run fits.
        assert!(corrupt(run_count(p, p + 1, cap, p - 1), "past position 28"));
    }
}
