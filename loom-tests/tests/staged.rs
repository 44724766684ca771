//! Model 14: adaptive batching on the producer (issue 24,
//! `src/protocol/staged.rs`). With batching on, one-by-one commits that
//! continue the producer's run are *staged* in the control block's
//! `staged` word (one RMW each) instead of published by their head's
//! `seq`; the consumer takes the run (a CAS) where its walk stops. No timer
//! and no flush is needed for a consumer to see an item: each commit rings,
//! and a consumer that looks (the sleeper's re-check included) takes what
//! is staged.
//!
//! The consumer sleeps in `Consumer::wait_for(1, None)` (no timeout under
//! loom: a lost wake-up is a deadlock) and reads every item under the slot
//! tracker, so a take that does not order the item's bytes before the
//! read is a loom causality error. The producer hands its handle back
//! instead of dropping it (a drop flushes and wakes unconditionally, which
//! would hide a lost wake-up or an item visible only through a flush).
//!
//! Teeth: both fail to build on fd42387 (no `set_batching`); with the
//! extension's RMW weakened to Relaxed (`SHMSTREAM_WEAKEN=staged_release
//! scripts/test-loom.sh --test staged`) loom reports the consumer's read
//! of a staged item's bytes as a causality violation; with the handshake's
//! fence weakened (`SHMSTREAM_WEAKEN=wake_seqcst`) the sleeping consumer
//! deadlocks.
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, check_item, config, id, model, send};
use shmstream::{in_process, Consumer, DType, TensorMeta};

/// Item 2's other shape: the same eight bytes as four u16.
fn other_meta() -> TensorMeta {
    TensorMeta::new(DType::U16, &[4]).unwrap()
}

/// Waits (sleeping) until `n` items were seen, each once and in order:
/// item 2 with `other_shape`'s metadata when asked, the others as
/// `check_item` wants them.
fn read_all(consumer: &mut Consumer, n: u64, other_shape: bool) {
    let mut next = 0;
    while next < n {
        let available = consumer.wait_for(1, None).unwrap();
        assert!(next + available <= n, "more items than were sent");
        for k in 0..available {
            let item = consumer.item(k).unwrap();
            if other_shape && next + k == 2 {
                assert_eq!(item.position(), 2);
                assert_eq!(item.id(), id(2));
                assert_eq!((item.dtype(), item.shape()), (DType::U16, &[4u64][..]));
                assert_eq!(item.bytes(), &bytes(2));
            } else {
                check_item(&item, next + k);
            }
        }
        consumer.consume(available);
        next += available;
    }
}

/// Two items extend one staged run while the consumer polls and sleeps
/// (it may take the run after the first, then the second starts a new
/// one), then an item of another shape breaks the run: the held run is
/// published by its `seq` (or was taken), and the new item is staged and
/// never flushed. Every item is seen exactly once, in order, with its
/// metadata and bytes, and the consumer is woken for the last one.
#[test]
fn staged_items_are_seen_once_in_order_and_the_sleeping_consumer_wakes() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        producer.set_batching(Some(4));
        let p = thread::spawn(move || {
            send(&producer, 0).unwrap();
            send(&producer, 1).unwrap();
            let slot = producer.register_timeout(&id(2), None).unwrap();
            slot.write(other_meta(), &bytes(2)).unwrap();
            producer
        });
        read_all(&mut consumer, 3, true);
        drop(p.join().unwrap());
    });
}

/// The consumer takes while the producer extends and then flushes: the
/// take's CAS races the extension's RMW and the flush's claim. Whoever
/// wins, every item is seen once.
#[test]
fn the_consumer_takes_while_the_producer_extends_and_flushes() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        producer.set_batching(Some(4));
        let p = thread::spawn(move || {
            for i in 0..3 {
                send(&producer, i).unwrap();
            }
            producer.flush();
            producer
        });
        read_all(&mut consumer, 3, false);
        drop(p.join().unwrap());
    });
}
