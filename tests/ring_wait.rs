//! A standalone stream's waits made outside the library (issue 25, an
//! event loop's io_uring `FUTEX_WAIT`): `StreamBuffer::look_or_arm`,
//! `Producer::room_or_arm`, `Producer::drained_or_arm` look once, take
//! nothing, and when they find nothing hand out a wait on the futex word
//! the other side rings.

use shmstream::policy::Policy;
use shmstream::{
    in_process_buffer, BellWait, DType, Producer, StreamBuffer, StreamConfig, StreamError,
    StreamId, TensorMeta,
};
use std::sync::atomic::{AtomicU32, Ordering};

fn setup(capacity: u64) -> (Producer, StreamBuffer) {
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(64);
    let policy: Policy = "fixed:size=1".parse().unwrap();
    in_process_buffer(&cfg, policy).unwrap()
}

fn put(producer: &Producer, i: u32) {
    producer.pre_read_register(&format!("t{i}")).unwrap();
    producer
        .put(
            &format!("t{i}"),
            TensorMeta::new(DType::U32, &[1]).unwrap(),
            &i.to_le_bytes(),
        )
        .unwrap();
}

/// Whether the futex word moved on from the value the wait saw: the
/// kernel's `FUTEX_WAIT` would end.
fn rang(wait: &BellWait) -> bool {
    // SAFETY: the word is an aligned, live u32 while `wait` lives (it holds
    // the ring's memory), only ever accessed atomically.
    let word = unsafe { &*wait.futex().cast::<AtomicU32>() };
    word.load(Ordering::Acquire) != wait.seen()
}

#[test]
fn a_buffer_arms_on_its_data_bell_which_a_commit_rings_and_pops_nothing() {
    let (producer, mut buffer) = setup(4);
    let wait = buffer.look_or_arm().unwrap().expect("nothing ready: armed");
    assert_eq!(wait.slice(), None, "an in-process producer needs no slice");
    assert!(!rang(&wait));
    put(&producer, 7);
    assert!(rang(&wait), "the commit woke the announced sleeper");
    drop(wait);
    assert!(buffer.look_or_arm().unwrap().is_none(), "a chunk is ready");
    assert!(
        buffer.look_or_arm().unwrap().is_none(),
        "still: the look took nothing"
    );
    let chunk = buffer.pop_chunk().unwrap();
    assert_eq!(chunk.len(), 1);
    drop(chunk);
    drop(producer);
    assert_eq!(
        buffer.look_or_arm().unwrap_err(),
        StreamError::ProducerGone,
        "a producer gone with the stream unfinished"
    );
}

#[test]
fn a_finished_buffer_needs_no_wait() {
    let (producer, mut buffer) = setup(4);
    put(&producer, 1);
    producer.signal_done();
    while buffer.next_chunk().unwrap().is_some() {}
    assert!(buffer.look_or_arm().unwrap().is_none());
}

#[test]
fn room_and_drain_arm_on_the_space_bell_which_a_release_rings_and_reserve_nothing() {
    let (producer, mut buffer) = setup(2);
    assert!(producer.room_or_arm(8).unwrap().is_none(), "room now");
    put(&producer, 0);
    put(&producer, 1);
    let room = producer.room_or_arm(8).unwrap().expect("full: armed");
    let drained = producer
        .drained_or_arm()
        .unwrap()
        .expect("not drained: armed");
    assert!(!rang(&room) && !rang(&drained));
    drop(buffer.pop_chunk().unwrap());
    // The release of the next look (the chunk dropped) rings the bell.
    assert!(buffer.look_or_arm().unwrap().is_none());
    assert!(rang(&room), "the release woke the announced sleeper");
    drop((room, drained));
    assert!(producer.room_or_arm(8).unwrap().is_none());
    assert_eq!(producer.registered(), 2, "room is not a registration");
    assert!(
        producer.drained_or_arm().unwrap().is_some(),
        "one item left"
    );
    drop(buffer.pop_chunk().unwrap());
    assert!(buffer.look_or_arm().unwrap().is_some());
    assert!(producer.drained_or_arm().unwrap().is_none(), "all released");
    let too_big = producer.payload_bytes() + 1;
    assert!(matches!(
        producer.room_or_arm(too_big),
        Err(StreamError::ExceedsPayload { .. })
    ));
    put(&producer, 2);
    put(&producer, 3);
    drop(buffer);
    assert_eq!(
        producer.room_or_arm(8).unwrap_err(),
        StreamError::ConsumerGone
    );
}

#[test]
fn a_drain_is_not_awaited_with_a_position_open_nor_after_the_consumer_left_short() {
    let (producer, buffer) = setup(4);
    let slot = producer.register("open").unwrap();
    assert!(matches!(
        producer.drained_or_arm(),
        Err(StreamError::Unpublished { position: 0 })
    ));
    slot.write(
        TensorMeta::new(DType::U32, &[1]).unwrap(),
        &1u32.to_le_bytes(),
    )
    .unwrap();
    assert!(
        producer.drained_or_arm().unwrap().is_some(),
        "one item unread"
    );
    drop(buffer);
    assert_eq!(
        producer.drained_or_arm().unwrap_err(),
        StreamError::ConsumerGone,
        "the consumer left with an item unreleased"
    );
}
