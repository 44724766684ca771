//! Model 8: the by-id calls never make a second write handle for a live
//! position. The producer holds a `Slot` for `t0` and calls `put("t0")`;
//! `put` must refuse (the id is not pending), because a second handle would
//! commit the position while the first still writes it, and the consumer's
//! read through `Consumer::item` would race that write (loom reports it: the
//! consumer's reads are tracked). A `pre_read_register`ed id is then put by
//! id and read in order.
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, check_item, config, id, meta, model};
use shmstream::{in_process, StreamError};

#[test]
fn put_by_id_never_recreates_a_held_slot() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        let p = thread::spawn(move || {
            let mut held = producer.register_timeout(&id(0), None).unwrap();
            assert_eq!(
                producer.put(&id(0), meta(), &bytes(0)),
                Err(StreamError::UnknownId { id: id(0) })
            );
            held.payload_mut()[..8].copy_from_slice(&bytes(0));
            held.commit(meta()).map_err(|e| e.error).unwrap();
            producer.pre_read_register(&id(1)).unwrap();
            producer.put(&id(1), meta(), &bytes(1)).unwrap();
            producer
        });
        assert_eq!(consumer.wait_for(2, None).unwrap(), 2);
        check_item(&consumer.item(0).unwrap(), 0);
        check_item(&consumer.item(1).unwrap(), 1);
        consumer.consume(2);
        drop(p.join().unwrap());
    });
}

#[test]
fn a_window_read_through_the_consumer_is_not_overwritten() {
    // Reads through `Consumer::window` are tracked too: the producer reuses
    // slot 0 only after the consumer moved past it.
    model(|| {
        let (producer, mut consumer) = in_process(&config(2)).unwrap();
        let p = thread::spawn(move || {
            for i in 0..3 {
                loom_tests::send(&producer, i).unwrap();
            }
            producer
        });
        assert_eq!(consumer.wait_for(2, None).unwrap(), 2);
        let window = consumer.window(0, 2).unwrap();
        assert_eq!(window.shape(), &[2, 8]);
        check_item(&consumer.item(1).unwrap(), 1);
        consumer.consume(2);
        assert!(consumer.wait_for(1, None).unwrap() >= 1);
        check_item(&consumer.item(0).unwrap(), 2);
        consumer.consume(1);
        drop(p.join().unwrap());
    });
}
