//! The consumer's memory does not grow with the stream: its latency
//! histogram keeps the same buckets however many items it records, and the
//! verifier keeps at most a window of checksums. Checked on structure
//! (sizes of what is kept), not on timing or RSS.

use ipc_demo::item::{fill, seal, write_id};
use ipc_demo::verify::{new_latency_histogram, Verifier, MAX_LATENCY_NS};
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::{DType, StreamConfig, StreamId, TensorMeta};
use std::time::Duration;

#[test]
fn the_latency_histogram_never_grows() {
    let mut h = new_latency_histogram();
    let buckets = h.distinct_values();
    // Values across the whole range and past it (saturated, not resized).
    let mut v = 1u64;
    for i in 0..1_000_000u64 {
        h.saturating_record(v);
        v = v.wrapping_mul(6364136223846793005).wrapping_add(i) % (MAX_LATENCY_NS * 4);
    }
    h.saturating_record(u64::MAX);
    assert_eq!(h.len(), 1_000_001);
    assert_eq!(h.distinct_values(), buckets, "the histogram was resized");
    // A value past the top counts at the top.
    assert!(h.max() >= MAX_LATENCY_NS && h.max() < 2 * MAX_LATENCY_NS);
}

#[test]
fn a_long_stream_leaves_the_verifier_the_size_it_had() {
    let policy: Policy = "sliding:window=28,stride=7".parse().unwrap();
    let config = StreamConfig::new(StreamId {
        request_id: "mem".into(),
        edge_name: "codec_tokens".into(),
        from_partition: "talker".into(),
    })
    .with_capacity(64)
    .with_item_bytes(64)
    .with_timeout(Some(Duration::from_secs(10)));
    let (producer, mut buffer) =
        shmstream::in_process_buffer::<()>(&config, policy.clone()).unwrap();
    let mut verifier = Verifier::new(&policy);
    let buckets = verifier.latencies.distinct_values();
    let meta = TensorMeta::new(DType::I64, &[7]).unwrap();
    let items = 200_000u64;
    let mut id = String::new();
    let mut most_retained = 0;
    let (mut next, mut clock, mut done) = (0u64, 1_000u64, false);
    loop {
        // Fill what the ring has room for, then take what is ready.
        while next < items {
            write_id(&mut id, next);
            let Ok(mut slot) = producer.try_register(&id) else {
                break;
            };
            fill(&mut slot.payload_mut()[..56], next);
            seal(&mut slot.payload_mut()[..56], clock);
            slot.commit(meta).unwrap();
            next += 1;
        }
        if next == items && !done {
            producer.signal_done();
            done = true;
        }
        let Some(chunk) = buffer.next_chunk().unwrap() else {
            break;
        };
        clock += 1_000;
        verifier.check(&chunk, clock).unwrap();
        most_retained = most_retained.max(verifier.retained());
    }
    verifier.finish(policy.continue_after_done()).unwrap();
    assert_eq!(verifier.items(), items);
    assert_eq!(verifier.latencies.len(), items, "one sample per item");
    assert_eq!(
        verifier.latencies.distinct_values(),
        buckets,
        "the histogram grew with the stream"
    );
    assert!(
        most_retained <= policy.max_window(),
        "kept {most_retained} checksums, more than a window"
    );
}
