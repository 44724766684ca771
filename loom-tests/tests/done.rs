//! Model 5: `signal_done` racing the last commit and the consumer's pop.
//! Whatever the interleaving, the consumer gets every item and exactly one
//! final chunk (possibly an empty one after the last item's chunk), and
//! `next_chunk` then says `None`.
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, check_item, config, id, meta, model, send};
use shmstream::{in_process_buffer, policy::Fixed, StreamBuffer};

/// Pops until `None`; returns (items, final chunks).
fn drain(buffer: &mut StreamBuffer) -> (u64, u32) {
    let (mut next, mut finals) = (0, 0);
    while let Some(chunk) = buffer.next_chunk().unwrap() {
        assert_eq!(finals, 0, "a chunk after the final one");
        for item in chunk.items() {
            check_item(&item, next);
            next += 1;
        }
        finals += u32::from(chunk.is_final());
    }
    assert!(buffer.is_finished());
    (next, finals)
}

#[test]
fn done_after_the_last_commit_gives_one_final_chunk() {
    model(|| {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(4), Fixed::new(1).unwrap()).unwrap();
        let p = thread::spawn(move || {
            send(&producer, 0).unwrap();
            send(&producer, 1).unwrap();
            producer.signal_done();
            producer
        });
        assert_eq!(drain(&mut buffer), (2, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}

#[test]
fn done_before_the_last_commit_gives_one_final_chunk() {
    model(|| {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(4), Fixed::new(1).unwrap()).unwrap();
        let p = thread::spawn(move || {
            send(&producer, 0).unwrap();
            // The last id is registered, then done is said, then its bytes
            // land: the consumer must wait for them, not finish early.
            let last = producer.register_timeout(&id(1), None).unwrap();
            producer.signal_done();
            last.write(meta(), &bytes(1)).unwrap();
            producer
        });
        assert_eq!(drain(&mut buffer), (2, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}
