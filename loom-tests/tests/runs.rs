//! Model 13: descriptor runs (issue 24). A batch of same-shaped items lying
//! back to back is published as one run: the head's descriptor, one
//! Release store of its `seq` (head + count). The consumer sees a run
//! whole or not at all, and reads every item of it (under the slot
//! tracker) only after that one store.
//!
//! Items are 1024 bytes (whole tracker granules, as in `batch.rs`), on the
//! heap ring of 4 slots (no mirror), whose payload is one 4096-byte page.
//!
//! Teeth: both models fail on d3920df, where each item was published by
//! its own store (a consumer could see 1 or 2 items of the 3); with the
//! run's store weakened to Relaxed (`SHMSTREAM_WEAKEN=commit_release
//! scripts/test-loom.sh --test runs`), loom reports the consumer's read of
//! the items' bytes as a causality violation.
#![cfg(loom)]

use loom::thread;
use loom_tests::{config, model};
use shmstream::{in_process, BatchItem, Consumer, DType, TensorMeta};

const BYTES: usize = 1024;

fn item_meta() -> TensorMeta {
    TensorMeta::new(DType::U8, &[BYTES as u64]).unwrap()
}

/// Item `i`'s bytes: `[i + 1; 1024]`, never the zeroes of fresh memory.
fn payload(i: u64) -> [u8; BYTES] {
    [i as u8 + 1; BYTES]
}

/// Puts items `from .. from + n` as one batch.
fn put(producer: &shmstream::Producer, from: u64, n: u64) {
    let bytes: Vec<[u8; BYTES]> = (from..from + n).map(payload).collect();
    let batch: Vec<BatchItem> = bytes
        .iter()
        .map(|b| BatchItem::unnamed(item_meta(), b))
        .collect();
    producer.put_many_timeout(&batch, None).unwrap();
}

/// Waits (sleeping) for the runs of `runs` (their lengths, in order) and
/// checks each look found whole runs only, with each item's id and bytes.
fn read_runs(consumer: &mut Consumer, runs: &[u64]) {
    let mut ends: Vec<u64> = Vec::new();
    let mut end = consumer.position();
    for n in runs {
        end += n;
        ends.push(end);
    }
    while consumer.position() < end {
        let first = consumer.position();
        let available = consumer.wait_for(1, None).unwrap();
        assert!(
            ends.contains(&(first + available)),
            "{available} items from {first}: a run seen in part (runs end at {ends:?})"
        );
        for k in 0..available {
            let item = consumer.item(k).unwrap();
            assert_eq!(item.position(), first + k);
            assert_eq!(item.id(), (first + k).to_string());
            assert_eq!(item.bytes(), &payload(first + k));
        }
        consumer.consume(available);
    }
}

/// One batch of three, one run: the consumer's first look that finds
/// anything finds all three.
#[test]
fn a_run_is_seen_whole_or_not_at_all() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        let p = thread::spawn(move || {
            put(&producer, 0, 3);
            producer
        });
        read_runs(&mut consumer, &[3]);
        drop(p.join().unwrap());
    });
}

/// The ring's page holds four items: two go first (put and consumed
/// before the threads start), then a batch of four whose first two end the
/// page and whose last two start it again, over the bytes the first ones
/// released. The heap ring has no mirror, so the producer splits the batch
/// at the wrap into two runs; each is seen whole.
#[test]
fn a_run_across_the_wrap_is_split_there_and_each_part_seen_whole() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        put(&producer, 0, 2);
        consumer.wait_for(2, None).unwrap();
        consumer.consume(2);
        let p = thread::spawn(move || {
            put(&producer, 2, 4);
            producer
        });
        read_runs(&mut consumer, &[2, 2]);
        drop(p.join().unwrap());
    });
}
