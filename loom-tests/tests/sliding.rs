//! Model 4: sliding-window release. With windows of 2 items 1 apart on a
//! ring of 2 slots, dropping a chunk releases only the item the stride moved
//! past; the item past the stride is shown again by the next chunk, and
//! its slot is not written before that chunk is dropped. The producer
//! sleeps on the doorbell for space.
#![cfg(loom)]

use loom::thread;
use loom_tests::{check_item, config, model, send};
use shmstream::{in_process_buffer, policy::Sliding};

#[test]
fn items_past_the_stride_stay_readable_until_the_chunk_is_dropped() {
    model(|| {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(2), Sliding::new(2, 1).unwrap()).unwrap();
        let p = thread::spawn(move || {
            for i in 0..4 {
                send(&producer, i).unwrap();
            }
            producer.signal_done();
            producer
        });
        let mut chunks = Vec::new();
        while let Some(chunk) = buffer.next_chunk().unwrap() {
            let start = chunk.start_offset();
            for (k, item) in chunk.items().enumerate() {
                check_item(&item, start + k as u64);
            }
            // The producer may run now; it must not touch these slots.
            thread::yield_now();
            for (k, item) in chunk.items().enumerate() {
                check_item(&item, start + k as u64);
            }
            chunks.push((start, chunk.len(), chunk.context_items(), chunk.is_final()));
        }
        assert_eq!(
            chunks,
            [
                (0, 2, 0, false),
                (1, 2, 1, false),
                (2, 2, 1, false),
                (3, 1, 1, true)
            ],
            "(start, len, context, final) of each chunk"
        );
        drop(p.join().unwrap());
    });
}
