//! Model 10: the worker hub (issue 12). Two producer threads each create a
//! stream through their own hub attachment (the entry claims race, both
//! announce) and commit into it while the worker sleeps in `wait_any` on
//! the hub's one bell. A lost wake-up leaves the worker asleep for ever (a
//! loom deadlock); a stale read of a stream after its ready bit was taken
//! leaves it too, since the bit is gone. The producers hand their handles
//! back instead of dropping them: a drop rings unconditionally and would
//! hide a lost wake-up.
//!
//! Teeth: `SHMSTREAM_WEAKEN=hub_take_acquire scripts/test-loom.sh --test hub`
//! makes the worker's take of a bitmap word Relaxed; the model then fails
//! with a deadlock (the worker polls the stream without seeing the commit
//! whose bit it took, and sleeps).
#![cfg(loom)]

use loom::thread;
use loom_tests::{bytes, id, meta, model};
use shmstream::policy::Policy;
use shmstream::{StreamConfig, StreamId, StreamSet};

fn config(request: &str) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: request.into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(4)
    .with_item_bytes(1024)
    .with_timeout(None)
}

/// The worker's loop: waits until both streams showed their one item.
fn read_both(set: &mut StreamSet) {
    let mut seen = [false; 2];
    while seen != [true; 2] {
        for key in set.wait_any(None) {
            let buffer = set.get_mut(key).unwrap();
            let which = usize::from(buffer.id().request_id == "b");
            let chunk = buffer.pop_chunk().unwrap();
            let item = chunk.item(0).unwrap();
            assert_eq!(item.id(), id(0));
            assert_eq!(item.bytes(), &bytes(which as u64));
            assert!(!seen[which], "one item per stream");
            seen[which] = true;
        }
    }
}

fn worker() -> StreamSet {
    let policy: Policy = "fixed:size=1".parse().unwrap();
    StreamSet::in_process(64)
        .unwrap()
        .with_default_policy(policy)
}

/// An event loop's wait (issue 25): the worker looks and arms
/// (`look_or_arm`) and waits on the bell's futex itself, as an io_uring
/// `FUTEX_WAIT` does, then drops the arm and looks again. A commit whose
/// ring misses the announcement leaves it waiting for ever (a deadlock).
#[test]
fn a_worker_waiting_on_an_armed_bell_is_woken_by_two_producers() {
    model(|| {
        let mut set = worker();
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let hub = set.hub().unwrap();
                let producer = hub.create_stream(&config(name)).unwrap();
                thread::spawn(move || {
                    let slot = producer.register_timeout(&id(0), None).unwrap();
                    slot.write(meta(), &bytes(i as u64)).unwrap();
                    (hub, producer)
                })
            })
            .collect();
        let mut seen = [false; 2];
        let mut ready = Vec::new();
        while seen != [true; 2] {
            if let Some(wait) = set.look_or_arm(&mut ready) {
                wait.wait();
                continue;
            }
            for &key in &ready {
                let buffer = set.get_mut(key).unwrap();
                let which = usize::from(buffer.id().request_id == "b");
                assert_eq!(
                    buffer.pop_chunk().unwrap().item(0).unwrap().bytes(),
                    &bytes(which as u64)
                );
                assert!(!seen[which], "one item per stream");
                seen[which] = true;
            }
        }
        for p in producers {
            drop(p.join().unwrap());
        }
    });
}

/// Readiness: the streams exist (announced from the worker's thread), two
/// producer threads commit while the worker sleeps in `wait_any`.
#[test]
fn a_worker_sleeping_in_wait_any_is_woken_by_two_producers() {
    model(|| {
        let mut set = worker();
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let hub = set.hub().unwrap();
                let producer = hub.create_stream(&config(name)).unwrap();
                thread::spawn(move || {
                    let slot = producer.register_timeout(&id(0), None).unwrap();
                    slot.write(meta(), &bytes(i as u64)).unwrap();
                    (hub, producer)
                })
            })
            .collect();
        read_both(&mut set);
        for p in producers {
            drop(p.join().unwrap());
        }
    });
}

/// Announcements: two producer threads claim entries (the CAS race),
/// announce and commit at once while the worker sleeps. A larger state
/// space: one preemption (250,220 interleavings and about 7 minutes with
/// two: `SHMSTREAM_LOOM_DEEP=1`).
#[test]
fn two_producers_claim_announce_and_commit_while_the_worker_sleeps() {
    let mut builder = loom::model::Builder::new();
    let deep = std::env::var_os("SHMSTREAM_LOOM_DEEP").is_some();
    builder.preemption_bound = Some(if deep { 2 } else { 1 });
    builder.check(|| {
        let mut set = worker();
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let hub = set.hub().unwrap();
                thread::spawn(move || {
                    let producer = hub.create_stream(&config(name)).unwrap();
                    let slot = producer.register_timeout(&id(0), None).unwrap();
                    slot.write(meta(), &bytes(i as u64)).unwrap();
                    (hub, producer)
                })
            })
            .collect();
        read_both(&mut set);
        for p in producers {
            drop(p.join().unwrap());
        }
    });
}
