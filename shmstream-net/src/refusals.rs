//! The receiver's record of refused offers: every refusal counted by the
//! field at fault, and only the first and the last few kept whole, so a
//! peer that sends junk for weeks grows nothing but two counters.

use crate::error::OfferError;
use std::collections::{BTreeMap, VecDeque};

/// Refusals kept whole at each end of the stream: the first this many and
/// the last this many (at most `2 * REFUSAL_SAMPLE` in all, each at most a
/// 64-byte id and a sentence of a few hundred bytes: a few KiB).
pub const REFUSAL_SAMPLE: usize = 16;

/// Offers a receiver refused: counts by field, and a capped sample.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    total: u64,
    // Keys are the `&'static str` field names of `OfferError`: a fixed,
    // small set, whatever the peer sends.
    by_field: BTreeMap<&'static str, u64>,
    first: Vec<OfferError>,
    last: VecDeque<OfferError>,
}

impl Refusals {
    /// Offers refused in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether none was refused.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Offers refused for `field` (`"seq"`, `"id"`, `"magic"`, ...).
    pub fn count(&self, field: &str) -> u64 {
        self.by_field.get(field).copied().unwrap_or(0)
    }

    /// Each field at fault with its count, by name.
    pub fn by_field(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.by_field.iter().map(|(f, n)| (*f, *n))
    }

    /// The refusals kept whole, in the order they happened: the first
    /// [`REFUSAL_SAMPLE`], then the last [`REFUSAL_SAMPLE`] (those between
    /// are only counted, see [`omitted`](Self::omitted)).
    pub fn sample(&self) -> impl Iterator<Item = &OfferError> + '_ {
        self.first.iter().chain(self.last.iter())
    }

    /// Refusals counted but not kept in the sample.
    pub fn omitted(&self) -> u64 {
        self.total - (self.first.len() + self.last.len()) as u64
    }

    pub(crate) fn push(&mut self, e: OfferError) {
        self.total += 1;
        *self.by_field.entry(e.field).or_insert(0) += 1;
        if self.first.len() < REFUSAL_SAMPLE {
            self.first.push(e);
            return;
        }
        if self.last.len() == REFUSAL_SAMPLE {
            self.last.pop_front();
        }
        self.last.push_back(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(i: u64, field: &'static str) -> OfferError {
        OfferError {
            seq: Some(i),
            id: None,
            field,
            detail: format!("number {i}"),
        }
    }

    #[test]
    fn a_million_refusals_keep_the_first_and_last_few_and_count_all() {
        let mut r = Refusals::default();
        let n = 1_000_000u64;
        for i in 0..n {
            r.push(refusal(i, if i % 4 == 0 { "magic" } else { "seq" }));
        }
        assert_eq!(r.total(), n);
        assert_eq!(r.count("magic"), n / 4);
        assert_eq!(r.count("seq"), n - n / 4);
        assert_eq!(r.count("id"), 0);
        assert_eq!(
            r.by_field().collect::<Vec<_>>(),
            [("magic", n / 4), ("seq", n - n / 4)]
        );
        let seqs: Vec<u64> = r.sample().map(|e| e.seq.unwrap()).collect();
        let want: Vec<u64> = (0..REFUSAL_SAMPLE as u64)
            .chain(n - REFUSAL_SAMPLE as u64..n)
            .collect();
        assert_eq!(seqs, want);
        assert_eq!(r.omitted(), n - 2 * REFUSAL_SAMPLE as u64);
    }

    #[test]
    fn a_few_refusals_are_all_kept_in_order() {
        let mut r = Refusals::default();
        assert!(r.is_empty());
        for i in 0..20 {
            r.push(refusal(i, "id"));
        }
        assert!(!r.is_empty());
        let seqs: Vec<u64> = r.sample().map(|e| e.seq.unwrap()).collect();
        assert_eq!(seqs, (0..20).collect::<Vec<_>>());
        assert_eq!(r.omitted(), 0);
    }
}
