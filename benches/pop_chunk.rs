//! Bench 4 of issue 6: the cost of `StreamBuffer::pop_chunk` against the
//! window size (4, 28, 256, 1024 items of one U64 each, a `Fixed` policy,
//! a shared segment of 16384 slots, producer and consumer in this process;
//! the segment's mirror mapping makes every window stackable, also across
//! the wrap). Timed: pop, read the stacked view's
//! shape and first item, drop the chunk (which releases the slots). Not
//! timed: the producer refilling the ring between batches of pops.
//!
//! Three variants: `pop_chunk` also pays the consumer's scan of the newly
//! committed descriptors (what a real consumer pays once per item), and
//! `pop_chunk_prepolled` scans them before the clock starts, so that only
//! the pop itself is timed; `pop_chunk_runs` is `pop_chunk` with the ring
//! refilled by one `put_many` per refill (descriptor runs, issue 24: the
//! scan then checks one descriptor per run, not one per item).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use shmstream::{
    policy::Fixed, BatchItem, DType, Producer, StreamBuffer, StreamConfig, StreamId, TensorMeta,
};
use std::time::{Duration, Instant};

/// Two windows of the largest size: the descriptors and the consumer's
/// metadata copies stay in L2, as with the default capacity of 1024.
// Large enough that even window 1024 pops 16 times per timed batch, so the
// clock reads and the refill do not weigh on the large windows alone.
const CAPACITY: u64 = 16384;
const WINDOWS: [usize; 4] = [4, 28, 256, 1024];

fn pop_chunk(c: &mut Criterion, name: &str, prepoll: bool, batched: bool) {
    let mut group = c.benchmark_group(name);
    for window in WINDOWS {
        let cfg = StreamConfig::new(StreamId {
            request_id: "bench".into(),
            edge_name: "pop".into(),
            from_partition: "chunk".into(),
        })
        .with_capacity(CAPACITY)
        .with_item_bytes(64)
        .with_prefix(&format!("bench-{}-", std::process::id()));
        // Removed from /dev/shm when dropped at the end of this iteration.
        let producer = Producer::create(&cfg).expect("create the segment");
        let mut buffer = StreamBuffer::<()>::open(&cfg, Fixed::new(window).unwrap()).unwrap();
        let meta = TensorMeta::new(DType::U64, &[1]).unwrap();
        let per_fill = CAPACITY / window as u64;
        group.bench_function(BenchmarkId::from_parameter(window), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let pops = left.min(per_fill);
                    if batched {
                        let words: Vec<[u8; 8]> =
                            (0..pops * window as u64).map(|i| i.to_le_bytes()).collect();
                        let items: Vec<BatchItem> =
                            words.iter().map(|w| BatchItem::new("x", meta, w)).collect();
                        producer.put_many(&items).expect("room");
                    } else {
                        for i in 0..pops * window as u64 {
                            let slot = producer.try_register("x").expect("room");
                            slot.write(meta, &i.to_le_bytes()).unwrap();
                        }
                    }
                    if prepoll {
                        buffer.available().unwrap();
                    }
                    let start = Instant::now();
                    for _ in 0..pops {
                        let chunk = buffer.pop_chunk().expect("a full window");
                        let view = chunk.stacked().expect("same-shaped items");
                        black_box((view.shape()[0], view.item(0)));
                    }
                    timed += start.elapsed();
                    left -= pops;
                }
                timed
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    pop_chunk(c, "pop_chunk", false, false);
    pop_chunk(c, "pop_chunk_prepolled", true, false);
    pop_chunk(c, "pop_chunk_runs", false, true);
}

criterion_group!(pop, benches);
criterion_main!(pop);
