//! Regression tests for the defects of issue 15: call sequences of the
//! public API that once let safe code see reused memory, hand out two write
//! handles for one position, trust a consumer's impossible `released`, or
//! wait for ever on a producer that died after `done`. Each test failed on
//! b8e578c. All but the shared-memory one run under Miri too
//! (`scripts/test-miri.sh`).

mod common;

use shmstream::policy::{Fixed, Sliding};
use shmstream::{in_process, DType, StreamBuffer, StreamConfig, StreamError, StreamId, TensorMeta};
use std::time::Duration;

fn cfg(capacity: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(4096)
    .with_timeout(Some(Duration::from_secs(10)))
}

fn id() -> StreamId {
    cfg(1).id().clone()
}

/// The metadata of a one-word u64 item (the value is in its bytes).
fn word(_value: u64) -> TensorMeta {
    TensorMeta::new(DType::U64, &[1]).unwrap()
}

/// Registers and commits one u64 item holding `v`.
fn push(producer: &shmstream::Producer, v: u64) {
    producer
        .register(&format!("t{v}"))
        .unwrap()
        .write(word(v), &v.to_le_bytes())
        .unwrap();
}

fn value(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn a_buffer_over_a_consumer_that_moved_on_starts_at_its_position() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    for v in [100, 101, 102, 103] {
        push(&producer, v);
    }
    assert_eq!(consumer.poll().unwrap(), 4);
    consumer.consume(2);
    let mut buffer: StreamBuffer = StreamBuffer::new(consumer, id(), Fixed::new(2).unwrap())
        .map_err(|e| e.error)
        .unwrap();
    assert_eq!(buffer.consumed(), 2);
    let chunk = buffer.pop_chunk().unwrap();
    assert_eq!(chunk.start_offset(), 2);
    let first = chunk.item(0).unwrap().bytes();
    assert_eq!(value(first), 102);
    // Slots 0 and 1 were released: the producer reuses slot 0 now, and the
    // chunk's bytes must not change under it.
    push(&producer, 200);
    assert_eq!(value(first), 102);
    assert_eq!(value(chunk.item(1).unwrap().bytes()), 103);
}

#[test]
fn a_refused_buffer_gives_its_consumer_back_and_the_stream_goes_on() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    push(&producer, 7);
    consumer.poll().unwrap();
    consumer.consume(1);
    let refused = StreamBuffer::<()>::new(consumer, id(), Sliding::new(8, 1).unwrap())
        .expect_err("a window of 8 does not fit in 4 slots");
    assert!(refused.to_string().contains('8'), "{refused}");
    let mut consumer = refused.consumer;
    assert_eq!(consumer.position(), 1);
    // The consumer is still attached: the producer is not told it left.
    push(&producer, 8);
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(value(consumer.item(0).unwrap().bytes()), 8);
}

#[test]
fn put_never_takes_over_a_position_that_a_slot_handle_holds() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    let mut slot = producer.register("a").unwrap();
    assert_eq!(
        producer.put("a", word(1), &1u64.to_le_bytes()),
        Err(StreamError::UnknownId { id: "a".into() })
    );
    assert_eq!(
        producer.put_in_place("a", word(1)),
        Err(StreamError::UnknownId { id: "a".into() })
    );
    slot.payload_mut()[..8].copy_from_slice(&5u64.to_le_bytes());
    slot.commit(word(5)).map_err(|e| e.error).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(value(consumer.item(0).unwrap().bytes()), 5);
}

#[test]
fn put_commits_the_pending_registration_not_a_held_slot_of_the_same_id() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    producer.pre_read_register("x").unwrap();
    let mut held = producer.register("x").unwrap();
    producer.put("x", word(1), &1u64.to_le_bytes()).unwrap();
    // Once put, the id is no longer pending.
    assert_eq!(
        producer.put("x", word(1), &1u64.to_le_bytes()),
        Err(StreamError::UnknownId { id: "x".into() })
    );
    held.payload_mut()[..8].copy_from_slice(&2u64.to_le_bytes());
    held.commit(word(2)).map_err(|e| e.error).unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(value(consumer.item(0).unwrap().bytes()), 1);
    assert_eq!(value(consumer.item(1).unwrap().bytes()), 2);
}

#[test]
fn a_failed_put_keeps_the_registration_pending_and_puts_again() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    producer.pre_read_register("x").unwrap();
    let too_big = TensorMeta::new(DType::U8, &[8192]).unwrap();
    assert!(matches!(
        producer.put("x", too_big, &[0; 8192]),
        Err(StreamError::TooLarge { .. })
    ));
    producer.put("x", word(3), &3u64.to_le_bytes()).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(value(consumer.item(0).unwrap().bytes()), 3);
}

#[test]
fn a_dropped_handle_abandons_only_its_own_lap() {
    // The stale-handle sequence of the issue: a handle of lap 0 must never
    // publish over lap 1's completion. With one handle per position it
    // cannot exist; the ring wraps under out-of-order commits and every
    // item arrives.
    let (producer, mut consumer) = in_process(&cfg(2)).unwrap();
    for lap in 0..4u64 {
        let a = producer.register("a").unwrap();
        let b = producer.register("b").unwrap();
        b.write(word(0), &(lap * 2 + 1).to_le_bytes())
            .map_err(|e| e.error)
            .unwrap();
        a.write(word(0), &(lap * 2).to_le_bytes())
            .map_err(|e| e.error)
            .unwrap();
        assert_eq!(consumer.poll().unwrap(), 2);
        assert_eq!(value(consumer.item(0).unwrap().bytes()), lap * 2);
        assert_eq!(value(consumer.item(1).unwrap().bytes()), lap * 2 + 1);
        consumer.consume(2);
    }
}

#[test]
fn wait_drained_with_an_open_slot_says_so_at_once() {
    let (producer, _consumer) = in_process(&cfg(4)).unwrap();
    push(&producer, 1);
    let slot = producer.register("open").unwrap();
    assert_eq!(
        producer.wait_drained(None),
        Err(StreamError::Unpublished { position: 1 })
    );
    drop(slot);
}

#[test]
fn a_producer_gone_after_done_with_a_slot_in_flight_ends_the_wait() {
    let (producer, mut consumer) = in_process(&cfg(4)).unwrap();
    push(&producer, 1);
    let slot = producer.register("in-flight").unwrap();
    producer.signal_done();
    // What a SIGKILL between `signal_done` and the last commit leaves: the
    // position is registered, never published, and the producer is gone.
    std::mem::forget(slot);
    drop(producer);
    // Without a timeout: the old code waited here for ever.
    assert_eq!(consumer.wait_for(2, None), Err(StreamError::ProducerGone));
    // What was complete is still there.
    assert_eq!(consumer.available(), 1);
    assert_eq!(value(consumer.item(0).unwrap().bytes()), 1);
}

#[test]
fn a_producer_gone_after_done_with_everything_in_still_delivers_the_end() {
    let (producer, consumer) = in_process(&cfg(4)).unwrap();
    let mut buffer: StreamBuffer = StreamBuffer::new(consumer, id(), Fixed::new(3).unwrap())
        .map_err(|e| e.error)
        .unwrap();
    for v in 0..2 {
        push(&producer, v);
    }
    producer.signal_done();
    drop(producer);
    let chunk = buffer.next_chunk_timeout(None).unwrap().unwrap();
    assert!(chunk.is_final());
    assert_eq!(chunk.len(), 2);
    drop(chunk);
    assert!(buffer.next_chunk_timeout(None).unwrap().is_none());
}

/// A consumer that publishes `released` past a position the producer still
/// writes must not make the producer hand out that slot again.
#[cfg(not(miri))]
#[test]
fn a_released_count_past_an_open_slot_is_corrupt() {
    use common::{unique_prefix, Cleanup};
    use shmstream::Producer;
    use std::os::unix::fs::FileExt;
    // Offset of `released` (docs/design.md, "The segment, byte by byte").
    const RELEASED: u64 = 1152;

    let prefix = unique_prefix("released");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = common::config(&prefix, 2, 2048);
    let producer = Producer::create(&cfg).unwrap();
    let poker = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{}", cfg.segment_name().unwrap()))
        .unwrap();
    let mut held = producer.register("a").unwrap();
    push(&producer, 1);
    // Both slots are registered; position 0 is still being written. A
    // hostile consumer claims to have released both.
    poker.write_all_at(&2u64.to_ne_bytes(), RELEASED).unwrap();
    match producer.try_register("b") {
        Err(StreamError::Corrupt(what)) => assert!(what.contains("released"), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The held slot is untouched and still ours to write.
    held.payload_mut()[..8].copy_from_slice(&9u64.to_le_bytes());
    assert_eq!(value(held.payload_mut()), 9);
    held.commit(word(9)).map_err(|e| e.error).unwrap();
}
