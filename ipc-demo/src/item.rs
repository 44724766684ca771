//! The synthetic item: a codec-frame-like tensor whose bytes say which item
//! it is, when it was committed, and whether it arrived intact.
//!
//! For an item of `n` bytes at stream position `seq` (its id is `s<seq>`):
//!
//! | bytes | holds |
//! | --- | --- |
//! | `0..8` | `seq`, little-endian |
//! | `8..16` | CLOCK_MONOTONIC ns just before the commit (when `n >= 24`) |
//! | middle | a fill derived from `seq` |
//! | `n-8..n` | a checksum of bytes `0..n-8` (when `n >= 16`) |
//!
//! Items of fewer than 16 bytes (0 included) are filled entirely from a
//! hash of `seq` and compared whole. Either way a lost, duplicated or
//! reordered item shows as a wrong `seq`, and a corrupted one as a wrong
//! checksum. Any size works the same way, up to the largest: the consumer
//! reads every new item whole (the checksum runs at several GB/s, a 64 MiB
//! item costs milliseconds), so no byte goes unchecked; its length is part
//! of the checksum, and the consumer also compares it with the size the
//! stream's `--sizes` give (the consumer's verifier, `verify`).

/// Bytes an item needs to carry a timestamp.
pub const MIN_TIMESTAMPED: usize = 24;
/// Bytes an item needs to carry a sequence number and a checksum.
const MIN_CHECKSUMMED: usize = 16;

/// The id of the item at `seq`.
pub fn item_id(seq: u64) -> String {
    let mut id = String::new();
    write_id(&mut id, seq);
    id
}

/// Writes the id of the item at `seq` into `id`, replacing what it held
/// (no allocation once `id` has grown).
pub fn write_id(id: &mut String, seq: u64) {
    id.clear();
    id.push('s');
    let mut digits = [0u8; 20];
    let mut n = seq;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    id.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// The stream position an id names, if it is one of ours.
pub fn parse_id(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('s')?;
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// splitmix64: a small deterministic generator, enough for fills and
/// shuffles (no crate needed).
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the deterministic bytes of item `seq` (everything but
/// the timestamp and the checksum, which [`seal`] writes).
pub fn fill(buf: &mut [u8], seq: u64) {
    if buf.len() < MIN_CHECKSUMMED {
        fill_hash(buf, seq);
        return;
    }
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let body_start = if buf.len() >= MIN_TIMESTAMPED { 16 } else { 8 };
    let end = buf.len() - 8;
    fill_hash(&mut buf[body_start..end], seq);
}

fn fill_hash(buf: &mut [u8], seq: u64) {
    let mut rng = SplitMix::new(seq ^ 0x005e_ed0f_f111);
    for chunk in buf.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Writes the commit timestamp `ts` (when the item has room) and the
/// checksum; call it last, just before the commit.
pub fn seal(buf: &mut [u8], ts: u64) {
    if buf.len() < MIN_CHECKSUMMED {
        return;
    }
    if buf.len() >= MIN_TIMESTAMPED {
        buf[8..16].copy_from_slice(&ts.to_le_bytes());
    }
    let end = buf.len() - 8;
    let sum = checksum(&buf[..end]);
    buf[end..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks that `buf` is item `seq`, intact; returns its commit timestamp
/// when it carries one.
///
/// # Errors
///
/// A sentence naming what is wrong: the sequence number or the checksum.
pub fn verify(buf: &[u8], seq: u64) -> Result<Option<u64>, String> {
    if buf.len() < MIN_CHECKSUMMED {
        let mut expected = [0u8; MIN_CHECKSUMMED];
        fill_hash(&mut expected[..buf.len()], seq);
        return if buf == &expected[..buf.len()] {
            Ok(None)
        } else {
            Err(format!(
                "item {seq}: its {} bytes are not those of item {seq}",
                buf.len()
            ))
        };
    }
    let found = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    if found != seq {
        return Err(format!(
            "item {seq}: found the bytes of item {found} in its place"
        ));
    }
    let end = buf.len() - 8;
    let stored = u64::from_le_bytes(buf[end..].try_into().expect("8 bytes"));
    if stored != checksum(&buf[..end]) {
        return Err(format!(
            "item {seq}: its checksum does not match its bytes (corrupted)"
        ));
    }
    Ok((buf.len() >= MIN_TIMESTAMPED)
        .then(|| u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"))))
}

/// A quick check that `buf` still holds item `seq` as it was verified:
/// its sequence number and stored checksum (or, for small items, its
/// bytes). For items shown again as context: a slot reused too early
/// holds another item.
///
/// # Errors
///
/// As [`verify`].
pub fn still(buf: &[u8], seq: u64, checksum_seen: u64) -> Result<(), String> {
    if buf.len() < MIN_CHECKSUMMED {
        return verify(buf, seq).map(|_| ());
    }
    let found = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let stored = u64::from_le_bytes(buf[buf.len() - 8..].try_into().expect("8 bytes"));
    if found != seq || stored != checksum_seen {
        return Err(format!(
            "item {seq}: its slot changed while a chunk showed it (now holds item {found})"
        ));
    }
    Ok(())
}

/// The stored checksum of a verified item of at least 16 bytes (0 for
/// smaller ones).
pub fn stored_checksum(buf: &[u8]) -> u64 {
    if buf.len() < MIN_CHECKSUMMED {
        return 0;
    }
    u64::from_le_bytes(buf[buf.len() - 8..].try_into().expect("8 bytes"))
}

/// A 64-bit checksum, eight bytes at a time.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x0100_0000_01b3);
        h = h.rotate_left(23);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix(h ^ u64::from_le_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_round_trips_and_detects_a_swap_and_a_flip() {
        for n in [1usize, 7, 15, 16, 23, 24, 56, 100, 4096, 65536 + 3, 1 << 21] {
            let mut a = vec![0u8; n];
            fill(&mut a, 41);
            seal(&mut a, 123_456);
            let ts = verify(&a, 41).unwrap();
            assert_eq!(ts, (n >= MIN_TIMESTAMPED).then_some(123_456));
            assert!(verify(&a, 42).is_err(), "size {n}: a reordered item passes");
            let mut b = a.clone();
            b[n / 2] ^= 0x10;
            assert!(verify(&b, 41).is_err(), "size {n}: a flipped bit passes");
        }
    }

    #[test]
    fn an_empty_item_verifies_and_sizes_are_part_of_the_checksum() {
        let empty: [u8; 0] = [];
        fill(&mut [], 3);
        assert_eq!(verify(&empty, 3), Ok(None));
        assert_eq!(stored_checksum(&empty), 0);
        // The same bytes cut shorter: the checksum covers the length, so a
        // truncated item does not pass as another size.
        let mut a = vec![0u8; 64];
        fill(&mut a, 9);
        seal(&mut a, 1);
        let mut b = a[..56].to_vec();
        b[48..].copy_from_slice(&a[56..]);
        assert!(verify(&b, 9).is_err());
        // A flip far into a large item is found: every byte is checked.
        let mut big = vec![0u8; 3 << 20];
        fill(&mut big, 4);
        seal(&mut big, 5);
        big[(3 << 20) - 100] ^= 1;
        assert!(verify(&big, 4).is_err());
    }

    #[test]
    fn ids_parse_back() {
        for seq in [0, 7, 10, 1234, u64::MAX] {
            assert_eq!(item_id(seq), format!("s{seq}"));
            assert_eq!(parse_id(&item_id(seq)), Some(seq));
        }
        assert_eq!(parse_id("s01"), None);
        assert_eq!(parse_id("t1"), None);
    }
}
