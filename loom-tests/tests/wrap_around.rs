//! Model 3: wrap-around under back-pressure. The consumer holds a chunk
//! that shows the whole ring while the producer keeps trying to register
//! (`try_register` and a yield, never sleeping). No slot a held chunk shows
//! may be written: the producer's tracked write of a slot a chunk still
//! reads is a loom error ("currently reading from cell" or a causality
//! violation).
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, check_item, config, id, meta, model};
use shmstream::{in_process_buffer, policy::Fixed, StreamError};

#[test]
fn a_full_ring_is_not_overwritten_while_a_chunk_shows_it() {
    model(|| {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(2), Fixed::new(2).unwrap()).unwrap();
        let p = thread::spawn(move || {
            for i in 0..3 {
                let slot = loop {
                    match producer.try_register(&id(i)) {
                        Ok(slot) => break slot,
                        Err(StreamError::Full { capacity: 2, .. }) => thread::yield_now(),
                        Err(e) => panic!("try_register({i}): {e}"),
                    }
                };
                assert_eq!(slot.position(), i);
                slot.write(meta(), &bytes(i)).unwrap();
            }
            producer.signal_done();
            producer
        });
        let (mut next, mut finals) = (0, 0);
        while let Some(chunk) = buffer.next_chunk().unwrap() {
            for (k, item) in chunk.items().enumerate() {
                check_item(&item, next + k as u64);
            }
            // Let the producer run while the chunk is held, then look again.
            thread::yield_now();
            for (k, item) in chunk.items().enumerate() {
                check_item(&item, next + k as u64);
            }
            next += chunk.len() as u64;
            finals += u32::from(chunk.is_final());
        }
        assert_eq!((next, finals), (3, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}
