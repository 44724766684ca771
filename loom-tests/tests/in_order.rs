//! Model 1: ids registered and committed in order reach the consumer as an
//! in-order prefix, each with its own bytes, through a sleeping
//! `next_chunk`.
#![cfg(loom)]

use loom::thread;
use loom_tests::{check_item, config, model, send};
use shmstream::{in_process_buffer, policy::Fixed};

#[test]
fn consumer_sees_in_order_commits_in_order() {
    model(|| {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(4), Fixed::new(1).unwrap()).unwrap();
        let p = thread::spawn(move || {
            for i in 0..2 {
                send(&producer, i).unwrap();
            }
            producer.signal_done();
            // Handed back, not dropped: dropping wakes the consumer
            // unconditionally, which would hide a lost wake-up.
            producer
        });
        let (mut next, mut finals) = (0, 0);
        while let Some(chunk) = buffer.next_chunk().unwrap() {
            assert_eq!(chunk.start_offset(), next, "chunks follow the stream");
            for item in chunk.items() {
                check_item(&item, next);
                next += 1;
            }
            finals += u32::from(chunk.is_final());
        }
        assert_eq!((next, finals), (2, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}
