//! Bench 6 of issue 6: heap allocations per item on the hot path, counted
//! by a counting global allocator (a measurement, printed; not timed).
//!
//! Prints one line per path: `BENCH-RESULT alloc <path> <allocations>
//! <items>`. The paths: register + write + commit + poll + item + consume
//! (in-process and on a shared segment), and register + write + commit +
//! `pop_chunk` + `stacked` + drop through a `StreamBuffer` on a segment,
//! and batch publication (issue 14): `put_many` of 64 unnamed items +
//! poll + item + consume, in-process.

use shmstream::{
    in_process, policy::Fixed, BatchItem, Consumer, DType, Producer, StreamBuffer, StreamConfig,
    StreamId, TensorMeta,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ITEMS: u64 = 100_000;
const WARM_UP: u64 = 1_000;

fn config() -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "bench".into(),
        edge_name: "alloc".into(),
        from_partition: "count".into(),
    })
    .with_capacity(1024)
    .with_item_bytes(64)
    .with_prefix(&format!("bench-{}-", std::process::id()))
}

/// Allocations made by `step` over `ITEMS` calls, after `WARM_UP` calls.
fn count(mut step: impl FnMut(u64)) -> u64 {
    for i in 0..WARM_UP {
        step(i);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..ITEMS {
        step(i);
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn consumer_path(producer: &Producer, consumer: &mut Consumer) -> u64 {
    let meta = TensorMeta::new(DType::U64, &[7]).unwrap();
    let record = [7u8; 56];
    count(|_| {
        let slot = producer.register("x").unwrap();
        slot.write(meta, &record).unwrap();
        let n = consumer.poll().unwrap();
        black_box(consumer.item(0).unwrap().bytes()[0]);
        consumer.consume(n);
    })
}

/// One step is one item; every 64th step publishes a batch of 64 unnamed
/// frames with `put_many` and reads them.
fn put_many_path(producer: &Producer, consumer: &mut Consumer) -> u64 {
    let meta = TensorMeta::new(DType::U64, &[7]).unwrap();
    let frames = [[7u8; 56]; 64];
    let batch: [BatchItem; 64] = std::array::from_fn(|i| BatchItem::unnamed(meta, &frames[i]));
    count(|i| {
        if i % 64 == 63 {
            producer.put_many(&batch).unwrap();
            let n = consumer.poll().unwrap();
            black_box(consumer.item(n - 1).unwrap().bytes()[0]);
            consumer.consume(n);
        }
    })
}

fn report(path: &str, allocations: u64) {
    println!("BENCH-RESULT alloc {path} {allocations} {ITEMS}");
    println!(
        "allocations per item, {path}: {} ({allocations} in {ITEMS} items)",
        allocations as f64 / ITEMS as f64
    );
}

fn main() {
    let (producer, mut consumer) = in_process(&config()).unwrap();
    report(
        "in_process_consumer",
        consumer_path(&producer, &mut consumer),
    );

    let (producer, mut consumer) = in_process(&config()).unwrap();
    report(
        "in_process_put_many_64",
        put_many_path(&producer, &mut consumer),
    );

    let cfg = config();
    let producer = Producer::create(&cfg).expect("create a segment");
    match Consumer::open(&cfg) {
        Ok(mut consumer) => report(
            "shared_segment_consumer",
            consumer_path(&producer, &mut consumer),
        ),
        Err(e) => println!("shared_segment_consumer: not measured ({e})"),
    }
    drop(producer);

    let window = 28;
    let cfg = config();
    let producer = Producer::create(&cfg).expect("create a segment");
    let mut buffer = StreamBuffer::<()>::open(&cfg, Fixed::new(window).unwrap()).unwrap();
    let meta = TensorMeta::new(DType::U64, &[7]).unwrap();
    let record = [7u8; 56];
    // One step is one item; every `window`-th step pops a chunk.
    let allocations = count(|i| {
        let slot = producer.register("x").unwrap();
        slot.write(meta, &record).unwrap();
        if i % window as u64 == window as u64 - 1 {
            let chunk = buffer.pop_chunk().unwrap();
            black_box(chunk.stacked().unwrap().shape()[0]);
        }
    });
    report("stream_buffer_pop_chunk_w28", allocations);
}
