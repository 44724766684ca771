//! Batch publication (issue 14): `put_many`, `commit_many` and
//! `put_in_place_many` publish in order up to the first bad item, leave the
//! stream intact, wait for room between rounds, and announce every batch
//! (to a stream's consumer and to a worker hub). Heap-backed under Miri
//! (`scripts/test-miri.sh` runs it, counts scaled down).

#![cfg(not(loom))]

use shmstream::policy::Policy;
use shmstream::{
    in_process, BatchItem, DType, StreamConfig, StreamError, StreamId, StreamSet, TensorMeta,
    MAX_ID_LEN,
};
use std::thread;
use std::time::Duration;

/// A wait that ends only by timing out is a lost wake-up: fail, not hang.
const PATIENCE: Option<Duration> = Some(Duration::from_secs(60));

fn cfg(capacity: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "batch".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(64)
    .with_timeout(PATIENCE)
}

/// 7 x i64: a codec frame.
fn frame_meta() -> TensorMeta {
    TensorMeta::new(DType::I64, &[7]).unwrap()
}

/// The frame of item `i`: its first word is `i`, the rest `i + 1`.
fn frame(i: u64) -> [u8; 56] {
    let mut f = [(i + 1) as u8; 56];
    f[..8].copy_from_slice(&i.to_le_bytes());
    f
}

#[test]
fn put_many_publishes_every_item_in_order_with_its_id_meta_and_bytes() {
    let (producer, mut consumer) = in_process(&cfg(16)).unwrap();
    let frames: Vec<[u8; 56]> = (0..5).map(frame).collect();
    let scalar = TensorMeta::new(DType::U8, &[3]).unwrap();
    let batch = [
        BatchItem::new("a", frame_meta(), &frames[0]),
        BatchItem::unnamed(frame_meta(), &frames[1]),
        BatchItem::new("c", scalar, b"xyz"),
        BatchItem::unnamed(frame_meta(), &frames[3]),
        BatchItem::new("e", TensorMeta::new(DType::F32, &[0]).unwrap(), &[]),
    ];
    producer.put_many(&batch).unwrap();
    assert_eq!(producer.registered(), 5);
    assert_eq!(consumer.poll().unwrap(), 5);
    let ids: Vec<String> = (0..5)
        .map(|i| consumer.item(i).unwrap().id().to_string())
        .collect();
    // Unnamed items are named by their stream position.
    assert_eq!(ids, ["a", "1", "c", "3", "e"]);
    for i in [0, 1, 3] {
        let item = consumer.item(i).unwrap();
        assert_eq!(item.bytes(), &frames[i as usize]);
        assert_eq!(item.shape(), &[7]);
    }
    assert_eq!(consumer.item(2).unwrap().bytes(), b"xyz");
    assert_eq!(consumer.item(4).unwrap().shape(), &[0]);
    assert!(consumer.item(4).unwrap().bytes().is_empty());
    // A second batch continues the stream: positions and unnamed ids too.
    consumer.consume(5);
    producer
        .put_many(&[BatchItem::unnamed(frame_meta(), &frames[4])])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().id(), "5");
    assert_eq!(consumer.item(0).unwrap().position(), 5);
}

#[test]
fn an_empty_batch_publishes_nothing() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    producer.put_many(&[]).unwrap();
    let mut none = Vec::new();
    producer.commit_many(&mut none).unwrap();
    producer.put_in_place_many(&[]).unwrap();
    assert_eq!(producer.registered(), 0);
    assert_eq!(consumer.poll().unwrap(), 0);
}

#[test]
fn same_shaped_frames_of_a_batch_stack_into_one_window() {
    let (producer, mut consumer) = in_process(&cfg(64)).unwrap();
    let frames: Vec<[u8; 56]> = (0..28).map(frame).collect();
    let batch: Vec<BatchItem> = frames
        .iter()
        .map(|f| BatchItem::unnamed(frame_meta(), f))
        .collect();
    producer.put_many(&batch).unwrap();
    assert_eq!(consumer.poll().unwrap(), 28);
    let window = consumer.window(0, 28).unwrap();
    assert_eq!(window.shape(), &[28, 7]);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(window.item(i).unwrap(), &f[..]);
    }
}

/// Bad item at index 2: the two before it are published, it and the rest
/// are not registered, the error names the index, the field and the
/// limit, and the stream goes on.
fn check_stops_at_index_2(bad: BatchItem<'_>, expected: StreamError, words: &[&str]) {
    let (producer, mut consumer) = in_process(&cfg(16)).unwrap();
    let (f0, f1, f3) = (frame(0), frame(1), frame(3));
    let batch = [
        BatchItem::new("t0", frame_meta(), &f0),
        BatchItem::new("t1", frame_meta(), &f1),
        bad,
        BatchItem::new("t3", frame_meta(), &f3),
    ];
    let err = producer.put_many(&batch).unwrap_err();
    assert_eq!(err.index, 2);
    assert_eq!(err.error, expected);
    // The inner error is its source, for `?` chains and reporters.
    let source = std::error::Error::source(&err).expect("a source");
    assert_eq!(source.to_string(), expected.to_string());
    let message = err.to_string();
    assert!(message.starts_with("item 2 of the batch: "), "{message}");
    for word in words {
        assert!(message.contains(word), "{message:?} lacks {word:?}");
    }
    assert_eq!(producer.registered(), 2, "the rest is not registered");
    assert_eq!(
        consumer.poll().unwrap(),
        2,
        "the items before it are published"
    );
    assert_eq!(consumer.item(1).unwrap().bytes(), &f1);
    // The stream is intact: resume from the failed index with good input.
    let good = frame(2);
    let mut rest = batch;
    rest[2] = BatchItem::new("t2", frame_meta(), &good);
    producer.put_many(&rest[2..]).unwrap();
    assert_eq!(consumer.poll().unwrap(), 4);
    assert_eq!(consumer.item(2).unwrap().id(), "t2");
    assert_eq!(consumer.item(3).unwrap().bytes(), &f3);
}

#[test]
fn bytes_that_disagree_with_the_meta_stop_the_batch_at_that_item() {
    let short = [0u8; 48];
    check_stops_at_index_2(
        BatchItem::new("t2", frame_meta(), &short),
        StreamError::SizeMismatch {
            given: 48,
            expected: 56,
        },
        &["48 bytes", "56"],
    );
}

#[test]
fn an_id_too_long_stops_the_batch_at_that_item() {
    let long = "x".repeat(MAX_ID_LEN + 1);
    let f = frame(2);
    check_stops_at_index_2(
        BatchItem::new(&long, frame_meta(), &f),
        StreamError::BadId {
            len: MAX_ID_LEN + 1,
            max: MAX_ID_LEN,
        },
        &["1 to 64 bytes", "65"],
    );
    check_stops_at_index_2(
        BatchItem::new("", frame_meta(), &f),
        StreamError::BadId {
            len: 0,
            max: MAX_ID_LEN,
        },
        &["1 to 64 bytes"],
    );
}

#[test]
fn an_item_larger_than_the_payload_stops_the_batch_at_that_item() {
    // cfg(16) x 64 bytes: a 4096-byte payload (a page at least).
    let big = vec![0u8; 8192];
    check_stops_at_index_2(
        BatchItem::new("t2", TensorMeta::new(DType::U8, &[8192]).unwrap(), &big),
        StreamError::ExceedsPayload {
            nbytes: 8192,
            payload_bytes: 4096,
        },
        &["8192 bytes", "4096"],
    );
}

#[test]
fn a_full_ring_with_no_wait_publishes_what_fits_and_times_out_at_the_next() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    let frames: Vec<[u8; 56]> = (0..6).map(frame).collect();
    let batch: Vec<BatchItem> = frames
        .iter()
        .map(|f| BatchItem::unnamed(frame_meta(), f))
        .collect();
    let err = producer
        .put_many_timeout(&batch, Some(Duration::ZERO))
        .unwrap_err();
    assert_eq!(err.index, 4);
    assert!(matches!(err.error, StreamError::Timeout { .. }), "{err}");
    assert_eq!(consumer.poll().unwrap(), 4);
    consumer.consume(4);
    producer
        .put_many_timeout(&batch[4..], Some(Duration::ZERO))
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(consumer.item(1).unwrap().bytes(), &frames[5]);
    assert_eq!(consumer.item(1).unwrap().id(), "5");
}

#[test]
fn a_batch_of_full_payload_bytes_waits_for_bytes_not_items() {
    // 4 items of 2048 bytes, a 4096-byte payload: two fit at a time.
    let (producer, mut consumer) = in_process(&cfg(16)).unwrap();
    let meta = TensorMeta::new(DType::U8, &[2048]).unwrap();
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8 + 1; 2048]).collect();
    let batch: Vec<BatchItem> = blobs.iter().map(|b| BatchItem::unnamed(meta, b)).collect();
    let err = producer
        .put_many_timeout(&batch, Some(Duration::ZERO))
        .unwrap_err();
    assert_eq!(err.index, 2);
    assert_eq!(consumer.poll().unwrap(), 2);
    // The timeout names what it waited for.
    assert!(err.to_string().contains("payload bytes"), "{err}");
    assert!(matches!(err.error, StreamError::Timeout { .. }));
}

#[test]
fn put_many_after_done_registers_nothing() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    producer.signal_done();
    let f = frame(0);
    let err = producer
        .put_many(&[BatchItem::unnamed(frame_meta(), &f)])
        .unwrap_err();
    assert_eq!((err.index, err.error), (0, StreamError::AfterDone));
    assert_eq!(producer.registered(), 0);
    assert_eq!(consumer.poll().unwrap(), 0);
    assert!(consumer.is_all_in());
}

#[test]
fn a_batch_larger_than_the_ring_reaches_a_consumer_in_another_thread() {
    let n: u64 = if cfg!(miri) { 40 } else { 20_000 };
    let (producer, mut consumer) = in_process(&cfg(8)).unwrap();
    let reader = thread::spawn(move || {
        let mut next = 0u64;
        while next < n {
            let available = consumer.wait_for(1, PATIENCE).unwrap();
            for k in 0..available {
                let item = consumer.item(k).unwrap();
                assert_eq!(item.bytes(), &frame(next + k));
                assert_eq!(item.id(), (next + k).to_string());
            }
            next += available;
            consumer.consume(available);
        }
        next
    });
    let frames: Vec<[u8; 56]> = (0..n).map(frame).collect();
    // Batches of 64 in a ring of 8: every batch waits for room 7 times.
    for chunk in frames.chunks(64) {
        let batch: Vec<BatchItem> = chunk
            .iter()
            .map(|f| BatchItem::unnamed(frame_meta(), f))
            .collect();
        producer.put_many(&batch).unwrap();
    }
    assert_eq!(reader.join().unwrap(), n);
}

#[test]
fn commit_many_commits_held_slots_in_any_order_and_drains_them() {
    let (producer, mut consumer) = in_process(&cfg(8)).unwrap();
    let meta = TensorMeta::new(DType::U8, &[4]).unwrap();
    let mut landed = Vec::with_capacity(8);
    for i in 0..4u8 {
        let mut slot = producer.register(&format!("s{i}")).unwrap();
        slot.payload_mut()[..4].copy_from_slice(&[i; 4]);
        landed.push((slot, meta));
    }
    // Completions arrive out of order; the last one alone first.
    let last = landed.pop().unwrap();
    let mut first = vec![last];
    producer.commit_many(&mut first).unwrap();
    assert!(first.is_empty());
    assert_eq!(consumer.poll().unwrap(), 0, "position 3 waits for 0..3");
    landed.reverse();
    producer.commit_many(&mut landed).unwrap();
    assert!(landed.is_empty());
    assert!(landed.capacity() >= 8, "the caller's vector is kept");
    assert_eq!(consumer.poll().unwrap(), 4);
    for i in 0..4u8 {
        assert_eq!(consumer.item(i as u64).unwrap().bytes(), &[i; 4]);
    }
}

#[test]
fn commit_many_stops_at_a_slot_too_small_and_keeps_it_and_the_rest_held() {
    let (producer, mut consumer) = in_process(&cfg(8)).unwrap();
    let small = TensorMeta::new(DType::U8, &[4]).unwrap();
    let huge = TensorMeta::new(DType::U8, &[65]).unwrap(); // slots are 64 bytes
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.push((producer.register(&format!("s{i}")).unwrap(), small));
    }
    batch[1].1 = huge;
    let err = producer.commit_many(&mut batch).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(
        err.error,
        StreamError::TooLarge {
            nbytes: 65,
            reserved: 64
        }
    );
    assert!(err.to_string().contains("65 bytes"), "{err}");
    // s0 committed and drained; s1 and s2 still held by the caller.
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0].0.position(), 1);
    assert_eq!(consumer.poll().unwrap(), 1);
    batch[0].1 = small;
    producer.commit_many(&mut batch).unwrap();
    assert_eq!(consumer.poll().unwrap(), 3);
    // Nothing was abandoned on the way.
    assert_eq!(consumer.item(1).unwrap().id(), "s1");
}

#[test]
fn commit_many_refuses_a_slot_of_another_producer() {
    let (producer, mut consumer) = in_process(&cfg(8)).unwrap();
    let (other, mut other_consumer) = in_process(&cfg(8)).unwrap();
    let meta = TensorMeta::new(DType::U8, &[1]).unwrap();
    let mut batch = vec![
        (producer.register("mine").unwrap(), meta),
        (other.register("theirs").unwrap(), meta),
    ];
    let err = producer.commit_many(&mut batch).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.error, StreamError::ForeignSlot { position: 0 });
    assert!(err.to_string().contains("another producer"), "{err}");
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(other_consumer.poll().unwrap(), 0);
    // Its own producer commits it.
    other.commit_many(&mut batch).unwrap();
    assert_eq!(other_consumer.poll().unwrap(), 1);
}

#[test]
fn put_in_place_many_commits_pending_ids_and_stops_at_an_unknown_one() {
    let (producer, mut consumer) = in_process(&cfg(8)).unwrap();
    let meta = TensorMeta::new(DType::U8, &[8]).unwrap();
    for id in ["a", "b", "c"] {
        producer.pre_read_register(id).unwrap();
    }
    // "a" twice: the second is no longer pending.
    let err = producer
        .put_in_place_many(&[("b", meta), ("a", meta), ("a", meta), ("c", meta)])
        .unwrap_err();
    assert_eq!(err.index, 2);
    assert_eq!(err.error, StreamError::UnknownId { id: "a".into() });
    assert_eq!(consumer.poll().unwrap(), 2, "a and b published, c pending");
    let too_big = TensorMeta::new(DType::U8, &[65]).unwrap();
    let err = producer.put_in_place_many(&[("c", too_big)]).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(matches!(err.error, StreamError::TooLarge { .. }));
    // c is still pending: the by-id calls find it.
    producer.put_in_place_many(&[("c", meta)]).unwrap();
    assert_eq!(consumer.poll().unwrap(), 3);
}

/// The hub hears of every batch: a worker that looks in `wait_any` on the
/// hub alone learns of a batch only through its notification.
#[test]
fn every_kind_of_batch_marks_its_stream_ready_in_the_hub() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&cfg(8)).unwrap();
    // Adopt the stream; nothing is ready yet.
    assert!(set.wait_any(Some(Duration::ZERO)).is_empty());
    let meta = TensorMeta::new(DType::U8, &[8]).unwrap();
    let bytes = [1u8; 8];
    // Positions: "h" 0 (a held slot), "p" 1 (pending), "n" 2 (put_many).
    let mut held = vec![(producer.register("h").unwrap(), meta)];
    producer.pre_read_register("p").unwrap();
    let mut expect_one = |what: &str, id: &str| {
        let ready = set.wait_any(Some(Duration::ZERO));
        assert_eq!(ready.len(), 1, "{what} did not notify the hub");
        let chunk = set.get_mut(ready[0]).unwrap().pop_chunk().unwrap();
        assert_eq!(chunk.item(0).unwrap().id(), id);
        drop(chunk);
        assert!(set.wait_any(Some(Duration::ZERO)).is_empty());
    };
    producer.commit_many(&mut held).unwrap();
    expect_one("commit_many", "h");
    producer.put_in_place_many(&[("p", meta)]).unwrap();
    expect_one("put_in_place_many", "p");
    producer
        .put_many(&[BatchItem::new("n", meta, &bytes)])
        .unwrap();
    expect_one("put_many", "n");
    // A batch that publishes nothing (its first item is bad) tells nobody.
    producer
        .put_many(&[BatchItem::new("bad", meta, &bytes[..7])])
        .unwrap_err();
    assert!(
        set.wait_any(Some(Duration::ZERO)).is_empty(),
        "a batch that published nothing notified the hub"
    );
}

#[test]
fn commit_many_commits_a_meta_that_fills_its_slot_exactly() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    let slot = producer.register_sized("full", 56).unwrap();
    assert_eq!(slot.len(), 56);
    let mut batch = vec![(slot, frame_meta())];
    producer.commit_many(&mut batch).unwrap();
    assert!(batch.is_empty());
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().id(), "full");
    assert_eq!(consumer.item(0).unwrap().bytes().len(), 56);
}

#[test]
fn put_in_place_many_commits_a_meta_that_fills_its_reservation_exactly() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    producer.pre_read_register("p").unwrap(); // the default 64 bytes
    let meta = TensorMeta::new(DType::U8, &[64]).unwrap();
    producer.put_in_place_many(&[("p", meta)]).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().id(), "p");
    assert_eq!(consumer.item(0).unwrap().bytes().len(), 64);
}
