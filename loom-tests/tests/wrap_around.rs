//! Model 3: wrap-around under back-pressure. The consumer holds a chunk
//! that shows the whole ring while the producer keeps trying to register
//! (`try_register` and a yield, never sleeping). No slot a held chunk shows
//! may be written: the producer's tracked write of a slot a chunk still
//! reads is a loom error ("currently reading from cell" or a causality
//! violation).
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, config, drain_holding, id, meta, model};
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
        assert_eq!(drain_holding(&mut buffer), (3, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}
