//! The byte-granular payload: tensors of any size in one stream, placed back
//! to back, with back-pressure on items or on bytes. In-process (a memfd
//! mapped twice, or the heap under Miri, which has no mirror).

use shmstream::policy::Fixed;
use shmstream::{
    in_process, in_process_buffer, placement_align, DType, Resource, StreamConfig, StreamError,
    StreamId, TensorMeta,
};
use std::time::Duration;

fn cfg(capacity: u64, payload_bytes: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(64)
    .with_payload_bytes(payload_bytes)
    .with_timeout(Some(Duration::ZERO))
}

/// A 7 x i64 codec frame whose words are `seq * 10 + k`.
fn frame(seq: u64) -> Vec<u8> {
    (0..7)
        .flat_map(|k| (seq as i64 * 10 + k).to_le_bytes())
        .collect()
}

fn frame_meta() -> TensorMeta {
    TensorMeta::new(DType::I64, &[7]).unwrap()
}

#[test]
fn placement_keeps_elements_aligned_and_same_sized_rows_back_to_back() {
    assert_eq!(placement_align(0), 8);
    assert_eq!(placement_align(1), 8);
    assert_eq!(placement_align(56), 8);
    assert_eq!(placement_align(96), 32);
    assert_eq!(placement_align(64 << 10), 64);
    assert_eq!(placement_align(100), 8);
}

#[test]
fn a_window_of_28_codec_frames_is_one_contiguous_tensor() {
    let (producer, mut buffer) =
        in_process_buffer::<()>(&cfg(64, 4096), Fixed::new(28).unwrap()).unwrap();
    for s in 0..28 {
        let slot = producer.register_sized(&format!("t{s}"), 56).unwrap();
        slot.write(frame_meta(), &frame(s)).unwrap();
    }
    let chunk = buffer.pop_chunk().unwrap();
    let view = chunk.stacked().unwrap();
    assert_eq!(view.shape(), &[28, 7]);
    assert_eq!(view.strides()[0], 56, "row stride");
    assert!(view.is_contiguous());
    let bytes = view.contiguous().unwrap();
    assert_eq!(bytes.len(), 28 * 56);
    for s in 0..28 {
        assert_eq!(&bytes[s * 56..s * 56 + 56], &frame(s as u64)[..]);
        // In place: each row is its item's own bytes.
        assert_eq!(
            view.item(s).unwrap().as_ptr(),
            chunk.item(s).unwrap().bytes().as_ptr()
        );
    }
}

/// With the mirror (not under Miri's heap ring), a window that wraps
/// around the payload is still one contiguous tensor.
#[cfg(not(miri))]
#[test]
fn a_window_of_codec_frames_across_the_wrap_is_contiguous() {
    // 4096 bytes hold 73 frames: the second window of 28 starting at frame
    // 56 runs from byte 3136 past the end at 4096.
    let (producer, mut buffer) =
        in_process_buffer::<()>(&cfg(128, 4096), Fixed::new(28).unwrap()).unwrap();
    let mut next = 0u64;
    let mut push = |n: u64| {
        for _ in 0..n {
            let slot = producer.register_sized(&format!("t{next}"), 56).unwrap();
            slot.write(frame_meta(), &frame(next)).unwrap();
            next += 1;
        }
    };
    push(56);
    for _ in 0..2 {
        drop(buffer.pop_chunk().unwrap());
    }
    push(28);
    let (base, len) = buffer.consumer().payload_region();
    let (base, len) = (base as usize, len / 2);
    let chunk = buffer.pop_chunk().unwrap();
    assert_eq!(chunk.start_offset(), 56);
    let view = chunk.stacked().unwrap();
    assert!(view.is_contiguous());
    let start = view.as_ptr() as usize;
    assert_eq!(start, base + 56 * 56);
    assert!(
        start + view.span_bytes() > base + len,
        "runs into the mirror"
    );
    for s in 0..28 {
        assert_eq!(view.item(s).unwrap(), &frame(56 + s as u64)[..]);
    }
}

#[test]
fn a_window_of_mixed_shapes_gives_item_views_only() {
    let (producer, mut buffer) =
        in_process_buffer::<()>(&cfg(8, 4096), Fixed::new(3).unwrap()).unwrap();
    let shapes: [&[u64]; 3] = [&[7], &[2, 3], &[7]];
    for (s, shape) in shapes.iter().enumerate() {
        let meta = TensorMeta::new(DType::I64, shape).unwrap();
        let bytes = vec![s as u8 + 1; meta.nbytes() as usize];
        let slot = producer
            .register_sized(&format!("t{s}"), meta.nbytes())
            .unwrap();
        slot.write(meta, &bytes).unwrap();
    }
    let chunk = buffer.pop_chunk().unwrap();
    assert!(chunk.stacked().is_none());
    for (s, item) in chunk.items().enumerate() {
        assert_eq!(item.shape(), shapes[s]);
        assert!(item.bytes().iter().all(|&b| b == s as u8 + 1));
    }
}

#[test]
fn same_shaped_rows_with_padding_stack_with_their_row_stride() {
    // 100-byte u8 rows are placed 8-aligned: 104 bytes apart.
    let (producer, mut consumer) = in_process(&cfg(8, 4096)).unwrap();
    for s in 0..3u8 {
        let slot = producer.register_sized(&format!("t{s}"), 100).unwrap();
        slot.write(TensorMeta::new(DType::U8, &[100]).unwrap(), &[s; 100])
            .unwrap();
    }
    consumer.poll().unwrap();
    let view = consumer.window(0, 3).unwrap();
    assert_eq!(view.shape(), &[3, 100]);
    assert_eq!(view.strides()[0], 104);
    assert!(!view.is_contiguous() && view.contiguous().is_none());
    for s in 0..3u8 {
        assert_eq!(view.item(s as usize).unwrap(), &[s; 100][..]);
    }
    // A window of one row has no padding: its stride is its size.
    let one = consumer.window(1, 1).unwrap();
    assert_eq!((one.shape(), one.strides()[0]), (&[1, 100][..], 100));
    assert!(one.is_contiguous());
    assert_eq!(one.contiguous().unwrap(), &[1; 100][..]);
}

#[test]
fn empty_tensors_are_items_too() {
    let (producer, mut consumer) = in_process(&cfg(8, 4096)).unwrap();
    for s in 0..3 {
        let slot = producer.register_sized(&format!("t{s}"), 0).unwrap();
        assert!(slot.is_empty());
        slot.commit(TensorMeta::new(DType::F32, &[0, 5]).unwrap())
            .unwrap();
    }
    assert_eq!(consumer.poll().unwrap(), 3);
    let view = consumer.window(0, 3).unwrap();
    assert_eq!(view.shape(), &[3, 0, 5]);
    assert_eq!(view.span_bytes(), 0);
    assert!(consumer.item(2).unwrap().bytes().is_empty());
}

#[test]
fn a_full_payload_is_back_pressure_that_names_the_bytes() {
    let (producer, mut consumer) = in_process(&cfg(64, 4096)).unwrap();
    let big = producer.register_sized("a", 3000).unwrap();
    let err = producer.try_register_sized("b", 2000).unwrap_err();
    assert_eq!(
        err,
        StreamError::Full {
            resource: Resource::PayloadBytes,
            capacity: 4096
        }
    );
    assert!(err.to_string().contains("4096 payload bytes"), "{err}");
    let err = producer
        .register_sized_timeout("b", 2000, Some(Duration::from_millis(20)))
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Timeout { what, .. } if what.contains("payload bytes")),
        "{err}"
    );
    // A small one still fits in what is left.
    let small = producer.try_register_sized("c", 1000).unwrap();
    big.write(TensorMeta::new(DType::U8, &[3000]).unwrap(), &[7; 3000])
        .unwrap();
    small
        .write(TensorMeta::new(DType::U8, &[1000]).unwrap(), &[8; 1000])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    consumer.consume(1);
    // The 3000 bytes are free again: 2000 fit now, after the 1000.
    let again = producer.try_register_sized("b", 2000).unwrap();
    assert_eq!(consumer.item(0).unwrap().bytes(), &[8; 1000][..]);
    drop(again);
}

#[test]
fn a_full_item_ring_is_back_pressure_that_names_the_items() {
    let (producer, mut consumer) = in_process(&cfg(2, 1 << 16)).unwrap();
    for s in 0..2 {
        let slot = producer.register_sized(&format!("t{s}"), 8).unwrap();
        slot.write(TensorMeta::new(DType::U64, &[1]).unwrap(), &[1; 8])
            .unwrap();
    }
    let err = producer.try_register_sized("t2", 8).unwrap_err();
    assert_eq!(
        err,
        StreamError::Full {
            resource: Resource::Items,
            capacity: 2
        }
    );
    consumer.poll().unwrap();
    consumer.consume(1);
    assert!(producer.try_register_sized("t2", 8).is_ok());
}

#[test]
fn a_tensor_larger_than_the_payload_is_refused_with_both_sizes() {
    let (producer, _consumer) = in_process(&cfg(4, 4096)).unwrap();
    let err = producer.register_sized("big", 4097).unwrap_err();
    assert_eq!(
        err,
        StreamError::ExceedsPayload {
            nbytes: 4097,
            payload_bytes: 4096
        }
    );
    assert!(err.to_string().contains("with_payload_bytes"), "{err}");
    // The whole payload is one item.
    assert_eq!(producer.register_sized("all", 4096).unwrap().len(), 4096);
}

#[test]
fn put_of_a_tensor_larger_than_its_default_reservation_names_both_sizes_and_the_fix() {
    let (producer, mut consumer) = in_process(&cfg(4, 4096)).unwrap();
    producer.pre_read_register("x").unwrap();
    let meta = TensorMeta::new(DType::U8, &[100]).unwrap();
    let err = producer.put("x", meta, &[1; 100]).unwrap_err();
    assert_eq!(
        err,
        StreamError::TooLarge {
            nbytes: 100,
            reserved: 64
        }
    );
    assert!(err.to_string().contains("pre_read_register_sized"), "{err}");
    // Still pending: a fitting tensor goes in; a sized registration takes
    // the large one.
    producer
        .put("x", TensorMeta::new(DType::U8, &[64]).unwrap(), &[2; 64])
        .unwrap();
    let offset = producer.pre_read_register_sized("y", 100).unwrap();
    assert_eq!(offset, 64, "placed right after x");
    producer.put("y", meta, &[3; 100]).unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(consumer.item(1).unwrap().bytes(), &[3; 100][..]);
}

#[test]
fn reservations_land_in_the_registrable_region_in_order() {
    let (producer, _consumer) = in_process(&cfg(16, 4096)).unwrap();
    let (base, region) = producer.payload_region();
    let mut previous_end = 0;
    let mut slots = Vec::new();
    for (s, len) in [56u64, 100, 64, 0, 1000, 8].into_iter().enumerate() {
        let mut slot = producer.register_sized(&format!("t{s}"), len).unwrap();
        let offset = slot.payload_offset();
        assert_eq!(offset % placement_align(len), 0, "aligned");
        assert!(offset >= previous_end, "after the previous reservation");
        assert!(offset + len <= region as u64, "inside the region");
        let ptr = slot.payload_mut().as_ptr();
        assert_eq!(ptr as usize, base as usize + offset as usize);
        previous_end = offset + len;
        slots.push(slot);
    }
}

#[test]
fn a_payload_sized_tensor_fits_an_empty_ring_after_unaligned_ones() {
    // The padding before a reservation is free once everything before it
    // is released: the whole payload is one tensor again.
    let (producer, mut consumer) = in_process(&cfg(4, 4096)).unwrap();
    for round in 0..3u8 {
        let small = producer.register_sized("small", 1).unwrap();
        small
            .write(TensorMeta::new(DType::U8, &[1]).unwrap(), &[round])
            .unwrap();
        assert_eq!(consumer.poll().unwrap(), 1);
        consumer.consume(1);
        let mut all = producer.try_register_sized("all", 4096).unwrap();
        assert_eq!(all.payload_offset() % 64, 0);
        all.payload_mut().fill(round);
        all.commit(TensorMeta::new(DType::U8, &[4096]).unwrap())
            .unwrap();
        assert_eq!(consumer.poll().unwrap(), 1);
        assert!(consumer
            .item(0)
            .unwrap()
            .bytes()
            .iter()
            .all(|&b| b == round));
        consumer.consume(1);
    }
}

#[test]
fn the_bytes_of_the_oldest_unreleased_tensor_are_never_reused() {
    // 3000 bytes held at the start; once the 1000 after them are released
    // too, 2000 more fit only after the 3000 are released.
    let (producer, mut consumer) = in_process(&cfg(8, 4096)).unwrap();
    let meta = |n: u64| TensorMeta::new(DType::U8, &[n]).unwrap();
    producer
        .register_sized("a", 3000)
        .unwrap()
        .write(meta(3000), &[1; 3000])
        .unwrap();
    producer
        .register_sized("b", 1000)
        .unwrap()
        .write(meta(1000), &[2; 1000])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    assert!(matches!(
        producer.try_register_sized("c", 2000),
        Err(StreamError::Full {
            resource: Resource::PayloadBytes,
            ..
        })
    ));
    consumer.consume(1);
    producer
        .register_sized("c", 2000)
        .unwrap()
        .write(meta(2000), &[3; 2000])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(consumer.item(0).unwrap().bytes(), &[2; 1000][..]);
    assert_eq!(consumer.item(1).unwrap().bytes(), &[3; 2000][..]);
}

#[test]
fn both_ends_report_the_configured_sizes_and_one_region() {
    let (producer, consumer) = in_process(&cfg(16, 8192).with_item_bytes(96)).unwrap();
    assert_eq!(
        (
            producer.capacity(),
            producer.item_bytes(),
            producer.payload_bytes()
        ),
        (16, 96, 8192)
    );
    assert_eq!(
        (
            consumer.capacity(),
            consumer.item_bytes(),
            consumer.payload_bytes()
        ),
        (16, 96, 8192)
    );
    // The payload mapped twice back to back (Miri's heap ring: once).
    let mapped = if cfg!(miri) { 8192 } else { 2 * 8192 };
    let (theirs, theirs_len) = producer.payload_region();
    let (ours, ours_len) = consumer.payload_region();
    assert_eq!((theirs_len, ours_len), (mapped, mapped));
    assert!(!theirs.is_null() && !ours.is_null());
}

/// Eight 512-byte rows fill a 4096-byte payload; the ninth lands at byte
/// 4096, the start of the next lap. A window that ends exactly at the end
/// of the payload stacks everywhere; one that runs past it stacks only
/// with the mirror (under Miri's heap ring its rows are not one range).
#[test]
fn a_window_up_to_the_payload_end_stacks_and_one_past_it_needs_the_mirror() {
    let (producer, mut consumer) = in_process(&cfg(16, 4096)).unwrap();
    let row = |s: u64| vec![s as u8 + 1; 512];
    let push = |s: u64| {
        let slot = producer.register_sized(&format!("t{s}"), 512).unwrap();
        slot.write(TensorMeta::new(DType::U8, &[512]).unwrap(), &row(s))
            .unwrap();
    };
    (0..8).for_each(push);
    assert_eq!(consumer.poll().unwrap(), 8);
    // Releasing t0 frees its bytes for t8, at the next lap's start.
    consumer.consume(1);
    push(8);
    assert_eq!(consumer.poll().unwrap(), 8);

    // t4..t8: bytes 2048..4096, up to the end of the payload.
    let to_end = consumer.window(3, 4).expect("rows up to the end stack");
    assert_eq!(to_end.shape(), &[4, 512]);
    assert_eq!(to_end.span_bytes(), 2048);
    for k in 0..4 {
        assert_eq!(to_end.item(k).unwrap(), &row(4 + k as u64)[..]);
    }
    // t5..t9: bytes 2560..4608, across the end.
    let across = consumer.window(4, 4);
    if cfg!(miri) {
        assert!(across.is_none(), "no mirror: the rows are not one range");
    } else {
        let across = across.expect("the mirror makes the rows one range");
        assert!(across.is_contiguous());
        for k in 0..4 {
            assert_eq!(across.item(k).unwrap(), &row(5 + k as u64)[..]);
        }
    }
    // Every item still reads whole in place, wherever it lies.
    for k in 0..8 {
        assert_eq!(consumer.item(k).unwrap().bytes(), &row(1 + k)[..]);
    }
}

/// Two 1536-byte tensors take bytes 0..3072 of a 4096-byte payload; a
/// third would run past the end. With the mirror it does (its bytes are
/// one range of the doubled mapping); without one (Miri's heap ring) it
/// moves to the start of the next lap. Either way it is read whole.
#[test]
fn a_reservation_across_the_payload_end_wraps_only_with_the_mirror() {
    let (producer, mut consumer) = in_process(&cfg(8, 4096)).unwrap();
    let meta = TensorMeta::new(DType::U8, &[1536]).unwrap();
    for s in 0..2u8 {
        let slot = producer.register_sized(&format!("t{s}"), 1536).unwrap();
        assert_eq!(slot.payload_offset(), 1536 * s as u64);
        slot.write(meta, &[s + 1; 1536]).unwrap();
    }
    assert_eq!(consumer.poll().unwrap(), 2);
    // 4608 bytes do not fit in 4096 while t0 is unreleased.
    assert!(matches!(
        producer.try_register_sized("t2", 1536),
        Err(StreamError::Full {
            resource: Resource::PayloadBytes,
            ..
        })
    ));
    consumer.consume(1);
    let mut third = producer.try_register_sized("t2", 1536).unwrap();
    let expected = if cfg!(miri) { 0 } else { 3072 };
    assert_eq!(third.payload_offset(), expected);
    third.payload_mut().fill(3);
    third.commit(meta).unwrap();
    consumer.poll().unwrap();
    let last = consumer.available() - 1;
    assert_eq!(consumer.item(last).unwrap().bytes(), &[3; 1536][..]);
}
