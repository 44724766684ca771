//! Growing an in-process stream (`src/grow.rs`, issue 26): the move to a
//! bigger ring carries committed items (bytes and metadata), pending ids,
//! abandoned positions and `done`; leases popped before keep reading the
//! old ring, which goes with the last of them; a producer of another
//! stream is refused and nothing changes. Heap-backed under Miri.

use shmstream::policy::Policy;
use shmstream::{
    in_process_buffer, AbandonReason, BatchItem, DType, Need, Producer, StreamBuffer, StreamConfig,
    StreamError, StreamId, TensorMeta,
};
use std::time::Duration;

fn setup(policy: &str, capacity: u64) -> (Producer, StreamBuffer) {
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(64)
    .with_timeout(Some(Duration::ZERO)); // one process: full is full
    in_process_buffer(&cfg, policy.parse::<Policy>().unwrap()).unwrap()
}

/// `n` u64 values: `i * 1000 + k`.
fn values(i: u64, n: u64) -> Vec<u8> {
    (0..n).flat_map(|k| (i * 1000 + k).to_le_bytes()).collect()
}

fn meta(n: u64) -> TensorMeta {
    TensorMeta::new(DType::U64, &[n]).unwrap()
}

fn put(producer: &Producer, id: &str, i: u64, n: u64) {
    producer.put(id, meta(n), &values(i, n)).unwrap();
}

fn check(buffer: &mut StreamBuffer, i: u64, n: u64) {
    let chunk = buffer.pop_chunk().unwrap();
    assert_eq!(chunk.start_offset(), i);
    let item = chunk.item(0).unwrap();
    assert_eq!(item.shape(), &[n]);
    assert_eq!(item.bytes(), &values(i, n)[..], "item {i}");
}

#[test]
fn a_move_carries_committed_pending_and_abandoned_positions() {
    let (mut producer, mut buffer) = setup("fixed:size=1", 4);
    producer.pre_read_register("a").unwrap(); // 0: pending
    producer.pre_read_register("b").unwrap(); // 1: put below, out of order
    producer
        .register("c")
        .unwrap()
        .abandon_with(AbandonReason::new(-3, "read failed")); // 2: abandoned, with why
    producer.pre_read_register("d").unwrap(); // 3: pending
    put(&producer, "b", 1, 4);
    assert!(matches!(
        producer.try_register("e"),
        Err(StreamError::Full { capacity: 4, .. })
    ));
    let grown = buffer
        .grow(&mut producer, Need::Register { nbytes: 64 })
        .unwrap();
    assert_eq!((grown.start, grown.carried), (0, 4));
    assert_eq!(
        grown.capacity, 8,
        "room for the 5 positions and half as many again"
    );
    assert_eq!(grown.copied_bytes, 32);
    assert_eq!(grown.item_bytes, 32, "the largest put");
    producer.pre_read_register("e").unwrap();
    put(&producer, "e", 4, 2);
    put(&producer, "d", 3, 4);
    assert_eq!(buffer.available().unwrap(), 0, "a is still pending");
    put(&producer, "a", 0, 4);
    check(&mut buffer, 0, 4);
    check(&mut buffer, 1, 4);
    assert!(matches!(
        buffer.pop_chunk(),
        Err(StreamError::Abandoned { position: 2, ref id, ref reason })
            if id == "c" && *reason == AbandonReason::new(-3, "read failed")
    ));
}

#[test]
fn leases_of_the_old_ring_read_it_until_the_last_goes() {
    let (mut producer, mut buffer) = setup("fixed:size=2", 4);
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        producer.pre_read_register(id).unwrap();
        put(&producer, id, i as u64, 4);
    }
    let first = buffer.pop_lease().unwrap();
    let second = buffer.pop_lease().unwrap();
    let grown = buffer
        .grow(&mut producer, Need::Register { nbytes: 32 })
        .unwrap();
    assert_eq!((grown.start, grown.carried), (4, 0));
    for i in 4..8 {
        producer.pre_read_register(&format!("t{i}")).unwrap();
        put(&producer, &format!("t{i}"), i, 4);
    }
    assert_eq!(buffer.live_leases(), 2);
    let ids: Vec<&str> = buffer.lease_ids(&first).collect();
    assert_eq!(ids, ["a", "b"]);
    let stacked = buffer.lease_stacked(&second).unwrap();
    assert_eq!(stacked.shape(), &[2, 4]);
    assert_eq!(stacked.item(1).unwrap(), &values(3, 4)[..]);
    assert_eq!(
        buffer.lease_item(&first, 0).unwrap().bytes(),
        &values(0, 4)[..]
    );
    buffer.release_lease(second).unwrap();
    assert_eq!(
        buffer.lease_item(&first, 1).unwrap().bytes(),
        &values(1, 4)[..]
    );
    buffer.release_lease(first).unwrap();
    assert_eq!(buffer.live_leases(), 0);
    let next = buffer.pop_chunk().unwrap();
    assert_eq!(next.start_offset(), 4);
    assert_eq!(next.item(1).unwrap().bytes(), &values(5, 4)[..]);
}

#[test]
fn a_put_larger_than_its_reservation_moves_the_stream_once() {
    let (mut producer, mut buffer) = setup("fixed:size=1", 8);
    for id in ["a", "b", "c"] {
        producer.pre_read_register(id).unwrap(); // 64 bytes each
    }
    let big = 1000; // 8000 bytes
    assert!(matches!(
        producer.put("b", meta(big), &values(1, big)),
        Err(StreamError::TooLarge {
            nbytes: 8000,
            reserved: 64
        })
    ));
    let grown = buffer
        .grow(
            &mut producer,
            Need::Put {
                id: "b",
                nbytes: 8000,
            },
        )
        .unwrap();
    assert_eq!(grown.item_bytes, 8000);
    assert!(grown.payload_bytes >= 3 * (3 * 8000) / 2);
    assert_eq!(producer.item_bytes(), 8000);
    put(&producer, "b", 1, big);
    // The other unsized registrations took the learned size: no move.
    put(&producer, "c", 2, big);
    put(&producer, "a", 0, big);
    producer.signal_done();
    for i in 0..3 {
        check(&mut buffer, i, big);
    }
}

#[test]
fn a_move_before_any_put_learns_nothing_and_the_next_one_learns() {
    let (mut producer, mut buffer) = setup("fixed:size=1", 2);
    producer.pre_read_register("a").unwrap();
    producer.pre_read_register("b").unwrap();
    let grown = buffer
        .grow(&mut producer, Need::Register { nbytes: 64 })
        .unwrap();
    assert_eq!(grown.item_bytes, 64, "the default stays: nothing was put");
    put(&producer, "a", 0, 1);
    put(&producer, "b", 1, 1);
    let mut i = 2;
    while producer.pre_read_register(&format!("t{i}")).is_ok() {
        i += 1;
    }
    let grown = buffer
        .grow(&mut producer, Need::Register { nbytes: 64 })
        .unwrap();
    assert_eq!(grown.item_bytes, 8, "learned from the 8-byte puts");
}

#[test]
fn a_learned_size_is_kept_when_later_items_are_smaller() {
    let (mut producer, mut buffer) = setup("fixed:size=1", 4);
    producer.pre_read_register("big").unwrap();
    // Learned from the put alone: nothing committed is carried.
    let grown = buffer
        .grow(
            &mut producer,
            Need::Put {
                id: "big",
                nbytes: 8000,
            },
        )
        .unwrap();
    assert_eq!(grown.item_bytes, 8000);
    put(&producer, "big", 0, 1000);
    check(&mut buffer, 0, 1000);
    let mut i = 1;
    while producer.pre_read_register(&format!("t{i}")).is_ok() {
        put(&producer, &format!("t{i}"), i, 1);
        i += 1;
    }
    let grown = buffer
        .grow(&mut producer, Need::Register { nbytes: 8 })
        .unwrap();
    assert_eq!(grown.item_bytes, 8000, "a learned size is kept");
    // One found too small at least doubles.
    producer.pre_read_register("huge").unwrap();
    let grown = buffer
        .grow(
            &mut producer,
            Need::Put {
                id: "huge",
                nbytes: 9000,
            },
        )
        .unwrap();
    assert_eq!(grown.item_bytes, 16000);
}

#[test]
fn done_and_positions_carry_over_and_the_stream_ends_once() {
    let (mut producer, mut buffer) = setup("fixed:size=2", 4);
    producer.pre_read_register("a").unwrap();
    producer.pre_read_register("b").unwrap();
    put(&producer, "a", 0, 4);
    producer.signal_done();
    assert!(matches!(
        producer.put("b", meta(100), &values(1, 100)),
        Err(StreamError::TooLarge { .. })
    ));
    buffer
        .grow(
            &mut producer,
            Need::Put {
                id: "b",
                nbytes: 800,
            },
        )
        .unwrap();
    assert!(matches!(
        producer.try_register("x"),
        Err(StreamError::AfterDone)
    ));
    put(&producer, "b", 1, 100);
    let chunk = buffer.next_chunk().unwrap().unwrap();
    assert!(chunk.is_final());
    assert_eq!(chunk.len(), 2);
    assert_eq!(chunk.item(1).unwrap().bytes(), &values(1, 100)[..]);
    drop(chunk);
    assert!(buffer.next_chunk().unwrap().is_none());
}

#[test]
fn a_sliding_window_with_held_chunks_grows_and_reads_right() {
    let (mut producer, mut buffer) = setup("sliding:window=8,stride=2", 8);
    let mut held = Vec::new();
    let mut moves = 0;
    for i in 0..200u64 {
        let id = format!("t{i}");
        if producer.pre_read_register(&id).is_err() {
            buffer
                .grow(&mut producer, Need::Register { nbytes: 32 })
                .unwrap();
            moves += 1;
            producer.pre_read_register(&id).unwrap();
        }
        put(&producer, &id, i, 4);
        while buffer.has_chunk_ready().unwrap() {
            let lease = buffer.pop_lease().unwrap();
            let start = lease.start_offset();
            for (k, want) in (start..start + lease.len() as u64).enumerate() {
                assert_eq!(
                    buffer.lease_item(&lease, k).unwrap().bytes(),
                    &values(want, 4)[..]
                );
            }
            held.push(lease);
            // The worker keeps the last two chunks' tensors.
            if held.len() > 2 {
                buffer.release_lease(held.remove(0)).unwrap();
            }
        }
    }
    assert!((1..=3).contains(&moves), "{moves} moves");
    for lease in &held {
        let start = lease.start_offset();
        let stacked = buffer.lease_stacked(lease).unwrap();
        assert_eq!(stacked.item(7).unwrap(), &values(start + 7, 4)[..]);
    }
}

#[test]
fn many_items_move_a_logarithmic_number_of_times() {
    let (mut producer, mut buffer) = setup("fixed:size=1", 4);
    let n = if cfg!(miri) { 300 } else { 5000 };
    let mut moves = 0;
    let mut copied = 0;
    for i in 0..n {
        let id = format!("t{i}");
        if producer.pre_read_register(&id).is_err() {
            let g = buffer
                .grow(&mut producer, Need::Register { nbytes: 8 })
                .unwrap();
            moves += 1;
            copied += g.copied_bytes;
            producer.pre_read_register(&id).unwrap();
        }
        put(&producer, &id, i, 1);
    }
    // 4 -> 8 -> ... : one move per doubling, each item copied < 2 times.
    let bound = 64 - n.leading_zeros();
    assert!(moves <= bound, "{moves} moves for {n} items");
    assert!(
        copied < 2 * 8 * n,
        "{copied} bytes copied for {n} items of 8"
    );
    for i in 0..n {
        check(&mut buffer, i, 1);
    }
}

#[test]
fn another_streams_producer_is_refused_and_nothing_changes() {
    let (mut other, _other_buffer) = setup("fixed:size=1", 4);
    let (producer, mut buffer) = setup("fixed:size=1", 4);
    producer.pre_read_register("a").unwrap();
    let e = buffer
        .grow(&mut other, Need::Register { nbytes: 8 })
        .unwrap_err();
    assert!(e.to_string().contains("not this buffer's"), "{e}");
    assert!(matches!(
        buffer.grow(&mut other, Need::Put { id: "a", nbytes: 8 }),
        Err(StreamError::NotGrown { .. })
    ));
    put(&producer, "a", 0, 1);
    check(&mut buffer, 0, 1);
}

#[test]
fn a_put_of_an_id_not_pending_is_unknown() {
    let (mut producer, mut buffer) = setup("fixed:size=1", 4);
    assert!(matches!(
        buffer.grow(&mut producer, Need::Put { id: "zz", nbytes: 8 }),
        Err(StreamError::UnknownId { ref id }) if id == "zz"
    ));
    assert_eq!(producer.capacity(), 4);
}

/// One move of 1k items of 64 KiB (64 MiB copied), timed and printed:
/// `SHMSTREAM_GROW_MEASURE=1 cargo test --release --test grow -- --nocapture measure`.
#[test]
#[cfg(not(miri))]
fn measure_one_move_of_1k_items_of_64_kib() {
    if std::env::var_os("SHMSTREAM_GROW_MEASURE").is_none() {
        return;
    }
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(1024)
    .with_item_bytes(65536);
    let (mut producer, mut buffer) =
        in_process_buffer::<()>(&cfg, "fixed:size=1".parse::<Policy>().unwrap()).unwrap();
    let data = vec![7u8; 65536];
    let m = TensorMeta::new(DType::U8, &[65536]).unwrap();
    for i in 0..1024 {
        producer
            .register(&format!("t{i}"))
            .unwrap()
            .write(m, &data)
            .unwrap();
    }
    let t = std::time::Instant::now();
    let g = buffer
        .grow(&mut producer, Need::Register { nbytes: 65536 })
        .unwrap();
    let took = t.elapsed();
    println!(
        "one move: {} items, {} bytes copied, in {:?} ({:.2} GB/s); new ring {} items, {} payload bytes",
        g.carried,
        g.copied_bytes,
        took,
        g.copied_bytes as f64 / took.as_secs_f64() / 1e9,
        g.capacity,
        g.payload_bytes
    );
    assert_eq!(g.carried, 1024);
}

#[test]
fn a_move_carries_a_run_and_an_item_committed_alone_with_their_shapes() {
    // A run of three (one put_many of one shape: only the head's descriptor
    // has the metadata) and one item alone (its own descriptor has it).
    let (mut producer, mut buffer) = setup("fixed:size=1", 4);
    let run: Vec<Vec<u8>> = (0..3).map(|i| values(i, 4)).collect();
    let batch: Vec<BatchItem> = ["a", "b", "c"]
        .iter()
        .zip(&run)
        .map(|(id, bytes)| BatchItem::new(id, meta(4), bytes))
        .collect();
    producer.put_many(&batch).unwrap();
    let alone = values(3, 2);
    producer
        .put_many(&[BatchItem::new("d", meta(2), &alone)])
        .unwrap();
    assert!(producer.try_register("e").is_err());
    buffer
        .grow(&mut producer, Need::Register { nbytes: 8 })
        .unwrap();
    let last = values(4, 1);
    producer
        .put_many(&[BatchItem::new("e", meta(1), &last)])
        .unwrap();
    producer.signal_done();
    for i in 0..3 {
        check(&mut buffer, i, 4);
    }
    check(&mut buffer, 3, 2);
    check(&mut buffer, 4, 1);
}
