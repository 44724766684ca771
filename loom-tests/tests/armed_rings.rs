//! An event loop's wait on a standalone ring (issue 25): the loop looks
//! and arms (`StreamBuffer::look_or_arm` on the data bell,
//! `Producer::room_or_arm` on the space bell) and waits on the bell's
//! futex itself, as an io_uring `FUTEX_WAIT` does, then drops the arm and
//! looks again. A commit or release whose ring misses the announcement
//! leaves it waiting for ever, which loom reports as a deadlock. The
//! publishing side hands its handle back instead of dropping it (a drop
//! wakes the peer unconditionally and would hide a lost wake-up).
#![cfg(loom)]

use loom::thread;
use loom_tests::{check_item, config, model, send};
use shmstream::{in_process_buffer, StreamBuffer};

fn buffer(capacity: u64) -> (shmstream::Producer, StreamBuffer) {
    let policy: shmstream::policy::Policy = "fixed:size=1".parse().unwrap();
    in_process_buffer(&config(capacity), policy).unwrap()
}

#[test]
fn a_buffer_armed_on_its_data_bell_is_woken_by_commits() {
    model(|| {
        let (producer, mut buffer) = buffer(4);
        let p = thread::spawn(move || {
            send(&producer, 0).unwrap();
            send(&producer, 1).unwrap();
            producer
        });
        for i in 0..2 {
            while let Some(wait) = buffer.look_or_arm().unwrap() {
                wait.wait();
            }
            let chunk = buffer.pop_chunk().unwrap();
            check_item(&chunk.item(0).unwrap(), i);
        }
        drop(p.join().unwrap());
    });
}

#[test]
fn a_producer_armed_for_room_is_woken_by_a_release() {
    model(|| {
        let (producer, mut buffer) = buffer(2);
        send(&producer, 0).unwrap();
        send(&producer, 1).unwrap();
        // The consumer never sleeps (it looks and yields), so the only
        // sleeper is the producer's armed wait, on the space bell.
        let c = thread::spawn(move || {
            while !buffer.has_chunk_ready().unwrap() {
                thread::yield_now();
            }
            check_item(&buffer.pop_chunk().unwrap().item(0).unwrap(), 0);
            buffer
        });
        while let Some(wait) = producer.room_or_arm(8).unwrap() {
            wait.wait();
        }
        send(&producer, 2).unwrap();
        drop(c.join().unwrap());
    });
}
