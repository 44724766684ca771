//! Model 9: back-pressure on payload bytes. The item ring has room for 4
//! items, the payload (4096 bytes, on the heap: no mirror) for only two
//! reservations of 2048 bytes, or two of 1536 (a third would cross the end
//! of the payload and is placed at the start of the next lap instead). The
//! producer sleeps for bytes in `register_sized_timeout(.., None)`; the
//! consumer holds chunks while it reads. A reservation written over bytes a
//! held chunk still shows is a loom error (the reads and writes of every
//! 64-byte granule are tracked), a lost wake-up a deadlock.
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, config, drain_holding, id, meta, model};
use shmstream::{in_process_buffer, policy::Fixed, Producer};

/// Registers item `i` with `len` bytes (waiting for ever) and commits its
/// eight recognisable bytes at the start of the reservation.
fn send_sized(producer: &Producer, i: u64, len: u64) {
    let mut slot = producer.register_sized_timeout(&id(i), len, None).unwrap();
    assert_eq!(slot.position(), i, "positions follow registration order");
    assert_eq!(slot.len(), len);
    slot.payload_mut()[..8].copy_from_slice(&bytes(i));
    slot.commit(meta()).map_err(|e| e.error).unwrap();
}

fn stream_of(len: u64) {
    model(move || {
        let (producer, mut buffer) =
            in_process_buffer::<()>(&config(4), Fixed::new(2).unwrap()).unwrap();
        let p = thread::spawn(move || {
            for i in 0..3 {
                send_sized(&producer, i, len);
            }
            producer.signal_done();
            producer
        });
        assert_eq!(drain_holding(&mut buffer), (3, 1), "(items, final chunks)");
        drop(p.join().unwrap());
    });
}

#[test]
fn a_full_payload_is_not_overwritten_while_a_chunk_shows_it() {
    stream_of(2048);
}

#[test]
fn a_reservation_that_would_cross_the_end_waits_for_the_next_lap() {
    stream_of(1536);
}
