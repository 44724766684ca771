//! Leased chunks (`src/lease.rs`): a lease's slots stay unreleased until it
//! is handed back, in any order, while the stream moves on; leases see the
//! same chunks as `pop_chunk`; a lease from another buffer finds nothing.

use shmstream::policy::Policy;
use shmstream::{
    in_process_buffer, DType, Producer, Resource, StreamBuffer, StreamConfig, StreamError,
    StreamId, TensorMeta,
};
use std::time::Duration;

fn setup(policy: &str, capacity: u64) -> (Producer, StreamBuffer) {
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(64);
    in_process_buffer(&cfg, policy.parse::<Policy>().unwrap()).unwrap()
}

fn put(producer: &Producer, i: u64) {
    let bytes: Vec<u8> = (0..8).flat_map(|k| (i * 100 + k).to_le_bytes()).collect();
    producer
        .register(&format!("t{i}"))
        .unwrap()
        .write(TensorMeta::new(DType::U64, &[8]).unwrap(), &bytes)
        .unwrap();
}

fn first_value(buffer: &StreamBuffer, lease: &shmstream::ChunkLease, i: usize) -> u64 {
    let item = buffer.lease_item(lease, i).unwrap();
    item.as_slice::<u64>().unwrap()[0]
}

#[test]
fn leased_slots_stay_unreleased_until_handed_back() {
    let (producer, mut buffer) = setup("fixed:size=2", 4);
    for i in 0..4 {
        put(&producer, i);
    }
    let a = buffer.pop_lease().unwrap();
    let b = buffer.pop_lease().unwrap();
    assert_eq!((a.start_offset(), a.len(), b.start_offset()), (0, 2, 2));
    assert_eq!(buffer.consumed(), 4);
    assert_eq!(buffer.live_leases(), 2);
    // Nothing is released: the ring is full.
    assert!(matches!(
        producer.try_register("x"),
        Err(StreamError::Full {
            resource: Resource::Items,
            ..
        })
    ));
    // Handing back the newer one first releases nothing (the older holds
    // the ring from position 0).
    buffer.release_lease(b).unwrap();
    assert!(producer.try_register("x").is_err());
    assert_eq!(first_value(&buffer, &a, 1), 100);
    buffer.release_lease(a).unwrap();
    // Now all four are free.
    for i in 4..8 {
        put(&producer, i);
    }
    let c = buffer.pop_lease().unwrap();
    assert_eq!(first_value(&buffer, &c, 0), 400);
    buffer.release_lease(c).unwrap();
}

#[test]
fn a_lease_sees_the_same_chunks_as_pop_chunk() {
    for policy in [
        "fixed:size=3",
        "sliding:window=4,stride=2",
        "left-context:chunk=4,context=1",
        "ramp:first=1,size=2,growth=2,max=4",
        "scheduled:schedule=1/2,chunk=3,context=2",
    ] {
        for n in [0u64, 1, 5, 12] {
            let (p1, mut plain) = setup(policy, 16);
            let (p2, mut leased) = setup(policy, 16);
            for i in 0..n {
                put(&p1, i);
                put(&p2, i);
            }
            p1.signal_done();
            p2.signal_done();
            let mut expected = vec![];
            while let Some(chunk) = plain.next_chunk_timeout(Some(Duration::ZERO)).unwrap() {
                let ids: Vec<String> = chunk.ids().map(str::to_string).collect();
                expected.push((
                    chunk.chunk_index(),
                    chunk.start_offset(),
                    chunk.is_final(),
                    chunk.context_items(),
                    ids,
                ));
            }
            let mut got = vec![];
            let mut held = vec![];
            while let Some(lease) = leased.next_lease_timeout(Some(Duration::ZERO)).unwrap() {
                let ids: Vec<String> = leased.lease_ids(&lease).map(str::to_string).collect();
                got.push((
                    lease.chunk_index(),
                    lease.start_offset(),
                    lease.is_final(),
                    lease.context_items(),
                    ids,
                ));
                // Keep every other lease out until the end.
                if lease.chunk_index() % 2 == 0 {
                    held.push(lease);
                } else {
                    leased.release_lease(lease).unwrap();
                }
            }
            assert_eq!(got, expected, "{policy} over {n} items");
            assert_eq!(
                got.iter().filter(|c| c.2).count(),
                1,
                "{policy} over {n} items"
            );
            for lease in held {
                leased.release_lease(lease).unwrap();
            }
            assert_eq!(leased.live_leases(), 0);
            p2.wait_drained(Some(Duration::ZERO)).unwrap();
        }
    }
}

#[test]
fn a_held_lease_keeps_its_bytes_while_the_producer_runs() {
    let (producer, mut buffer) = setup("fixed:size=2", 8);
    for i in 0..2 {
        put(&producer, i);
    }
    let kept = buffer.pop_lease().unwrap();
    let before: Vec<u8> = buffer
        .lease_stacked(&kept)
        .unwrap()
        .contiguous()
        .unwrap()
        .to_vec();
    let writer = std::thread::spawn(move || {
        let mut sent = 2;
        for i in 2..2000u64 {
            let bytes: Vec<u8> = (0..8).flat_map(|k| (i * 100 + k).to_le_bytes()).collect();
            let slot = producer.register_timeout(&format!("t{i}"), Some(Duration::from_millis(50)));
            match slot {
                Ok(slot) => slot
                    .write(TensorMeta::new(DType::U64, &[8]).unwrap(), &bytes)
                    .unwrap(),
                // The consumer holds the oldest lease; the producer waits.
                Err(StreamError::Timeout { .. }) => break,
                Err(e) => panic!("{e}"),
            }
            sent = i + 1;
        }
        (producer, sent)
    });
    // Pop and hand back everything the producer sends while `kept` is out.
    let mut popped = 0;
    while let Ok(Some(lease)) = buffer.next_lease_timeout(Some(Duration::from_millis(200))) {
        popped += 1;
        buffer.release_lease(lease).unwrap();
    }
    let (producer, sent) = writer.join().unwrap();
    // The ring filled up behind the lease: 8 slots from position 0 on.
    assert_eq!(sent, 8);
    assert_eq!(popped, 3);
    let after = buffer
        .lease_stacked(&kept)
        .unwrap()
        .contiguous()
        .unwrap()
        .to_vec();
    assert_eq!(before, after);
    buffer.release_lease(kept).unwrap();
    put(&producer, 10);
}

#[test]
fn a_lease_from_another_buffer_finds_nothing() {
    let (p1, mut one) = setup("fixed:size=1", 4);
    let (_p2, two) = setup("fixed:size=1", 4);
    put(&p1, 0);
    let lease = one.pop_lease().unwrap();
    assert!(two.lease_item(&lease, 0).is_none());
    assert!(two.lease_stacked(&lease).is_none());
    assert_eq!(two.lease_ids(&lease).len(), 0);
    let mut two = two;
    let back = two.release_lease(lease).unwrap_err().0;
    assert!(one.lease_item(&back, 0).is_some());
    one.release_lease(back).unwrap();
}

#[test]
fn pop_lease_when_not_ready_changes_nothing() {
    let (producer, mut buffer) = setup("fixed:size=2", 4);
    put(&producer, 0);
    assert_eq!(buffer.pop_lease(), Err(StreamError::NotReady));
    assert_eq!(buffer.live_leases(), 0);
    put(&producer, 1);
    let lease = buffer.pop_lease().unwrap();
    assert_eq!(lease.chunk_index(), 0);
    buffer.release_lease(lease).unwrap();
}

#[test]
fn leases_and_borrowed_chunks_mix() {
    let (producer, mut buffer) = setup("fixed:size=1", 4);
    for i in 0..4 {
        put(&producer, i);
    }
    let lease = buffer.pop_lease().unwrap();
    {
        let chunk = buffer.pop_chunk().unwrap();
        assert_eq!(chunk.start_offset(), 1);
    } // dropping the chunk releases nothing past the lease's position 0
    assert!(producer.try_register("x").is_err());
    assert_eq!(first_value(&buffer, &lease, 0), 0);
    buffer.release_lease(lease).unwrap();
    // Positions 0 and 1 are free now.
    put(&producer, 4);
    put(&producer, 5);
    assert!(producer.try_register("x").is_err());
}
