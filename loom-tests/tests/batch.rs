//! Model 11: batch publication (issue 14). A batch rings the consumer's
//! doorbell once, after the last completion store of the batch (or of the
//! round that fitted, before the producer sleeps for room). The consumer
//! sleeps in `Consumer::wait_for(.., None)`; a batch whose completions the
//! sleeper's re-check missed and whose one ring missed the sleeper leaves
//! it asleep for ever: a loom deadlock. The producer hands its handle back
//! instead of dropping it (a drop rings unconditionally and would hide a
//! lost wake-up).
//!
//! Items are 64 bytes here (one tracker granule each): `put_many` reserves
//! exactly an item's size, and two items in one granule would look like a
//! race between the producer's write of one and the consumer's read of
//! the other.
//!
//! Teeth: with the `ring_bells()` call of `put_round` (src/batch.rs)
//! removed, the first model deadlocks.
#![cfg(loom)]

use loom::thread;
use loom_tests::{config, model};
use shmstream::{in_process, BatchItem, Consumer, DType, TensorMeta};

const BYTES: usize = 64;

fn item_meta() -> TensorMeta {
    TensorMeta::new(DType::U8, &[BYTES as u64]).unwrap()
}

/// Item `i`'s bytes: `[i + 1; 64]`, never the zeroes of fresh memory.
fn payload(i: u64) -> [u8; BYTES] {
    [i as u8 + 1; BYTES]
}

/// Waits (sleeping) for `n` items one wait at a time and checks each one's
/// position, id and bytes (read under the slot tracker).
fn read(consumer: &mut Consumer, n: u64, ids: &[&str]) {
    while consumer.position() < n {
        let available = consumer.wait_for(1, None).unwrap();
        for k in 0..available {
            let i = consumer.position() + k;
            let item = consumer.item(k).unwrap();
            assert_eq!(item.position(), i);
            assert_eq!(item.id(), ids[i as usize], "id at position {i}");
            assert_eq!(item.bytes(), &payload(i), "bytes at position {i}");
        }
        consumer.consume(available);
    }
}

/// A batch of three in a ring of two: the first round publishes two items
/// and rings once, the producer sleeps for room (on the space bell) while
/// the consumer may sleep for data (on the data bell); the consumer's
/// release wakes the producer, whose second round publishes the third item
/// and rings once more.
#[test]
fn a_consumer_sleeping_for_data_is_woken_by_each_round_of_a_batch() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(2)).unwrap();
        let p = thread::spawn(move || {
            let bytes: Vec<[u8; BYTES]> = (0..3).map(payload).collect();
            let batch: Vec<BatchItem> = bytes
                .iter()
                .map(|b| BatchItem::unnamed(item_meta(), b))
                .collect();
            producer.put_many_timeout(&batch, None).unwrap();
            producer
        });
        read(&mut consumer, 3, &["0", "1", "2"]);
        drop(p.join().unwrap());
    });
}

/// Held slots landed out of order and committed in two batches (t2 and t0,
/// then t1): one ring per batch; the consumer sleeping for the whole
/// prefix is woken by the batch that completes it, and never sees t2 before
/// t1.
#[test]
fn a_consumer_sleeping_for_data_is_woken_by_commit_many() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        let p = thread::spawn(move || {
            let mut slots: Vec<_> = (0..3)
                .map(|i| {
                    let mut slot = producer
                        .register_sized_timeout(&format!("t{i}"), BYTES as u64, None)
                        .unwrap();
                    slot.payload_mut().copy_from_slice(&payload(i));
                    Some(slot)
                })
                .collect();
            let mut batch = Vec::with_capacity(2);
            for i in [2, 0] {
                batch.push((slots[i].take().unwrap(), item_meta()));
            }
            producer.commit_many(&mut batch).unwrap();
            batch.push((slots[1].take().unwrap(), item_meta()));
            producer.commit_many(&mut batch).unwrap();
            drop((batch, slots));
            producer
        });
        read(&mut consumer, 3, &["t0", "t1", "t2"]);
        drop(p.join().unwrap());
    });
}
