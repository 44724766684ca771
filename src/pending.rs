//! The producer's pending ids: `pre_read_register`ed, not yet put, found
//! by id in O(1) (a hash map), whatever the number outstanding.
//!
//! The ring's slot states stay the truth: an entry counts only while its
//! position is `Pending` there. The map is kept in step by the by-id calls
//! (inserted at registration, removed at a successful put), and an entry
//! left behind by any other way out of `Pending` is ignored and replaced.

use crate::protocol::layout::MAX_ID_LEN;
use crate::protocol::ring_producer::Reservation;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// Pending ids and where each one's bytes were reserved.
#[derive(Debug)]
pub(crate) struct PendingIds {
    map: HashMap<IdKey, Reservation, IdHashBuilder>,
}

impl PendingIds {
    pub(crate) fn new() -> Self {
        // Grows with use and never shrinks: a producer that never calls the
        // by-id API holds no table, and a steady stream of by-id calls
        // stops allocating once the table fits its outstanding ids.
        PendingIds {
            map: HashMap::with_hasher(IdHashBuilder::new()),
        }
    }

    /// The entry of `id`, stale or not (the caller checks the ring).
    pub(crate) fn get(&self, id: &[u8]) -> Option<Reservation> {
        self.map.get(id).copied()
    }

    /// Records `id` (checked: 1 to `MAX_ID_LEN` bytes) as pending at
    /// `reservation`, replacing a stale entry of the same id.
    pub(crate) fn insert(&mut self, id: &[u8], reservation: Reservation) {
        self.map.insert(IdKey::new(id), reservation);
    }

    pub(crate) fn remove(&mut self, id: &[u8]) {
        self.map.remove(id);
    }

    /// Entries held (pending ids, and stale ones not yet seen).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// An id inline (no allocation per registration), compared and hashed as
/// its bytes, so a look-up takes a plain `&[u8]`.
#[derive(Clone, Copy)]
struct IdKey {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

impl IdKey {
    fn new(id: &[u8]) -> Self {
        let mut bytes = [0; MAX_ID_LEN];
        bytes[..id.len()].copy_from_slice(id);
        IdKey {
            len: id.len() as u8,
            bytes,
        }
    }
}

impl Borrow<[u8]> for IdKey {
    fn borrow(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        Borrow::<[u8]>::borrow(self) == Borrow::<[u8]>::borrow(other)
    }
}

impl Eq for IdKey {}

impl Hash for IdKey {
    // As `[u8]` hashes: `Borrow` requires a key and its borrowed form to
    // hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        Borrow::<[u8]>::borrow(self).hash(state);
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        String::from_utf8_lossy(Borrow::<[u8]>::borrow(self)).fmt(f)
    }
}

/// Hashes ids 8 bytes at a time with a folded 64x64->128-bit multiply
/// (foldhash's step): five multiplies for a 36-byte uuid, where std's
/// SipHash-1-3 runs a round per 8 bytes and three more to finish. Every step folds the product's high half into the low
/// one, so a difference anywhere in an id reaches the low bits that pick
/// the bucket (FxHash's plain multiply lets differences in high bytes
/// collide there). The seed is random per producer, so which ids collide
/// is not fixed in advance; this is not a keyed MAC, and the ids come from
/// the producer's own caller.
#[derive(Clone, Copy, Debug)]
struct IdHashBuilder {
    seed: u64,
}

impl IdHashBuilder {
    fn new() -> Self {
        IdHashBuilder {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.seed)
    }
}

/// An odd constant with well-spread bits (the fractional part of pi).
const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

#[derive(Debug)]
struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = fold_mul(self.0 ^ word, MULTIPLIER);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(tail);
            self.mix(u64::from_le_bytes(last));
        }
    }

    // The length `[u8]`'s `Hash` writes first: it tells apart ids that
    // differ only by trailing zero bytes (which the tail's padding hides).
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{IdHashBuilder, IdKey, PendingIds};
    use crate::protocol::ring_producer::Reservation;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    fn at(position: u64) -> Reservation {
        Reservation {
            position,
            offset: position * 64,
            len: 64,
        }
    }

    #[test]
    fn an_id_is_found_by_its_bytes_replaced_and_removed() {
        let mut ids = PendingIds::new();
        ids.insert(b"a", at(0));
        ids.insert(b"a\0", at(1));
        assert_eq!(ids.get(b"a"), Some(at(0)));
        assert_eq!(ids.get(b"a\0"), Some(at(1)), "a trailing zero is a byte");
        assert_eq!(ids.get(b"b"), None);
        ids.insert(b"a", at(2));
        assert_eq!(ids.get(b"a"), Some(at(2)));
        ids.remove(b"a");
        assert_eq!(ids.get(b"a"), None);
        assert_eq!(ids.get(b"a\0"), Some(at(1)));
        let longest = [b'x'; crate::protocol::layout::MAX_ID_LEN];
        ids.insert(&longest, at(3));
        assert_eq!(ids.get(&longest), Some(at(3)));
        assert_eq!(format!("{:?}", IdKey::new(b"t7")), "\"t7\"");
    }

    #[test]
    fn the_length_tells_apart_ids_that_differ_by_trailing_zeroes() {
        // The last word is zero-padded: only the length separates these.
        let build = IdHashBuilder::new();
        let hashes: HashSet<u64> = [&b"a"[..], b"a\0", b"a\0\0\0\0\0\0\0"]
            .iter()
            .map(|id| build.hash_one(id))
            .collect();
        assert_eq!(hashes.len(), 3);
    }

    #[test]
    fn ids_that_differ_in_one_byte_anywhere_spread_over_the_low_bits() {
        // uuid-like ids differing in a single byte at each position in
        // turn: the low 16 bits (a bucket index of a 64k table) of their
        // hashes should almost never agree.
        let build = IdHashBuilder::new();
        let base = *b"123e4567-e89b-12d3-a456-426614174000";
        let n = if cfg!(miri) { 4 } else { 64 };
        let mut low = HashSet::new();
        let mut total = 0;
        for pos in 0..base.len() {
            for v in 0..n {
                let mut id = base;
                id[pos] = b'0' + v as u8;
                total += 1;
                low.insert(build.hash_one(&id[..]) & 0xffff);
            }
        }
        // Distinct ids number fewer than `total` (v hits base's own byte);
        // a random 16-bit hash of ~2300 keys leaves ~40 collisions.
        assert!(low.len() * 10 > total * 9, "{} of {total}", low.len());
    }
}
