//! Helpers shared by the integration tests: a deterministic item scheme
//! with sequence numbers and checksums, and segment cleanup.
#![allow(dead_code)]

use shmstream::{
    Consumer, DType, Producer, Resource, Slot, StreamConfig, StreamError, StreamId, TensorMeta,
};
use std::time::Duration;

/// SplitMix64: a tiny deterministic generator (no crate needed).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Words of item `seq`: 2 to `max_words`, mixed sizes.
pub fn item_words(seq: u64, max_words: u64) -> u64 {
    2 + mix(seq) % (max_words - 1)
}

/// Fills `out` (whole u64 words) for item `seq`: word 0 is the sequence
/// number, the middle words are derived from it, the last is a checksum.
pub fn fill_item(seq: u64, out: &mut [u8]) {
    let words = out.len() / 8;
    let mut sum = 0u64;
    for w in 0..words {
        let v = if w == 0 {
            seq
        } else if w == words - 1 {
            sum
        } else {
            mix(seq ^ (w as u64) << 40)
        };
        sum = sum.rotate_left(5) ^ v;
        out[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Checks an item's bytes; returns its sequence number.
pub fn check_item(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < 16 || bytes.len() % 8 != 0 {
        return Err(format!("item of {} bytes", bytes.len()));
    }
    let words = bytes.len() / 8;
    let word = |w: usize| u64::from_le_bytes(bytes[w * 8..w * 8 + 8].try_into().unwrap());
    let mut sum = 0u64;
    for w in 0..words - 1 {
        sum = sum.rotate_left(5) ^ word(w);
    }
    if sum != word(words - 1) {
        return Err(format!("checksum mismatch in item {}", word(0)));
    }
    Ok(word(0))
}

/// Writes item `seq` of `words` words into the slot and commits it.
pub fn commit_item(mut slot: Slot<'_>, seq: u64, words: u64) {
    let n = (words * 8) as usize;
    fill_item(seq, &mut slot.payload_mut()[..n]);
    slot.commit(TensorMeta::new(DType::U64, &[words]).unwrap())
        .map_err(|e| e.error)
        .unwrap();
}

/// A unique prefix for this test, so parallel tests never share a segment.
pub fn unique_prefix(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "sst-{tag}-{}-{}-",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes every segment whose name starts with the prefix when dropped,
/// also when the test fails.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Every file with the prefix, whoever owns it (a test may have
        // given one away), not only what `list_segments` shows.
        let Ok(dir) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&self.0) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

pub fn config(prefix: &str, capacity: u64, item_bytes: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "req".into(),
        edge_name: "edge".into(),
        from_partition: "part".into(),
    })
    .with_prefix(prefix)
    .with_capacity(capacity)
    .with_item_bytes(item_bytes)
}

/// Registers `n` items of mixed sizes (up to 64 words) in order and commits
/// them out of order within groups of `reorder` (reversed, then rotated by
/// the group's index), as unordered RDMA completions would land.
pub fn produce_reordered(producer: &Producer, n: u64, reorder: usize) {
    reordered(
        n,
        reorder,
        |s| producer.register(&format!("t{s}")).unwrap(),
        |s, slot| commit_item(slot, s, item_words(s, 64)),
    );
}

/// Registers items `0..n` in order with `register` and commits them with
/// `commit` out of order within groups of `reorder`: each group reversed,
/// then rotated by its index.
pub fn reordered<'p>(
    n: u64,
    reorder: usize,
    mut register: impl FnMut(u64) -> Slot<'p>,
    mut commit: impl FnMut(u64, Slot<'p>),
) {
    let mut seq = 0u64;
    let mut group = Vec::with_capacity(reorder);
    while seq < n {
        let take = (reorder as u64).min(n - seq);
        group.extend((seq..seq + take).map(|s| (s, register(s))));
        group.reverse();
        let rot = (seq as usize / reorder) % group.len();
        group.rotate_left(rot);
        for (s, slot) in group.drain(..) {
            commit(s, slot);
        }
        seq += take;
    }
}

/// Reads until the stream is all in, checking that every item arrives once,
/// in registration order, intact; returns how many arrived.
pub fn consume_in_order(consumer: &mut Consumer, timeout: Duration) -> u64 {
    let mut expected = 0u64;
    loop {
        let available = consumer.wait_for(1, Some(timeout)).unwrap();
        if available == 0 {
            assert!(consumer.is_all_in());
            return expected;
        }
        for i in 0..available {
            let item = consumer.item(i).unwrap();
            assert_eq!(item.id(), format!("t{expected}"));
            assert_eq!(item.shape(), &[item_words(expected, 64)]);
            assert_eq!(check_item(item.bytes()), Ok(expected));
            expected += 1;
        }
        consumer.consume(available);
    }
}

/// Bytes of item `seq` of a mixed-size stream: log-uniform from 0 bytes to
/// 1 MiB (so most items are small and some are large), and 64 MiB for the
/// items whose `seq % huge_every == huge_every / 2` (none when 0).
pub fn sized_len(seq: u64, huge_every: u64) -> u64 {
    if huge_every != 0 && seq % huge_every == huge_every / 2 {
        return 64 << 20;
    }
    let r = mix(seq ^ 0x5eed);
    let bits = r % 21; // 2^0 .. 2^20
    let len = (1u64 << bits) + (r >> 32) % (1u64 << bits);
    // Some empty tensors too.
    if r % 97 == 0 {
        0
    } else {
        len.min(1 << 20)
    }
}

/// The first word of the sized item `seq`; word `w` of the item is this
/// plus `w`, little-endian (a last partial word is cut short). A bijection
/// of `seq`, so no two items share a word pattern: an overlapping or
/// misplaced reservation shows in the very first word it spoils.
fn sized_key(seq: u64) -> u64 {
    mix(seq ^ 0x51ed_da7a)
}

/// Byte `i` of the sized item with `key`: byte `i % 8` of word `i / 8`.
fn sized_byte(key: u64, i: usize) -> u8 {
    key.wrapping_add((i / 8) as u64).to_le_bytes()[i % 8]
}

/// Fills every byte of the sized item `seq` with its word pattern (see
/// [`sized_key`]): cheap enough for a 10^6-item stream (about 120 GB),
/// byte-exact.
pub fn fill_sized(seq: u64, out: &mut [u8]) {
    let key = sized_key(seq);
    if out.as_ptr() as usize % 8 != 0 {
        // Never for a stream's reservation (placed at 8 bytes or more).
        for (i, b) in out.iter_mut().enumerate() {
            *b = sized_byte(key, i);
        }
        return;
    }
    // SAFETY: every bit pattern is a valid u64 and the start is aligned,
    // so the head is empty: word `w` is bytes `8 w ..`.
    let (_, words, tail) = unsafe { out.align_to_mut::<u64>() };
    let mut v = key;
    for word in words.iter_mut() {
        *word = v.to_le();
        v = v.wrapping_add(1);
    }
    tail.copy_from_slice(&v.to_le_bytes()[..tail.len()]);
}

/// Checks the sized item `seq`: its length and every one of its bytes.
pub fn check_sized(seq: u64, huge_every: u64, bytes: &[u8]) -> Result<(), String> {
    let len = sized_len(seq, huge_every);
    if bytes.len() as u64 != len {
        return Err(format!("item {seq}: {} bytes, expected {len}", bytes.len()));
    }
    let key = sized_key(seq);
    let intact = if bytes.as_ptr() as usize % 8 != 0 {
        (0..bytes.len()).all(|i| bytes[i] == sized_byte(key, i))
    } else {
        // SAFETY: as in `fill_sized`.
        let (_, words, tail) = unsafe { bytes.align_to::<u64>() };
        // One pass without a branch: OR of the differences.
        let mut v = key;
        let mut diff = 0u64;
        for word in words {
            diff |= u64::from_le(*word) ^ v;
            v = v.wrapping_add(1);
        }
        diff == 0 && tail == &v.to_le_bytes()[..tail.len()]
    };
    if intact {
        return Ok(());
    }
    let i = (0..bytes.len())
        .find(|&i| bytes[i] != sized_byte(key, i))
        .unwrap_or(bytes.len());
    Err(format!("item {seq}: byte {i} of {len} is wrong"))
}

/// How often a sized producer found the stream full, by resource.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backpressure {
    /// `Full { resource: Items }`: every item slot waited for the consumer.
    pub items: u64,
    /// `Full { resource: PayloadBytes }`: the payload bytes did.
    pub bytes: u64,
}

/// Registers `n` sized items with their sizes and commits them out of
/// order within groups of `reorder` (each group reversed, then rotated by
/// its index, as unordered RDMA completions would land). A 64 MiB item
/// (see [`sized_len`]) is a group of its own: it may take the whole
/// payload, so nothing else may be held with it. Every registration tries
/// first without waiting and counts which resource was short, then waits.
pub fn produce_sized(producer: &Producer, n: u64, huge_every: u64, reorder: usize) -> Backpressure {
    let mut seen = Backpressure::default();
    let mut register = |s: u64| {
        let (id, len) = (format!("t{s}"), sized_len(s, huge_every));
        match producer.try_register_sized(&id, len) {
            Ok(slot) => return slot,
            Err(StreamError::Full { resource, .. }) => match resource {
                Resource::Items => seen.items += 1,
                Resource::PayloadBytes => seen.bytes += 1,
            },
            Err(e) => panic!("item {s}: {e}"),
        }
        producer.register_sized(&id, len).unwrap()
    };
    let huge = |s: u64| sized_len(s, huge_every) == 64 << 20;
    let mut seq = 0u64;
    let mut groups = 0usize;
    let mut group = Vec::with_capacity(reorder);
    while seq < n {
        while seq < n && group.len() < reorder {
            // A 64 MiB item starts a group and ends it.
            let alone = huge(seq);
            if alone && !group.is_empty() {
                break;
            }
            group.push((seq, register(seq)));
            seq += 1;
            if alone {
                break;
            }
        }
        group.reverse();
        let rot = groups % group.len();
        group.rotate_left(rot);
        groups += 1;
        for (s, mut slot) in group.drain(..) {
            fill_sized(s, slot.payload_mut());
            let len = slot.len();
            slot.commit(TensorMeta::new(DType::U8, &[len]).unwrap())
                .map_err(|e| e.error)
                .unwrap();
        }
    }
    seen
}

/// Reads a sized stream until it is all in, checking that every item
/// arrives once, in order, intact (every byte); returns how many arrived.
pub fn consume_sized(consumer: &mut Consumer, huge_every: u64, timeout: Duration) -> u64 {
    let mut expected = 0u64;
    loop {
        let available = consumer.wait_for(1, Some(timeout)).unwrap();
        if available == 0 {
            assert!(consumer.is_all_in());
            return expected;
        }
        // Released one by one, so the producer writes while we check.
        for _ in 0..available {
            let item = consumer.item(0).unwrap();
            assert_eq!(item.id(), format!("t{expected}"));
            assert_eq!(check_sized(expected, huge_every, item.bytes()), Ok(()));
            expected += 1;
            consumer.consume(1);
        }
    }
}
