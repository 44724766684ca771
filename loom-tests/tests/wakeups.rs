//! Model 6: wake-ups in both directions. Each side sleeps on its doorbell
//! (under loom a mutex and a condition variable with no timeout) while the
//! other publishes; a lost wake-up leaves it asleep for ever, which loom
//! reports as a deadlock. The publishing side hands its handle back instead
//! of dropping it, because dropping a handle wakes the peer unconditionally
//! and would hide the lost wake-up.
#![cfg(loom)]

use loom::thread;
use loom_tests::{check_item, config, model, send};
use shmstream::in_process;

#[test]
fn a_consumer_waiting_for_data_is_woken_by_commits() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(4)).unwrap();
        // The producer never waits (the ring has room), so the only sleeper
        // is the consumer, on the data bell.
        let p = thread::spawn(move || {
            send(&producer, 0).unwrap();
            send(&producer, 1).unwrap();
            producer
        });
        for i in 0..2 {
            assert!(consumer.wait_for(1, None).unwrap() >= 1);
            check_item(&consumer.item(0).unwrap(), i);
            consumer.consume(1);
        }
        drop(p.join().unwrap());
    });
}

#[test]
fn a_producer_waiting_for_space_is_woken_by_releases() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(2)).unwrap();
        // The consumer never sleeps (it polls and yields), so the only
        // sleeper is the producer, on the space bell.
        let c = thread::spawn(move || {
            while consumer.poll().unwrap() == 0 {
                thread::yield_now();
            }
            check_item(&consumer.item(0).unwrap(), 0);
            consumer.consume(1);
            consumer
        });
        for i in 0..3 {
            send(&producer, i).unwrap(); // the third waits for the release
        }
        drop(c.join().unwrap());
    });
}
