//! The ring on the heap, small enough for Miri: a producer thread and a
//! consumer thread, a few dozen items, out-of-order commits, wrap-around,
//! chunk views, a NIC-style write through the payload region, an abandoned
//! slot, a consumer that leaves. Miri checks every access to the slots
//! (data races, out-of-bounds, aliasing) while the asserts check the data.
//!
//! `scripts/test-miri.sh` runs it under Miri; `cargo test --test miri_ring`
//! runs it natively with more items.

#![cfg(not(loom))]

use shmstream::policy::{Fixed, Sliding};
use shmstream::{
    in_process, in_process_buffer, AbandonReason, BatchItem, DType, ItemView, Producer,
    StreamConfig, StreamError, StreamId, TensorMeta, MAX_REASON_LEN,
};
use std::thread;
use std::time::Duration;

/// Items per stream: a few dozen under Miri (every step is interpreted),
/// more natively.
const ITEMS: u64 = if cfg!(miri) { 24 } else { 2_000 };

/// Generous: a wait that ends only by timing out is a lost wake-up, and
/// should fail the test rather than hang it.
const PATIENCE: Option<Duration> = Some(Duration::from_secs(60));

/// A ring of `capacity` slots, one page of payload at least.
fn config(capacity: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes((4096 / capacity).max(64))
    .with_timeout(PATIENCE)
}

/// Item `i` holds `1 + i % 5` u32 words `i * 16 + k` (sizes vary, so a
/// reader that trusts a stale size or a stale slot reads the wrong words).
fn words(i: u64) -> Vec<u32> {
    (0..1 + i % 5).map(|k| (i * 16 + k) as u32).collect()
}

fn meta_of(words: &[u32]) -> TensorMeta {
    TensorMeta::new(DType::U32, &[words.len() as u64]).unwrap()
}

fn le_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Registers item `i` and writes it in place through `payload_mut`.
fn send(producer: &Producer, i: u64) {
    let mut slot = producer.register(&format!("t{i}")).unwrap();
    assert_eq!(slot.position(), i);
    let w = words(i);
    slot.payload_mut()[..w.len() * 4].copy_from_slice(&le_bytes(&w));
    slot.commit(meta_of(&w)).unwrap();
}

/// Checks id, position, shape and every word of item `i`.
fn check(item: &ItemView<'_>, i: u64) {
    let w = words(i);
    assert_eq!(item.position(), i);
    assert_eq!(item.id(), format!("t{i}"));
    assert_eq!(item.shape(), &[w.len() as u64]);
    assert_eq!(item.as_slice::<u32>(), Some(&w[..]), "words of item {i}");
    assert_eq!(item.bytes(), &le_bytes(&w)[..]);
}

#[test]
fn items_cross_two_threads_in_order_with_their_bytes() {
    let (producer, mut consumer) = in_process(&config(4)).unwrap();
    let p = thread::spawn(move || {
        for i in 0..ITEMS {
            send(&producer, i);
        }
        producer.signal_done();
        producer.wait_drained(PATIENCE).unwrap();
    });
    let mut next = 0;
    while next < ITEMS {
        let available = consumer.wait_for(1, PATIENCE).unwrap();
        assert!(available >= 1);
        for k in 0..available {
            check(&consumer.item(k).unwrap(), next + k);
        }
        next += available;
        consumer.consume(available);
    }
    assert_eq!(consumer.wait_for(1, PATIENCE).unwrap(), 0);
    assert!(consumer.is_all_in());
    p.join().unwrap();
}

/// Item `i` of the run test: eight u64 words `i * 8 + k`.
fn run_words(i: u64) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (k, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(i * 8 + k as u64).to_le_bytes());
    }
    out
}

/// Batches of 64 items of 64 bytes are published as runs: the consumer,
/// polling while the producer puts them, only ever sees whole runs. After
/// a first item of 256 bytes every second batch straddles the end of the
/// 8192-byte payload: without a mirror (the heap ring of Miri) the
/// producer splits it there, into runs of 60 and 4 (each seen whole, the
/// stacked view of each part stands, one across the end does not); with
/// one (the memfd of a native run) the run and its view go across. Miri
/// checks every access to the runs' bytes and the consumer's per-run
/// records.
#[test]
fn runs_cross_two_threads_whole_and_split_at_the_wrap() {
    const BATCH: u64 = 64;
    const PAYLOAD: u64 = 8192;
    let batches = if cfg!(miri) { 3 } else { 1_000 };
    let cfg = config(128).with_item_bytes(64);
    let (producer, mut consumer) = in_process(&cfg).unwrap();
    assert_eq!(consumer.payload_bytes(), PAYLOAD);
    let mirrored = consumer.payload_region().1 as u64 > PAYLOAD;
    let meta = TensorMeta::new(DType::U64, &[8]).unwrap();
    let first = [7u8; 256];
    producer
        .put_many(&[BatchItem::new(
            "first",
            TensorMeta::new(DType::U8, &[256]).unwrap(),
            &first,
        )])
        .unwrap();
    assert_eq!(consumer.wait_for(1, PATIENCE).unwrap(), 1);
    consumer.consume(1);
    // Item `i` (from 1) lies at byte 256 + 64 (i - 1): a run ends after
    // the last item of a batch, and where an item ends the payload.
    let ends_run = |i: u64| i % BATCH == 0 || (!mirrored && (256 + 64 * i) % PAYLOAD == 0);
    let p = thread::spawn(move || {
        for b in 0..batches {
            let words: Vec<[u8; 64]> = (1 + b * BATCH..1 + (b + 1) * BATCH)
                .map(run_words)
                .collect();
            let items: Vec<BatchItem> = words.iter().map(|w| BatchItem::unnamed(meta, w)).collect();
            producer.put_many(&items).unwrap();
        }
        producer.signal_done();
        producer.wait_drained(PATIENCE).unwrap();
    });
    let end = 1 + batches * BATCH;
    while consumer.position() < end {
        let available = consumer.poll().unwrap();
        if available == 0 {
            thread::yield_now();
            continue;
        }
        let from = consumer.position();
        let last = from + available - 1;
        assert!(
            ends_run(last),
            "a look at {from}..={last} ends inside a run"
        );
        for k in 0..available {
            let item = consumer.item(k).unwrap();
            assert_eq!(item.position(), from + k);
            assert_eq!(item.id(), (from + k).to_string());
            assert_eq!(item.bytes(), &run_words(from + k)[..], "item {}", from + k);
        }
        // Where an item ends the payload inside this look, the window over
        // it and the next stacks only with a mirror; the items of the lap
        // before it do.
        for i in from..last {
            if (256 + 64 * i) % PAYLOAD == 0 {
                let k = i - from;
                let across = consumer.window(k, 2);
                assert_eq!(
                    across.is_some(),
                    mirrored,
                    "a stacked view across the end at {i}"
                );
                let back = k.min(3);
                let view = consumer.window(k - back, back + 1).unwrap();
                assert_eq!(view.shape(), &[back + 1, 8]);
            }
        }
        consumer.consume(available);
    }
    assert_eq!(consumer.wait_for(1, PATIENCE).unwrap(), 0);
    assert!(consumer.is_all_in());
    p.join().unwrap();
}

#[test]
fn out_of_order_commits_are_seen_only_as_an_in_order_prefix() {
    let (producer, mut consumer) = in_process(&config(4)).unwrap();
    let p = thread::spawn(move || {
        // Groups of three, committed last, first, middle.
        let mut i = 0;
        while i < ITEMS {
            let group: Vec<_> = (i..(i + 3).min(ITEMS))
                .map(|j| (j, producer.register(&format!("t{j}")).unwrap()))
                .collect();
            let mut group: Vec<_> = group.into_iter().map(Some).collect();
            let order: &[usize] = match group.len() {
                3 => &[2, 0, 1],
                2 => &[1, 0],
                _ => &[0],
            };
            for &k in order {
                let (j, slot) = group[k].take().unwrap();
                let w = words(j);
                slot.write(meta_of(&w), &le_bytes(&w)).unwrap();
                thread::yield_now();
            }
            i += 3;
        }
        producer.signal_done();
        producer.wait_drained(PATIENCE).unwrap();
    });
    let mut next = 0;
    while next < ITEMS {
        let available = consumer.wait_for(1, PATIENCE).unwrap();
        // Every item shown is complete and in place, whatever lands later.
        for k in 0..available {
            check(&consumer.item(k).unwrap(), next + k);
        }
        // Take one at a time: later prefixes start past an unreleased slot.
        next += 1;
        consumer.consume(1);
    }
    p.join().unwrap();
}

#[test]
fn held_chunks_survive_wrap_around_and_stack_when_contiguous() {
    // Items of one shape, so windows stack; the heap ring has no mirror,
    // so a window that wraps is not stacked (None), one that does not is.
    let (producer, mut buffer) =
        in_process_buffer::<()>(&config(4), Fixed::new(2).unwrap()).unwrap();
    let p = thread::spawn(move || {
        for i in 0..ITEMS {
            let w = [i as u32, !(i as u32)];
            producer
                .register(&format!("t{i}"))
                .unwrap()
                .write(meta_of(&w), &le_bytes(&w))
                .unwrap();
        }
        producer.signal_done();
    });
    let (mut next, mut finals) = (0u64, 0);
    while let Some(chunk) = buffer.next_chunk_timeout(PATIENCE).unwrap() {
        assert_eq!(chunk.start_offset(), next);
        let check_all = |chunk: &shmstream::StreamChunk<'_>| {
            for (k, item) in chunk.items().enumerate() {
                let i = next + k as u64;
                assert_eq!(item.id(), format!("t{i}"));
                assert_eq!(item.as_slice::<u32>(), Some(&[i as u32, !(i as u32)][..]));
            }
        };
        check_all(&chunk);
        // The producer runs meanwhile and must leave these slots alone.
        thread::yield_now();
        check_all(&chunk);
        match chunk.stacked() {
            Some(view) => {
                assert_eq!(view.shape(), &[chunk.len() as u64, 2]);
                for k in 0..chunk.len() {
                    assert_eq!(view.item(k).unwrap(), chunk.item(k).unwrap().bytes());
                }
                assert_eq!(view.strides()[0], 4096 / 4);
            }
            None => assert!(chunk.is_empty() || next % 4 + chunk.len() as u64 > 4),
        }
        next += chunk.len() as u64;
        finals += u32::from(chunk.is_final());
    }
    assert_eq!((next, finals), (ITEMS, 1));
    p.join().unwrap();
}

#[test]
fn sliding_windows_keep_the_items_past_the_stride_until_dropped() {
    let (producer, mut buffer) =
        in_process_buffer::<()>(&config(4), Sliding::new(4, 2).unwrap()).unwrap();
    let p = thread::spawn(move || {
        for i in 0..ITEMS {
            send(&producer, i);
        }
        producer.signal_done();
    });
    let mut starts = Vec::new();
    while let Some(chunk) = buffer.next_chunk_timeout(PATIENCE).unwrap() {
        let start = chunk.start_offset();
        for (k, item) in chunk.items().enumerate() {
            check(&item, start + k as u64);
        }
        thread::yield_now();
        for (k, item) in chunk.items().enumerate() {
            check(&item, start + k as u64);
        }
        assert_eq!(chunk.context_items(), if start == 0 { 0 } else { 2 });
        starts.push(start);
    }
    // Windows every 2 items; the last one, at ITEMS - 2, is the flush of
    // the two items the window before it already showed.
    let expected: Vec<u64> = (0..ITEMS - 1).step_by(2).collect();
    assert_eq!(starts, expected);
    p.join().unwrap();
}

#[test]
fn bytes_landed_through_the_payload_region_are_read_in_place() {
    // The NIC path: reserve by id, land the bytes at the offset through the
    // raw region, commit by id, in an order unlike registration.
    let (producer, mut consumer) = in_process(&config(8)).unwrap();
    let p = thread::spawn(move || {
        let mut i = 0;
        while i < ITEMS {
            let ids: Vec<u64> = (i..(i + 2).min(ITEMS)).collect();
            let offsets: Vec<u64> = ids
                .iter()
                .map(|j| producer.pre_read_register(&format!("t{j}")).unwrap())
                .collect();
            for (j, offset) in ids.iter().zip(&offsets).rev() {
                let bytes = le_bytes(&words(*j));
                let (base, len) = producer.payload_region();
                assert!(*offset as usize + bytes.len() <= len);
                // SAFETY: the slot at `offset` was reserved for `t{j}` and is
                // not committed yet, so nobody else reads or writes it; the
                // range lies inside the payload region (checked above).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        base.add(*offset as usize),
                        bytes.len(),
                    );
                }
                producer
                    .put_in_place(&format!("t{j}"), meta_of(&words(*j)))
                    .unwrap();
            }
            i += 2;
        }
        producer.signal_done();
        producer.wait_drained(PATIENCE).unwrap();
    });
    let mut next = 0;
    while next < ITEMS {
        let available = consumer.wait_for(1, PATIENCE).unwrap();
        for k in 0..available {
            check(&consumer.item(k).unwrap(), next + k);
        }
        next += available;
        consumer.consume(available);
    }
    p.join().unwrap();
}

#[test]
fn put_copies_bytes_and_commits_by_id() {
    let (producer, mut consumer) = in_process(&config(4)).unwrap();
    for j in 0..3 {
        producer.pre_read_register(&format!("t{j}")).unwrap();
    }
    for j in [1, 2, 0] {
        let w = words(j);
        producer
            .put(&format!("t{j}"), meta_of(&w), &le_bytes(&w))
            .unwrap();
    }
    assert_eq!(consumer.poll().unwrap(), 3);
    for k in 0..3 {
        check(&consumer.item(k).unwrap(), k);
    }
}

#[test]
fn an_abandoned_slot_is_reported_and_the_items_before_it_are_not_lost() {
    let (producer, mut consumer) = in_process(&config(4)).unwrap();
    let p = thread::spawn(move || {
        send(&producer, 0);
        let given_up = producer.register("t1").unwrap();
        send(&producer, 2);
        given_up.abandon_with(AbandonReason::new(-3, &reason_text()));
        producer
    });
    let available = consumer.wait_for(1, PATIENCE).unwrap();
    check(&consumer.item(0).unwrap(), 0);
    consumer.consume(available);
    match consumer.wait_for(1, PATIENCE) {
        Err(StreamError::Abandoned {
            position: 1,
            id,
            reason,
        }) => {
            assert_eq!(id, "t1");
            // Every byte, across the descriptor's words and the side
            // entry's, arrives with the abandonment.
            assert_eq!((reason.code(), reason.text()), (-3, &reason_text()[..]));
        }
        other => panic!("expected t1 abandoned, got {other:?}"),
    }
    drop(p.join().unwrap());
}

/// A reason of exactly `MAX_REASON_LEN` bytes with multi-byte chars on
/// both sides of the descriptor/side-entry split (byte 32), and one (€,
/// bytes 30 to 32) across it.
fn reason_text() -> String {
    let text = format!("status -3: é{}€ end{}", "y".repeat(17), "z".repeat(59));
    assert_eq!(text.len(), MAX_REASON_LEN);
    text
}

#[test]
fn a_producer_blocked_on_a_full_ring_sees_the_consumer_leave() {
    let (producer, consumer) = in_process(&config(2)).unwrap();
    let c = thread::spawn(move || {
        let mut consumer = consumer;
        let _ = consumer.wait_for(2, PATIENCE).unwrap();
        drop(consumer); // without consuming
    });
    send(&producer, 0);
    send(&producer, 1);
    match producer.register_timeout("t2", PATIENCE) {
        Err(StreamError::ConsumerGone) => {}
        other => panic!("expected ConsumerGone, got {other:?}"),
    }
    c.join().unwrap();
}

#[test]
fn a_consumer_waiting_for_data_sees_the_producer_leave() {
    let (producer, mut consumer) = in_process(&config(2)).unwrap();
    let p = thread::spawn(move || {
        send(&producer, 0);
        drop(producer); // without signal_done
    });
    let mut got = 0;
    let error = loop {
        match consumer.wait_for(got + 1, PATIENCE) {
            Ok(n) => got = n,
            Err(e) => break e,
        }
    };
    assert!(matches!(error, StreamError::ProducerGone), "{error:?}");
    check(&consumer.item(0).unwrap(), 0);
    p.join().unwrap();
}
