//! Hostile or corrupted hub memory: an outside writer (its own open file
//! description of the hub, as another process of the same user would have)
//! puts arbitrary values into a live worker hub: bitmaps, entry states
//! (published entries that name any producer slot, epoch and generation),
//! identity lengths and text, producer epochs, the bell. The worker keeps
//! working: no panic, no read outside the hub, no hang; a bogus
//! announcement is at worst an adoption error.
//!
//! `SHMSTREAM_HUB_HOSTILE_CASES` cases (default 2 000).

mod common;

use common::{commit_item, unique_prefix, Cleanup};
use proptest::prelude::*;
use shmstream::{hub_name, Hub, Producer, StreamConfig, StreamId, StreamSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

// Offsets of docs/design.md, "The worker hub", for a hub of 64 entries.
const BELL: u64 = 1024;
const PRODUCERS: u64 = 1152;
const READY: u64 = 4096;
const ANNOUNCE: u64 = 4096 + 128;
const ENTRIES: u64 = 4096 + 256;
const ENTRY_BYTES: u64 = 512;
const TOTAL: u64 = 40960;
const LENS: u64 = 12;
const TEXT: u64 = 32;

/// Anything slower than this counts as a hang.
const HANG: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
enum Write {
    Ready(u64),
    Announce(u64),
    /// An entry's state word from its parts: kind, slot, epoch, generation.
    State(u64, u64, u64, u64, u64),
    Len(u64, u64, u32),
    Text(u64, u64, u64),
    Epoch(u64, u32),
    Bell(u64, u32),
    Anywhere(u64, u64),
    /// A well-formed identity (of no stream, or of the good one).
    Identity(u64, bool),
}

fn write() -> impl Strategy<Value = Write> {
    // Mostly the first entries, so states, lengths and text meet.
    let e = || prop_oneof![0..4u64, 0..64u64];
    prop_oneof![
        any::<u64>().prop_map(Write::Ready),
        any::<u64>().prop_map(Write::Announce),
        (e(), 0..4u64, 0..70u64, 0..4u64, 0..4u64)
            .prop_map(|(e, k, s, ep, g)| Write::State(e, k, s, ep, g)),
        (
            e(),
            0..4u64,
            prop_oneof![0..40u32, 100..130u32, any::<u32>()]
        )
            .prop_map(|(e, k, v)| Write::Len(e, k, v)),
        (e(), 0..60u64, any::<u64>()).prop_map(|(e, w, v)| Write::Text(e, w, v)),
        (0..64u64, any::<u32>()).prop_map(|(s, v)| Write::Epoch(s, v)),
        (0..2u64, any::<u32>()).prop_map(|(k, v)| Write::Bell(k, v)),
        (0..TOTAL / 8, any::<u64>()).prop_map(|(w, v)| Write::Anywhere(w * 8, v)),
        (e(), any::<bool>()).prop_map(|(e, good)| Write::Identity(e, good)),
    ]
}

/// The outside writer.
struct Poker(File, String);

impl Poker {
    fn at(&self, offset: u64, bytes: &[u8]) {
        self.0.write_all_at(bytes, offset).unwrap();
    }

    fn apply(&self, w: &Write) {
        let entry = |e: u64| ENTRIES + e * ENTRY_BYTES;
        match *w {
            Write::Ready(v) => self.at(READY, &v.to_ne_bytes()),
            Write::Announce(v) => self.at(ANNOUNCE, &v.to_ne_bytes()),
            Write::State(e, kind, slot, epoch, gen) => {
                let v = kind | slot << 8 | epoch << 16 | gen << 32;
                self.at(entry(e), &v.to_ne_bytes());
                // Announce it, so the worker looks.
                self.at(ANNOUNCE, &(1u64 << e).to_ne_bytes());
            }
            Write::Len(e, k, v) => self.at(entry(e) + LENS + 4 * k, &v.to_ne_bytes()),
            Write::Text(e, w, v) => self.at(entry(e) + TEXT + 8 * w, &v.to_ne_bytes()),
            Write::Epoch(s, v) => self.at(PRODUCERS + 8 * s, &v.to_ne_bytes()),
            Write::Bell(k, v) => self.at(BELL + 4 * k, &v.to_ne_bytes()),
            Write::Anywhere(offset, v) => self.at(offset, &v.to_ne_bytes()),
            Write::Identity(e, good) => {
                let request = if good { "good" } else { "bogus" };
                let fields = [self.1.as_str(), request, "e", "p"];
                for (k, (text, at)) in fields.iter().zip([0u64, 32, 152, 272]).enumerate() {
                    self.at(
                        entry(e) + LENS + 4 * k as u64,
                        &(text.len() as u32).to_ne_bytes(),
                    );
                    self.at(entry(e) + TEXT + at, text.as_bytes());
                }
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("SHMSTREAM_HUB_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn hostile_hub_writes_never_break_the_worker() {
    let prefix = unique_prefix("hubh");
    let _cleanup = Cleanup(prefix.clone());
    let set: StreamSet = StreamSet::create_with_entries("w", &prefix, 64)
        .unwrap()
        .with_default_policy("fixed:size=1".parse().unwrap());
    let poker = Poker(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm{}", hub_name("w", &prefix).unwrap()))
            .unwrap(),
        prefix.clone(),
    );
    assert_eq!(
        poker.0.metadata().unwrap().len(),
        TOTAL,
        "the offsets above"
    );
    let hub = Hub::attach("w", &prefix).unwrap();
    let cfg = StreamConfig::new(StreamId {
        request_id: "good".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_prefix(&prefix)
    .with_capacity(8)
    .with_item_bytes(512);
    let producer: Producer = hub.create_stream(&cfg).unwrap();
    // `run` takes an `Fn`: the state the cases share sits in cells.
    let set = std::cell::RefCell::new(set);
    let seq = std::cell::Cell::new(0u64);
    let adopted_errors = std::cell::Cell::new(0usize);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = proptest::collection::vec(write(), 1..12);
    runner
        .run(&strategy, |writes| {
            let mut set = set.borrow_mut();
            if let Ok(slot) = producer.try_register(&format!("t{}", seq.get())) {
                commit_item(slot, seq.get(), 8);
                seq.set(seq.get() + 1);
            }
            for w in &writes {
                poker.apply(w);
            }
            let start = Instant::now();
            for _ in 0..2 {
                for key in set.wait_any(Some(Duration::from_millis(1))) {
                    if let Some(buffer) = set.get_mut(key) {
                        // Chunks, errors, the end: whatever it says, it
                        // says it without a crash.
                        let _ = buffer.next_chunk_timeout(Some(Duration::ZERO));
                    }
                }
            }
            adopted_errors.set(adopted_errors.get() + set.take_adopt_errors().len());
            prop_assert!(start.elapsed() < HANG, "the worker hung");
            // Streams adopted from bogus announcements are dropped again.
            for key in set.keys() {
                if set.get(key).is_some_and(|b| b.request_id() != "good") {
                    set.remove(key);
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "{} cases, {} bogus announcements refused, {} items sent",
        cases(),
        adopted_errors.get(),
        seq.get()
    );
}
