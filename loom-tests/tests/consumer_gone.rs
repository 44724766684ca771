//! Model 7: a side that goes away while the other waits for it. The waiter
//! gets an error (`ConsumerGone`, `ProducerGone`) instead of sleeping for
//! ever, which loom would report as a deadlock.
#![cfg(loom)]

use loom::thread;
use loom_tests::{config, model, send};
use shmstream::{in_process, StreamError};

#[test]
fn a_producer_waiting_on_a_full_ring_sees_the_consumer_go() {
    model(|| {
        let (producer, consumer) = in_process(&config(2)).unwrap();
        let c = thread::spawn(move || drop(consumer));
        // The consumer never releases: at most 2 items fit, the third
        // registration waits, and must end when the consumer is dropped.
        let mut sent = 0;
        let error = loop {
            match send(&producer, sent) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(
            sent <= 2,
            "{sent} items in a ring of 2 that was never released"
        );
        assert!(matches!(error, StreamError::ConsumerGone), "{error:?}");
        c.join().unwrap();
    });
}

#[test]
fn a_producer_waiting_to_drain_sees_the_consumer_go() {
    model(|| {
        let (producer, consumer) = in_process(&config(2)).unwrap();
        let c = thread::spawn(move || drop(consumer));
        match send(&producer, 0) {
            Ok(()) => {}
            Err(StreamError::ConsumerGone) => return c.join().unwrap(),
            Err(e) => panic!("{e}"),
        }
        producer.signal_done();
        assert!(matches!(
            producer.wait_drained(None),
            Err(StreamError::ConsumerGone)
        ));
        c.join().unwrap();
    });
}

#[test]
fn a_consumer_waiting_for_data_sees_the_producer_go() {
    model(|| {
        let (producer, mut consumer) = in_process(&config(2)).unwrap();
        let p = thread::spawn(move || {
            send(&producer, 0).unwrap();
            drop(producer); // without signal_done: the stream is cut short
        });
        // The item sent before the producer left is still delivered; the
        // wait for a second one ends with the producer gone.
        let mut got = 0;
        let error = loop {
            match consumer.wait_for(got + 1, None) {
                Ok(n) => got = n,
                Err(e) => break e,
            }
        };
        assert!(matches!(error, StreamError::ProducerGone), "{error:?}");
        assert_eq!(consumer.available(), 1);
        p.join().unwrap();
    });
}
