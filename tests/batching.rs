//! Adaptive batching on the producer (issue 24, `src/protocol/staged.rs`):
//! one-by-one commits that continue the producer's run are staged in the
//! control block's `staged` word instead of published by their own `seq`;
//! the consumer takes the run when its walk stops there. Every item is
//! seen once, in order, with its bytes; a consumer asleep before a commit
//! wakes; flush, done and drop publish the held run; the batch and by-id
//! calls, `StreamSet::wait_any` and growth keep working.
//!
//! `scripts/test-miri.sh` runs the in-process tests under Miri (counts
//! scaled down); the ones that read the segment file are native only.

mod common;

use common::{check_item, fill_item};
use shmstream::policy::Policy;
use shmstream::{
    in_process, in_process_buffer, BatchItem, Consumer, DType, Need, Producer, StreamConfig,
    StreamId, StreamSet, TensorMeta,
};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: a wait that ends by timing out is a lost wake-up.
const PATIENCE: Duration = Duration::from_secs(20);

fn sid(tag: &str) -> StreamId {
    StreamId {
        request_id: tag.into(),
        edge_name: "codec".into(),
        from_partition: "p".into(),
    }
}

fn cfg(tag: &str, capacity: u64) -> StreamConfig {
    StreamConfig::new(sid(tag))
        .with_capacity(capacity)
        .with_item_bytes(56)
        .with_payload_bytes(1 << 16)
        .with_timeout(Some(PATIENCE))
}

/// Seven u64 words: 56 bytes, a codec frame.
fn frame() -> TensorMeta {
    TensorMeta::new(DType::U64, &[7]).unwrap()
}

/// Commits item `seq` (56 bytes, `check_item`'s scheme) with its own
/// `register` and `commit`: the one-by-one path batching stages.
fn send(producer: &Producer, seq: u64) {
    let mut slot = producer.register_sized(&format!("t{seq}"), 56).unwrap();
    fill_item(seq, slot.payload_mut());
    slot.commit(frame()).map_err(|e| e.error).unwrap();
}

/// Reads every item of the prefix: positions, ids and bytes in order from
/// `*next`; consumes them.
fn drain(consumer: &mut Consumer, next: &mut u64) {
    let available = consumer.poll().unwrap();
    for k in 0..available {
        let item = consumer.item(k).unwrap();
        assert_eq!(item.position(), *next);
        assert_eq!(item.id(), format!("t{next}"));
        assert_eq!(check_item(item.bytes()), Ok(*next));
        *next += 1;
    }
    consumer.consume(available);
}

#[test]
fn one_by_one_commits_are_taken_as_one_run_and_seen_in_order() {
    let (producer, mut consumer) = in_process(&cfg("run", 16)).unwrap();
    producer.set_batching(Some(64));
    assert_eq!(producer.batching(), Some(16), "clamped to the capacity");
    for seq in 0..5 {
        send(&producer, seq);
    }
    assert_eq!(consumer.poll().unwrap(), 5);
    // One run: the five stack as one contiguous view.
    let window = consumer.window(0, 5).unwrap();
    assert_eq!(window.shape(), &[5, 7]);
    assert!(window.is_contiguous());
    let mut next = 0;
    drain(&mut consumer, &mut next);
    // The next commits start a new run after the taken one.
    for seq in 5..8 {
        send(&producer, seq);
    }
    drain(&mut consumer, &mut next);
    assert_eq!(next, 8);
    producer.set_batching(None);
    assert_eq!(producer.batching(), None);
    send(&producer, 8);
    drain(&mut consumer, &mut next);
    assert_eq!(next, 9);
}

#[test]
fn a_run_is_bounded_by_max_items_and_broken_by_another_shape() {
    let (producer, mut consumer) = in_process(&cfg("bounds", 16)).unwrap();
    producer.set_batching(Some(2));
    for seq in 0..5 {
        send(&producer, seq);
    }
    // Another dtype and shape in the same 56 bytes breaks the run.
    let odd = TensorMeta::new(DType::U32, &[14]).unwrap();
    producer
        .register_sized("odd", 56)
        .unwrap()
        .write(odd, &[9; 56])
        .unwrap();
    assert_eq!(consumer.poll().unwrap(), 6);
    for k in 0..5 {
        assert_eq!(check_item(consumer.item(k).unwrap().bytes()), Ok(k));
    }
    assert_eq!(consumer.item(5).unwrap().dtype(), DType::U32);
    assert_eq!(consumer.item(5).unwrap().bytes(), &[9; 56]);
}

#[test]
fn a_run_of_the_whole_ring_is_staged_and_taken() {
    let (producer, mut consumer) = in_process(&cfg("whole", 4)).unwrap();
    producer.set_batching(Some(4));
    for seq in 0..4 {
        send(&producer, seq);
    }
    assert_eq!(consumer.poll().unwrap(), 4, "a run of the capacity");
    let mut next = 0;
    drain(&mut consumer, &mut next);
    send(&producer, 4);
    drain(&mut consumer, &mut next);
    assert_eq!(next, 5);
}

#[test]
fn a_consumer_asleep_before_the_commit_is_woken_by_it() {
    let (producer, mut consumer) = in_process(&cfg("sleeper", 16)).unwrap();
    producer.set_batching(Some(64));
    let waiter = thread::spawn(move || {
        let start = Instant::now();
        let got = consumer.wait_for(1, Some(PATIENCE)).unwrap();
        (got, start.elapsed(), consumer)
    });
    // Long enough for the consumer to have gone to sleep (after its short
    // spin and yield), so the commit's ring must wake it.
    thread::sleep(Duration::from_millis(200));
    send(&producer, 0);
    let (got, waited, mut consumer) = waiter.join().unwrap();
    assert_eq!(got, 1);
    assert!(waited < PATIENCE, "woken only by the timeout: {waited:?}");
    let mut next = 0;
    drain(&mut consumer, &mut next);
    // The producer is still holding nothing back: a second sleeper, a
    // second commit into the same (taken) run's successor.
    let waiter = thread::spawn(move || {
        let got = consumer.wait_for(1, Some(PATIENCE)).unwrap();
        (got, consumer)
    });
    thread::sleep(Duration::from_millis(100));
    send(&producer, 1);
    let (got, _) = waiter.join().unwrap();
    assert_eq!(got, 1);
}

#[test]
fn two_threads_see_every_item_once_in_order() {
    let items: u64 = if cfg!(miri) { 40 } else { 20_000 };
    let (producer, mut consumer) = in_process(&cfg("threads", 32)).unwrap();
    producer.set_batching(Some(16));
    let p = thread::spawn(move || {
        for seq in 0..items {
            if seq % 97 == 50 {
                // A batch call and a flush in the middle: they publish the
                // held run first.
                producer.flush();
            }
            send(&producer, seq);
        }
        producer.signal_done();
        producer
    });
    let mut next = 0;
    while next < items {
        consumer.wait_for(1, Some(PATIENCE)).unwrap();
        drain(&mut consumer, &mut next);
    }
    assert_eq!(next, items);
    drop(p.join().unwrap());
}

#[test]
fn batch_and_by_id_calls_publish_the_held_run_first() {
    let (producer, mut consumer) = in_process(&cfg("calls", 32)).unwrap();
    producer.set_batching(Some(64));
    send(&producer, 0);
    send(&producer, 1);
    let mut b = [0u8; 56];
    fill_item(2, &mut b);
    let mut c = [0u8; 56];
    fill_item(3, &mut c);
    producer
        .put_many(&[
            BatchItem::new("t2", frame(), &b),
            BatchItem::new("t3", frame(), &c),
        ])
        .unwrap();
    // By id, out of order: 5 lands first (not in order: published
    // alone), then 4 (in order: staged), then 6, which does not continue
    // 4's run (5 is between): 4 is published and 6 staged.
    for seq in 4..7 {
        producer
            .pre_read_register_sized(&format!("t{seq}"), 56)
            .unwrap();
    }
    let mut bytes = [0u8; 56];
    for seq in [5, 4, 6] {
        fill_item(seq, &mut bytes);
        producer.put(&format!("t{seq}"), frame(), &bytes).unwrap();
    }
    // A slot dropped uncommitted after a staged one: the abandon publishes
    // the held run before it.
    send(&producer, 7);
    drop(producer.register_sized("t8", 56).unwrap());
    let mut next = 0;
    drain(&mut consumer, &mut next);
    assert_eq!(next, 8);
    assert!(matches!(
        consumer.poll(),
        Err(shmstream::StreamError::Abandoned { position: 8, .. })
    ));
}

#[test]
fn wait_any_sees_a_staged_stream() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&cfg("set", 8)).unwrap();
    producer.set_batching(Some(8));
    let p = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        send(&producer, 0);
        send(&producer, 1);
        producer
    });
    let mut seen = 0;
    while seen < 2 {
        let ready = set.wait_any(Some(PATIENCE));
        assert!(!ready.is_empty(), "wait_any timed out: a lost wake-up");
        let buffer = set.get_mut(ready[0]).unwrap();
        while let Ok(chunk) = buffer.pop_chunk() {
            assert_eq!(check_item(chunk.item(0).unwrap().bytes()), Ok(seen));
            seen += 1;
        }
    }
    drop(p.join().unwrap());
}

#[test]
fn growth_carries_a_held_run_and_keeps_batching() {
    let config = cfg("grow", 4).with_timeout(Some(Duration::ZERO));
    let (mut producer, mut buffer): (Producer, shmstream::StreamBuffer) =
        in_process_buffer(&config, "fixed:size=1".parse::<Policy>().unwrap()).unwrap();
    producer.set_batching(Some(4));
    for seq in 0..4 {
        send(&producer, seq);
    }
    let grown = buffer
        .grow(&mut producer, Need::Register { nbytes: 56 })
        .unwrap();
    assert_eq!((grown.start, grown.carried), (0, 4));
    assert_eq!(producer.batching(), Some(4), "the new ring batches too");
    send(&producer, 4);
    for seq in 0..5 {
        let chunk = buffer.pop_chunk().unwrap();
        assert_eq!(chunk.start_offset(), seq);
        assert_eq!(check_item(chunk.item(0).unwrap().bytes()), Ok(seq));
    }
}

/// The shared state itself, read from the segment file: a held run is
/// staged (its head's `seq` not stored, the word naming it), and flush,
/// `signal_done` and the drop store the head's `seq`.
#[cfg(not(miri))]
mod shared_state {
    use super::*;
    use common::{unique_prefix, Cleanup};
    use std::os::unix::fs::FileExt;

    // docs/design.md, "The segment, byte by byte".
    const STAGED: u64 = 1024 + 640;
    const DESCRIPTORS: u64 = 4096;
    const TAKEN: u64 = 1 << 63;

    struct Segment {
        file: std::fs::File,
        config: StreamConfig,
        _cleanup: Cleanup,
    }

    impl Segment {
        fn new(tag: &str) -> (Segment, Producer) {
            let prefix = unique_prefix(tag);
            let cleanup = Cleanup(prefix.clone());
            let config = common::config(&prefix, 8, 56);
            let producer = Producer::create(&config).unwrap();
            let path = format!("/dev/shm{}", config.segment_name().unwrap());
            let file = std::fs::File::open(path).unwrap();
            let segment = Segment {
                file,
                config,
                _cleanup: cleanup,
            };
            (segment, producer)
        }

        fn u64(&self, offset: u64) -> u64 {
            let mut b = [0u8; 8];
            self.file.read_exact_at(&mut b, offset).unwrap();
            u64::from_ne_bytes(b)
        }

        fn seq(&self, position: u64) -> u64 {
            self.u64(DESCRIPTORS + (position % 8) * 64)
        }

        /// (taken, head's low bits, count).
        fn staged(&self) -> (bool, u64, u64) {
            let w = self.u64(STAGED);
            (
                w & TAKEN != 0,
                (w >> 21) & ((1 << 42) - 1),
                w & ((1 << 21) - 1),
            )
        }
    }

    /// Stages three items, checks they are staged, then `publish`es and
    /// checks the head's `seq` says 3 and the word is claimed.
    fn published_by(tag: &str, publish: impl FnOnce(Producer) -> Option<Producer>) {
        let (segment, producer) = Segment::new(tag);
        let mut consumer = Consumer::open(&segment.config).unwrap();
        producer.set_batching(Some(8));
        for seq in 0..3 {
            send(&producer, seq);
        }
        assert_eq!(segment.seq(0), 0, "staged, not published");
        assert_eq!(segment.staged(), (false, 0, 3));
        let kept = publish(producer);
        assert_eq!(segment.seq(0), 3, "published as one run");
        assert!(segment.staged().0, "the word claimed: it stages nothing");
        let mut next = 0;
        drain(&mut consumer, &mut next);
        assert_eq!(next, 3);
        drop(kept);
    }

    #[test]
    fn flush_publishes_the_held_run() {
        published_by("flush", |p| {
            p.flush();
            Some(p)
        });
    }

    #[test]
    fn signal_done_publishes_the_held_run() {
        published_by("done", |p| {
            p.signal_done();
            Some(p)
        });
    }

    #[test]
    fn the_drop_publishes_the_held_run() {
        published_by("drop", |p| {
            drop(p);
            None
        });
    }

    #[test]
    fn a_run_the_consumer_took_reads_as_published_and_the_next_starts_after_it() {
        let (segment, producer) = Segment::new("taken");
        let mut consumer = Consumer::open(&segment.config).unwrap();
        producer.set_batching(Some(8));
        send(&producer, 0);
        send(&producer, 1);
        assert_eq!(consumer.poll().unwrap(), 2);
        assert_eq!(segment.staged(), (true, 0, 2), "taken by the consumer");
        assert_eq!(segment.seq(0), 0, "the consumer maps descriptors read-only");
        send(&producer, 2);
        assert_eq!(segment.seq(0), 2, "the producer stored the taken run's seq");
        assert_eq!(segment.staged(), (false, 2, 1), "a new run at 2");
        // Another shape publishes the held run and stages itself.
        producer
            .register_sized("x", 56)
            .unwrap()
            .write(TensorMeta::new(DType::U8, &[56]).unwrap(), &[1; 56])
            .unwrap();
        assert_eq!(segment.seq(2), 3);
        assert_eq!(segment.staged(), (false, 3, 1));
        assert_eq!(consumer.poll().unwrap(), 4);
    }

    /// A consumer that takes a run of one before the next commit could
    /// extend it is looking all the time: the producer then publishes
    /// directly (each item its own `seq`, the word left alone) for
    /// `max_items` commits, and stages again after.
    #[test]
    fn a_run_of_one_taken_at_once_makes_the_next_commits_publish_directly() {
        let (segment, producer) = Segment::new("direct");
        let mut consumer = Consumer::open(&segment.config).unwrap();
        producer.set_batching(Some(2));
        send(&producer, 0);
        assert_eq!(consumer.poll().unwrap(), 1, "taken alone");
        send(&producer, 1);
        assert_eq!(segment.seq(0), 1, "the taken run's seq");
        assert_eq!(segment.seq(1), 2, "published directly");
        send(&producer, 2);
        assert_eq!(segment.seq(2), 3, "published directly");
        assert_eq!(segment.staged(), (true, 0, 2), "the word left alone");
        // Two direct commits done: staging again.
        send(&producer, 3);
        assert_eq!(segment.seq(3), 0);
        assert_eq!(segment.staged(), (false, 3, 1));
        let mut next = 0;
        drain(&mut consumer, &mut next);
        assert_eq!(next, 4);
    }
}
