//! Model 2: slots committed out of order (the third before the second).
//! The consumer never sees an item before every earlier one is complete,
//! and never reads an item's metadata or bytes before its completion is
//! published: ids and bytes are checked, and the chunk's tracked reads of
//! the slots make loom report a read that the commit does not
//! happen-before.
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, check_item, config, id, meta, model};
use shmstream::{
    in_process, in_process_buffer, policy::Fixed, AbandonReason, Producer, StreamError,
};

/// Registers t0, t1, t2, then commits t0, t2, t1.
fn send_out_of_order(producer: &Producer) {
    let slots: Vec<_> = (0..3)
        .map(|i| producer.register_timeout(&id(i), None).unwrap())
        .collect();
    let mut slots = slots.into_iter().map(Some).collect::<Vec<_>>();
    for i in [0, 2, 1] {
        let slot = slots[i].take().unwrap();
        slot.write(meta(), &bytes(i as u64)).unwrap();
    }
}

#[test]
fn out_of_order_commits_reach_chunks_in_stream_order() {
    model(|| {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(4), Fixed::new(1).unwrap()).unwrap();
        let p = thread::spawn(move || {
            send_out_of_order(&producer);
            producer.signal_done();
            producer
        });
        let (mut next, mut finals) = (0, 0);
        while let Some(chunk) = buffer.next_chunk().unwrap() {
            for item in chunk.items() {
                check_item(&item, next);
                next += 1;
            }
            finals += u32::from(chunk.is_final());
        }
        assert_eq!((next, finals), (3, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}

#[test]
fn the_available_prefix_never_skips_an_incomplete_item() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        let p = thread::spawn(move || {
            send_out_of_order(&producer);
            producer
        });
        // Every prefix the consumer is shown must be made of complete items
        // in order: t2 alone (committed before t1) is never in it.
        let mut seen = 0;
        while seen < 3 {
            let available = consumer
                .wait_for(seen + 1 - consumer.position(), None)
                .unwrap();
            assert!(consumer.position() + available <= 3);
            for k in 0..available {
                check_item(&consumer.item(k).unwrap(), consumer.position() + k);
            }
            seen = consumer.position() + available;
            // Keep one item back now and then, so later prefixes start
            // past position 0 with an unreleased item before them.
            consumer.consume(available.min(1));
        }
        drop(p.join().unwrap());
    });
}

/// Spans the descriptor's 32 bytes of reason and the side entry's.
const REASON: &str = "the engine's read failed: transfer status FAILED";

#[test]
fn an_abandoned_slot_is_reported_not_waited_for() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        let p = thread::spawn(move || {
            let t0 = producer.register_timeout(&id(0), None).unwrap();
            let t1 = producer.register_timeout(&id(1), None).unwrap();
            t1.write(meta(), &bytes(1)).unwrap();
            // Given up, with a reason in both the descriptor's words and
            // the side entry's (longer than 32 bytes).
            t0.abandon_with(AbandonReason::new(-1, REASON));
            producer
        });
        match consumer.wait_for(1, None) {
            Err(StreamError::Abandoned {
                position: 0,
                id,
                reason,
            }) => {
                assert_eq!(id, "t0");
                assert_eq!((reason.code(), reason.text()), (-1, REASON));
            }
            other => panic!("expected t0 abandoned, got {other:?}"),
        }
        drop(p.join().unwrap());
    });
}
