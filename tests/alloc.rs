//! The hot path allocates nothing: register, write, commit, poll, read in
//! place, consume, and pop_chunk with its stacked view. Counted with a
//! counting global allocator, on the test's own thread only.

use shmstream::policy::Sliding;
use shmstream::{in_process, in_process_buffer, DType, StreamConfig, StreamId, TensorMeta};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only this test's thread is counted (the harness has threads too).
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn the_item_and_chunk_paths_allocate_nothing() {
    let ids: Vec<String> = (0..4096).map(|i| format!("t{i}")).collect();
    let meta = TensorMeta::new(DType::I64, &[7]).unwrap();
    let frame = [7u8; 56];

    // Items: register, write in place, commit, poll, read, consume.
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(64)
    .with_item_bytes(512);
    let (producer, mut consumer) = in_process(&cfg).unwrap();
    let mut checksum = 0u64;
    let mut round = |range: std::ops::Range<usize>| {
        for id in &ids[range] {
            let mut slot = producer.register(id).unwrap();
            slot.payload_mut()[..56].copy_from_slice(&frame);
            slot.commit(meta).map_err(|e| e.error).unwrap();
            let n = consumer.poll().unwrap();
            let item = consumer.item(n - 1).unwrap();
            checksum += item.bytes()[0] as u64 + item.id().len() as u64;
            consumer.consume(n);
        }
    };
    round(0..64); // warm-up
    let items = allocations_during(|| round(64..4096));
    assert_eq!(items, 0, "allocations on the item path");
    assert!(checksum > 0);

    // Chunks: pop_chunk, stacked view, items, drop (release).
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(1024)
    .with_item_bytes(512);
    let (producer, mut buffer) =
        in_process_buffer::<()>(&cfg, Sliding::new(28, 7).unwrap()).unwrap();
    let mut shown = 0usize;
    let mut run = |range: std::ops::Range<usize>| {
        for id in &ids[range] {
            let slot = producer.register(id).unwrap();
            slot.write(meta, &frame).map_err(|e| e.error).unwrap();
            while buffer.has_chunk_ready().unwrap() {
                let chunk = buffer.pop_chunk().unwrap();
                let view = chunk.stacked().unwrap();
                shown += view.len() + chunk.items().map(|i| i.bytes().len()).sum::<usize>();
            }
        }
    };
    run(0..64); // warm-up
    let chunks = allocations_during(|| run(64..4096));
    assert_eq!(chunks, 0, "allocations on the chunk path");
    assert!(shown > 4000 * 28);
}
