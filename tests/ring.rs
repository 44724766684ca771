//! The ring between two threads of one process (heap memory): order,
//! back-pressure, abandoned slots, bad input that leaves the stream intact.

mod common;

use common::{check_item, commit_item, consume_in_order, produce_reordered};
use shmstream::{
    in_process, AbandonReason, DType, Resource, StreamConfig, StreamError, StreamId, TensorMeta,
    MAX_REASON_LEN,
};
use std::time::Duration;

fn cfg(capacity: u64, item_bytes: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(item_bytes)
}

/// Produces `n` items of mixed sizes, committed out of order within groups
/// of `reorder`, and checks that the consumer receives each once, in order.
fn stream_out_of_order(n: u64, reorder: usize, capacity: u64) {
    let (producer, mut consumer) = in_process(&cfg(capacity, 512)).unwrap();
    let handle = std::thread::spawn(move || {
        produce_reordered(&producer, n, reorder);
        producer.signal_done();
    });
    let received = consume_in_order(&mut consumer, Duration::from_secs(20));
    handle.join().unwrap();
    assert_eq!(received, n, "items lost");
}

#[test]
fn items_arrive_in_registration_order_despite_out_of_order_commits() {
    let n = if cfg!(miri) { 200 } else { 200_000 };
    stream_out_of_order(n, 8, 64);
}

#[test]
fn a_tiny_ring_still_delivers_everything() {
    stream_out_of_order(if cfg!(miri) { 50 } else { 20_000 }, 3, 8);
}

#[test]
fn an_item_committed_early_stays_invisible_until_its_predecessors_arrive() {
    let (producer, mut consumer) = in_process(&cfg(8, 512)).unwrap();
    let a = producer.register("a").unwrap();
    let b = producer.register("b").unwrap();
    let c = producer.register("c").unwrap();
    commit_item(c, 2, 4);
    commit_item(b, 1, 4);
    assert_eq!(consumer.poll().unwrap(), 0);
    commit_item(a, 0, 4);
    assert_eq!(consumer.poll().unwrap(), 3);
    let ids: Vec<_> = (0..3)
        .map(|i| consumer.item(i).unwrap().id().to_string())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn try_register_reports_a_full_ring_and_works_again_after_release() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    for i in 0..4 {
        commit_item(producer.try_register(&format!("t{i}")).unwrap(), i, 4);
    }
    assert_eq!(
        producer.try_register("t4").unwrap_err(),
        StreamError::Full {
            resource: Resource::Items,
            capacity: 4
        }
    );
    let err = producer
        .register_timeout("t4", Some(Duration::from_millis(30)))
        .unwrap_err();
    assert!(matches!(err, StreamError::Timeout { .. }), "{err}");
    // Nothing was lost or overwritten by the refused calls.
    assert_eq!(consumer.poll().unwrap(), 4);
    assert_eq!(check_item(consumer.item(0).unwrap().bytes()), Ok(0));
    consumer.consume(1);
    commit_item(producer.try_register("t4").unwrap(), 4, 4);
    assert_eq!(consumer.poll().unwrap(), 4);
    assert_eq!(consumer.item(3).unwrap().id(), "t4");
}

#[test]
fn a_held_view_does_not_change_while_the_producer_runs_into_the_full_ring() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    let writer = std::thread::spawn(move || {
        let mut seq = 0;
        // Runs at full speed until the ring is full and stays full.
        loop {
            match producer.register_timeout(&format!("t{seq}"), Some(Duration::from_millis(200))) {
                Ok(slot) => commit_item(slot, seq, 100),
                Err(StreamError::Timeout { .. }) => return seq,
                Err(e) => panic!("{e}"),
            }
            seq += 1;
        }
    });
    consumer.wait_for(1, Some(Duration::from_secs(10))).unwrap();
    let view = consumer.item(0).unwrap();
    let before = view.bytes().to_vec();
    let written = writer.join().unwrap();
    assert_eq!(written, 4, "the producer wrote past the held slots");
    assert_eq!(view.bytes(), &before[..]);
    assert_eq!(check_item(view.bytes()), Ok(0));
}

#[test]
fn a_slot_dropped_without_commit_is_reported_not_waited_for() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    commit_item(producer.register("ok").unwrap(), 0, 4);
    drop(producer.register("lost").unwrap());
    commit_item(producer.register("after").unwrap(), 2, 4);
    // The item before the hole stays readable.
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().id(), "ok");
    consumer.consume(1);
    assert_eq!(
        consumer.poll().unwrap_err(),
        StreamError::Abandoned {
            position: 1,
            id: "lost".into(),
            reason: AbandonReason::default(),
        }
    );
}

#[test]
fn an_abandon_reason_reaches_the_consumer_cut_to_its_bound() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    // Past the bound, with a 4-byte char across it: cut before that char.
    let long = format!("{}🦀 and more", "x".repeat(MAX_REASON_LEN - 2));
    producer
        .register("t0")
        .unwrap()
        .abandon_with(AbandonReason::new(-1, &long));
    match consumer.poll() {
        Err(StreamError::Abandoned {
            position: 0,
            id,
            reason,
        }) => {
            assert_eq!(id, "t0");
            assert_eq!(reason.code(), -1);
            assert_eq!(reason.text(), "x".repeat(MAX_REASON_LEN - 2));
        }
        other => panic!("expected t0 abandoned, got {other:?}"),
    }
    let err = consumer.poll().unwrap_err().to_string();
    assert!(
        err.starts_with(
            "the producer gave up tensor \"t0\" at position 0 without committing it: xxx"
        ) && err.ends_with("x (status -1)"),
        "{err}"
    );
}

#[test]
fn a_pending_id_is_abandoned_by_id_with_its_reason() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    producer.pre_read_register("a").unwrap();
    producer.pre_read_register("b").unwrap();
    assert_eq!(
        producer.abandon("zz", AbandonReason::from("no such id")),
        Err(StreamError::UnknownId { id: "zz".into() })
    );
    producer
        .abandon("b", AbandonReason::new(-4, "peer gone"))
        .unwrap();
    // Once given up, it is no longer pending.
    assert!(matches!(
        producer.abandon("b", AbandonReason::default()),
        Err(StreamError::UnknownId { .. })
    ));
    producer
        .put("a", TensorMeta::new(DType::U8, &[1]).unwrap(), &[7])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    consumer.consume(1);
    assert_eq!(
        consumer.poll().unwrap_err(),
        StreamError::Abandoned {
            position: 1,
            id: "b".into(),
            reason: AbandonReason::new(-4, "peer gone"),
        }
    );
}

#[test]
fn a_refused_commit_hands_the_slot_back_and_the_stream_goes_on() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    let slot = producer.register("t0").unwrap();
    let too_big = TensorMeta::new(DType::F32, &[300]).unwrap();
    let err = slot.commit(too_big).unwrap_err();
    assert_eq!(
        err.error,
        StreamError::TooLarge {
            nbytes: 1200,
            reserved: 1024
        }
    );
    assert_eq!(
        err.to_string(),
        "commit refused: a tensor of 1200 bytes does not fit in the 1024 bytes reserved for it; register it with its size (register_sized / pre_read_register_sized) (the slot is kept: commit it again, or drop it to abandon its position)"
    );
    commit_item(err.slot, 0, 4);
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(check_item(consumer.item(0).unwrap().bytes()), Ok(0));
}

#[test]
fn bad_ids_and_late_registrations_are_refused_without_harm() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    assert_eq!(
        producer.register("").unwrap_err(),
        StreamError::BadId { len: 0, max: 64 }
    );
    let long = "x".repeat(65);
    assert_eq!(
        producer.register(&long).unwrap_err(),
        StreamError::BadId { len: 65, max: 64 }
    );
    commit_item(producer.register("t0").unwrap(), 0, 4);
    producer.signal_done();
    assert_eq!(producer.register("t1").unwrap_err(), StreamError::AfterDone);
    assert_eq!(consumer.poll().unwrap(), 1);
    assert!(consumer.is_all_in());
    assert_eq!(consumer.item(0).unwrap().id(), "t0");
}

#[test]
fn reference_names_register_then_put_by_id_in_any_order() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    producer.pre_read_register("a").unwrap();
    producer.pre_read_register("b").unwrap();
    assert_eq!(
        producer.pre_read_register("a").unwrap_err(),
        StreamError::DuplicateId { id: "a".into() }
    );
    let meta = TensorMeta::new(DType::F32, &[2]).unwrap();
    let bytes: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        producer.put("zzz", meta, &bytes).unwrap_err(),
        StreamError::UnknownId { id: "zzz".into() }
    );
    assert_eq!(
        producer.put("b", meta, &bytes[..4]).unwrap_err(),
        StreamError::SizeMismatch {
            given: 4,
            expected: 8
        }
    );
    producer.put("b", meta, &bytes).unwrap();
    assert_eq!(consumer.poll().unwrap(), 0);
    assert_eq!(
        producer.put("b", meta, &bytes).unwrap_err(),
        StreamError::UnknownId { id: "b".into() }
    );
    producer.put("a", meta, &bytes).unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(
        consumer.item(1).unwrap().as_slice::<f32>(),
        Some(&[1.5f32, 2.5][..])
    );
    // The id is free again once put: a later tensor may reuse it.
    producer.pre_read_register("a").unwrap();
}

#[test]
fn a_consumer_that_leaves_ends_a_blocked_producer_with_an_error() {
    let (producer, consumer) = in_process(&cfg(4, 1024)).unwrap();
    for i in 0..4 {
        commit_item(producer.register(&format!("t{i}")).unwrap(), i, 4);
    }
    let leaver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(consumer);
    });
    assert_eq!(
        producer.register_timeout("t4", None).unwrap_err(),
        StreamError::ConsumerGone
    );
    leaver.join().unwrap();
}

#[test]
fn a_producer_that_leaves_without_done_is_reported_after_its_items() {
    let (producer, mut consumer) = in_process(&cfg(4, 1024)).unwrap();
    commit_item(producer.register("t0").unwrap(), 0, 4);
    drop(producer);
    assert_eq!(consumer.wait_for(1, None).unwrap(), 1);
    consumer.consume(1);
    assert_eq!(
        consumer.wait_for(1, None).unwrap_err(),
        StreamError::ProducerGone
    );
}

#[test]
fn bad_layouts_are_refused_with_the_limit_named() {
    for (capacity, item, needle) in [
        (0, 4096, "item capacity 0 must be a power of two"),
        (3, 4096, "item capacity 3 must be a power of two"),
        (1 << 21, 8, "between 1 and 1048576"),
    ] {
        let err = in_process(&cfg(capacity, item)).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    for (payload, needle) in [
        (
            2048,
            "payload size 2048 bytes must be a power of two between the page size 4096",
        ),
        (12288, "payload size 12288 bytes must be a power of two"),
        (1 << 41, "and 1099511627776"),
    ] {
        let err = in_process(&cfg(4, 8).with_payload_bytes(payload))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = in_process(&cfg(4, 8192).with_payload_bytes(4096))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("default item size 8192 bytes exceeds the payload size 4096 bytes"),
        "{err}"
    );
    for (name, needle) in [("", "empty"), ("a/b", "'/'"), ("a\0b", "NUL")] {
        let err = in_process(&StreamConfig::new(StreamId {
            request_id: String::from(name),
            edge_name: "e".into(),
            from_partition: "p".into(),
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = in_process(&StreamConfig::new(StreamId {
        request_id: String::from(&"x".repeat(121)),
        edge_name: "e".into(),
        from_partition: "p".into(),
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("limit is 120"), "{err}");
}

#[test]
fn a_window_stacks_only_when_all_its_items_share_dtype_and_shape() {
    let (producer, mut consumer) = in_process(&cfg(8, 1024)).unwrap();
    for (s, words) in [(0, 4), (1, 4), (2, 8), (3, 8), (4, 8)] {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, words);
    }
    let f32_meta = TensorMeta::new(DType::F32, &[16]).unwrap();
    producer
        .register("t5")
        .unwrap()
        .write(f32_meta, &[0; 64])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 6);
    let shape = |i, n| consumer.window(i, n).map(|v| v.shape().to_vec());
    assert_eq!(shape(0, 2), Some(vec![2, 4]));
    assert_eq!(shape(1, 2), None);
    assert_eq!(shape(2, 3), Some(vec![3, 8]));
    assert_eq!(shape(0, 5), None);
    assert_eq!(
        shape(4, 2),
        None,
        "u64[8] and f32[16] have the same bytes, not the same dtype"
    );
    assert_eq!(shape(5, 1), Some(vec![1, 16]));
    assert_eq!(shape(5, 2), None, "past the prefix");
    consumer.consume(3);
    assert_eq!(
        consumer.window(0, 2).map(|v| v.shape().to_vec()),
        Some(vec![2, 8])
    );
}

#[test]
fn producer_and_slot_debug_show_the_ring_and_the_reservation() {
    let (producer, _consumer) = in_process(&cfg(8, 512).with_payload_bytes(8192)).unwrap();
    assert_eq!(
        format!("{producer:?}"),
        "Producer { capacity: 8, payload_bytes: 8192, registered: 0, pending_ids: 0 }"
    );
    let a = producer.register_sized("a", 100).unwrap();
    let b = producer.register_sized("b", 64).unwrap();
    assert_eq!((a.position(), b.position()), (0, 1));
    assert_eq!((a.len(), b.len()), (100, 64));
    assert!(!a.is_empty() && !b.is_empty());
    // "a" takes bytes 0..100; "b" is 64-aligned after it.
    assert_eq!(
        format!("{b:?}"),
        "Slot { position: 1, offset: 128, len: 64 }"
    );
    assert!(format!("{producer:?}").ends_with("registered: 2, pending_ids: 0 }"));
}

#[test]
fn wait_drained_returns_once_everything_is_released_and_not_before() {
    let (producer, mut consumer) = in_process(&cfg(8, 64)).unwrap();
    // Nothing registered: drained already.
    producer.wait_drained(Some(Duration::ZERO)).unwrap();
    for s in 0..3 {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 2);
    }
    assert!(matches!(
        producer.wait_drained(Some(Duration::from_millis(10))),
        Err(StreamError::Timeout { .. })
    ));
    assert_eq!(consumer.poll().unwrap(), 3);
    consumer.consume(2);
    assert!(matches!(
        producer.wait_drained(Some(Duration::from_millis(10))),
        Err(StreamError::Timeout { .. })
    ));
    consumer.consume(1);
    producer.wait_drained(Some(Duration::ZERO)).unwrap();
    producer.wait_drained(None).unwrap();
}

#[test]
fn an_id_is_read_once_per_position_and_each_lap_shows_its_own() {
    // A ring of 2: every slot holds several positions in turn, and each
    // id is asked for twice (the second time from the consumer's copy),
    // also while a view of the first ask is still held.
    let (producer, mut consumer) = in_process(&cfg(2, 512)).unwrap();
    let meta = TensorMeta::new(DType::U8, &[1]).unwrap();
    for lap in 0..4u64 {
        for k in 0..2 {
            let id = format!("lap{lap}-item{k}-{}", "x".repeat(k as usize * 50));
            producer
                .register(&id)
                .unwrap()
                .write(meta, &[k as u8])
                .unwrap();
        }
        assert_eq!(consumer.poll().unwrap(), 2);
        let (first, second) = (consumer.item(0).unwrap(), consumer.item(1).unwrap());
        let held = first.id();
        assert_eq!(held, format!("lap{lap}-item0-"));
        assert_eq!(
            second.try_id().unwrap(),
            format!("lap{lap}-item1-{}", "x".repeat(50))
        );
        assert_eq!(first.id(), held);
        assert_eq!(consumer.item(0).unwrap().id(), held);
        consumer.consume(2);
    }
}
