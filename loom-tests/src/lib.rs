//! Helpers shared by the loom models of the shmstream ring, which live in
//! `tests/` and run only when built with `RUSTFLAGS="--cfg loom"`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release --target-dir target-loom
//! ```
//!
//! (or `scripts/test-loom.sh`). Every model runs the library's real protocol
//! code through its public API on a heap-backed ring; under `--cfg loom` the
//! library swaps in loom's atomics, models its futex with a loom mutex and
//! condition variable (no timeout, so a lost wake-up is a deadlock), and
//! tracks every slot's bytes with a loom `UnsafeCell`, so a producer write
//! to a slot that a held chunk shows is reported as a data race.
//!
//! The items the models send are recognisable: item `i` has the id `t{i}`
//! and the eight bytes `[i + 1; 8]` (never zero, the value of fresh memory),
//! so a consumer that reads an item before its completion is published
//! fails a check instead of passing by luck.

#![cfg(loom)]
#![deny(missing_docs, missing_debug_implementations)]

use shmstream::{DType, ItemView, Producer, StreamConfig, StreamError, StreamId, TensorMeta};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set: every
/// model here is written so that 2 already reaches its interesting
/// interleavings, and unbounded exploration would not finish.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// Bytes in each item the models send.
pub const ITEM_BYTES: usize = 8;

/// Runs `f` under loom, bounded by `LOOM_MAX_PREEMPTIONS` or, when that is
/// unset, by [`DEFAULT_PREEMPTIONS`], and prints how many interleavings it
/// explored (seen with `--nocapture`).
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    let bound = builder.preemption_bound;
    // A std atomic on purpose: it counts runs of the model, outside it.
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let started = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "{}: {} interleavings, preemption bound {bound:?}, {:.2?}",
        std::thread::current().name().unwrap_or("model"),
        runs.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// A stream of `capacity` slots that waits for ever (timeouts mean nothing
/// under loom: a wait either ends or loom reports a deadlock). Slots are
/// 1024 bytes, or larger when the ring is smaller than a page (the payload
/// must be a whole number of 4096-byte pages).
pub fn config(capacity: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes((4096 / capacity).max(1024))
    .with_timeout(None)
}

/// The id of item `i`.
pub fn id(i: u64) -> String {
    format!("t{i}")
}

/// The bytes of item `i`: `[i + 1; 8]`, never the zeroes of fresh memory.
pub fn bytes(i: u64) -> [u8; ITEM_BYTES] {
    [i as u8 + 1; ITEM_BYTES]
}

/// The metadata every item carries: eight `u8`.
pub fn meta() -> TensorMeta {
    TensorMeta::new(DType::U8, &[ITEM_BYTES as u64]).expect("a valid shape")
}

/// Registers item `i` (waiting for ever for space) and commits it at once.
///
/// # Errors
///
/// What `register_timeout` returns.
pub fn send(producer: &Producer, i: u64) -> Result<(), StreamError> {
    let slot = producer.register_timeout(&id(i), None)?;
    assert_eq!(slot.position(), i, "positions follow registration order");
    slot.write(meta(), &bytes(i)).map_err(|e| e.error)
}

/// Checks that `item` is item `i`: its id, position, shape and bytes.
///
/// # Panics
///
/// When any of them differs, naming what differs.
pub fn check_item(item: &ItemView<'_>, i: u64) {
    assert_eq!(item.position(), i, "item at the wrong position");
    assert_eq!(item.id(), id(i), "wrong id at position {i}");
    assert_eq!(
        item.shape(),
        &[ITEM_BYTES as u64],
        "wrong shape at position {i}"
    );
    assert_eq!(item.bytes(), &bytes(i), "wrong bytes at position {i}");
}

/// Pops chunks until the stream ends, checking every item twice: when the
/// chunk arrives and again after yielding to the producer while the chunk
/// is held (a write to a slot it shows is a loom error). Returns the items
/// and the final chunks seen.
///
/// # Panics
///
/// When an item is not the one expected at its position.
pub fn drain_holding(buffer: &mut shmstream::StreamBuffer) -> (u64, u32) {
    let (mut next, mut finals) = (0, 0);
    while let Some(chunk) = buffer.next_chunk().unwrap() {
        for (k, item) in chunk.items().enumerate() {
            check_item(&item, next + k as u64);
        }
        // Let the producer run while the chunk is held, then look again.
        loom::thread::yield_now();
        for (k, item) in chunk.items().enumerate() {
            check_item(&item, next + k as u64);
        }
        next += chunk.len() as u64;
        finals += u32::from(chunk.is_final());
    }
    (next, finals)
}
