//! Hostile or corrupted shared memory: an outside writer (a second open file
//! description of the segment, as another process would have) puts
//! impossible values into a live segment's control block and descriptors.
//! The consumer must answer with an error naming the field, never with an
//! out-of-bounds read, a panic or an endless loop.
//!
//! - one targeted test per impossible value;
//! - `hostile_writes_never_break_the_consumer`: property-based, random and
//!   adversarial writes before and between the consumer's calls
//!   (`SHMSTREAM_HOSTILE_CASES` cases, default 10 000; the long run is
//!   `SHMSTREAM_HOSTILE_CASES=100000 cargo test --release --test hostile`);
//! - `concurrent_hostile_writes_never_break_the_consumer` and
//!   `a_free_running_hostile_writer_never_breaks_the_consumer`: the writes
//!   come from another thread while the consumer reads.

mod common;

use common::{commit_item, config, unique_prefix, Cleanup};
use proptest::prelude::*;
use shmstream::policy::{Fixed, Sliding};
use shmstream::{
    placement_align, AbandonReason, Consumer, DType, Producer, StreamBuffer, StreamConfig,
    StreamError, TensorMeta, MAX_REASON_LEN,
};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Offsets of docs/design.md, "The segment, byte by byte".
const REGISTERED: u64 = 1024;
const RELEASED: u64 = 1152;
const FLAGS: u64 = 1280;
const DATA_BELL: u64 = 1408;
const SPACE_BELL: u64 = 1536;
/// The producer's held run under adaptive batching (issue 24).
const STAGED: u64 = 1664;
const STAGED_TAKEN: u64 = 1 << 63;
const DESCRIPTORS: u64 = 4096;
const DESCRIPTOR_BYTES: u64 = 64;
const SEQ: u64 = 0;
const OFFSET: u64 = 8;
const LEN: u64 = 16;
const INFO: u64 = 24;
/// u32: the byte count, or `WIDE`.
const NBYTES: u64 = 28;
/// u32 each.
const DIMS: u64 = 32;
const WIDE: u32 = u32::MAX;
/// The side table, after the descriptors: 128 bytes per slot.
const SIDE_ENTRY_BYTES: u64 = 128;
const ID: u64 = 0;
/// u64 each: a wide item's dims.
const WIDE_DIMS: u64 = 64;

const STATUS_COMMITTED: u32 = 1;
const STATUS_ABANDONED: u32 = 2;
const U64_CODE: u32 = 13;

/// A short wait: long enough to show the call does not hang, short enough
/// to keep the suite fast.
const SHORT: Duration = Duration::from_millis(50);
/// Anything slower than this counts as a hang.
const HANG: Duration = Duration::from_secs(5);
/// An empty poll looks at `registered` only on every this-many-th poll in a
/// row that found nothing new, or before a wait sleeps (issue 24: a
/// spinning consumer must not take the producer's line on every poll).
const IDLE_CHECK: u32 = 1024;

fn desc(slot: u64, field: u64) -> u64 {
    DESCRIPTORS + slot * DESCRIPTOR_BYTES + field
}

/// A field of the side entry of `slot` in a ring of `capacity`.
fn side(capacity: u64, slot: u64, field: u64) -> u64 {
    DESCRIPTORS + capacity * DESCRIPTOR_BYTES + slot * SIDE_ENTRY_BYTES + field
}

fn info(status: u32, dtype: u32, ndim: u32, id_len: u32) -> u32 {
    status | dtype << 8 | ndim << 16 | id_len << 24
}

/// The outside writer: its own open file description of the segment.
struct Poker(File);

impl Poker {
    fn new(cfg: &StreamConfig) -> Poker {
        let path = format!("/dev/shm{}", cfg.segment_name().unwrap());
        Poker(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap(),
        )
    }

    fn bytes(&self, offset: u64, bytes: &[u8]) {
        self.0.write_all_at(bytes, offset).unwrap();
    }

    fn u64(&self, offset: u64, v: u64) {
        self.bytes(offset, &v.to_ne_bytes());
    }

    fn u32(&self, offset: u64, v: u32) {
        self.bytes(offset, &v.to_ne_bytes());
    }

    fn read_u32(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.0.read_exact_at(&mut b, offset).unwrap();
        u32::from_ne_bytes(b)
    }

    fn read_u64(&self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.0.read_exact_at(&mut b, offset).unwrap();
        u64::from_ne_bytes(b)
    }
}

/// A live stream (producer and outside writer) whose segment is removed at
/// the end, also when the test fails.
struct Stream {
    producer: Producer,
    poker: Poker,
    cfg: StreamConfig,
    _cleanup: Cleanup,
}

fn stream(tag: &str, capacity: u64, item_bytes: u64) -> Stream {
    let prefix = unique_prefix(tag);
    let cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, capacity, item_bytes);
    let producer = Producer::create(&cfg).unwrap();
    let poker = Poker::new(&cfg);
    Stream {
        producer,
        poker,
        cfg,
        _cleanup: cleanup,
    }
}

/// Commits `n` items `t<k>` of 4 u64 words.
fn commit(producer: &Producer, n: u64) {
    for _ in 0..n {
        let k = producer.registered();
        commit_item(producer.register(&format!("t{k}")).unwrap(), k, 4);
    }
}

/// `r` must be `Corrupt` with a message containing `needle` (the field).
fn expect_corrupt<T: std::fmt::Debug>(r: Result<T, StreamError>, needle: &str) -> String {
    match r {
        Err(StreamError::Corrupt(msg)) if msg.contains(needle) => msg,
        other => panic!("expected Corrupt naming {needle:?}, got {other:?}"),
    }
}

/// Runs `f` and fails if it took long enough to count as a hang.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < HANG, "{what} took {:?}", start.elapsed());
    out
}

/// Polls with `poll` (which must not find anything new) until it reports
/// the damage: on the `IDLE_CHECK`-th poll in a row at the latest, for a
/// value that only an idle poll looks at (`registered`).
fn idle_until_corrupt<T: std::fmt::Debug>(
    mut poll: impl FnMut() -> Result<T, StreamError>,
    needle: &str,
) {
    for _ in 1..IDLE_CHECK {
        match poll() {
            Ok(_) => {}
            other => {
                expect_corrupt(other, needle);
                return;
            }
        }
    }
    expect_corrupt(poll(), needle);
}

/// Damages a live segment with `damage` (after the items `setup` commits
/// and, with `poll_first`, after one poll), then checks that every consumer
/// surface reports `Corrupt` naming `needle`: `Consumer::poll`,
/// `Consumer::wait_for`, and `StreamBuffer::has_chunk_ready`, `pop_chunk`,
/// `next_chunk`, each twice (a second call after an error neither panics
/// nor hangs either). A corrupt `registered` is found by an idle poll
/// (`idle_until_corrupt`), and then reported by every call.
fn corrupt_everywhere(
    tag: &str,
    poll_first: bool,
    setup: impl Fn(&Producer),
    damage: impl Fn(&Poker),
    needle: &str,
) -> String {
    // The low-level consumer.
    let s = stream(tag, 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    setup(&s.producer);
    if poll_first {
        consumer.poll().unwrap();
    }
    damage(&s.poker);
    if needle == "registered count" {
        idle_until_corrupt(|| consumer.poll(), needle);
    }
    let msg = expect_corrupt(bounded("poll", || consumer.poll()), needle);
    for _ in 0..2 {
        expect_corrupt(bounded("poll", || consumer.poll()), needle);
        expect_corrupt(
            bounded("wait_for", || consumer.wait_for(1, Some(SHORT))),
            needle,
        );
        expect_corrupt(
            bounded("wait_for", || consumer.wait_for(u64::MAX, Some(SHORT))),
            needle,
        );
    }
    drop(consumer);
    drop(s);

    // The stream buffer.
    let s = stream(tag, 4, 1024);
    let mut buffer = StreamBuffer::<()>::open(&s.cfg, Fixed::new(1).unwrap()).unwrap();
    setup(&s.producer);
    if poll_first {
        buffer.available().unwrap();
    }
    damage(&s.poker);
    if needle == "registered count" {
        idle_until_corrupt(|| buffer.has_chunk_ready(), needle);
    }
    for _ in 0..2 {
        expect_corrupt(
            bounded("has_chunk_ready", || buffer.has_chunk_ready()),
            needle,
        );
        expect_corrupt(
            bounded("pop_chunk", || buffer.pop_chunk().map(|c| c.len())),
            needle,
        );
        expect_corrupt(
            bounded("next_chunk", || {
                buffer
                    .next_chunk_timeout(Some(SHORT))
                    .map(|c| c.map(|c| c.len()))
            }),
            needle,
        );
    }
    msg
}

// ---------------------------------------------------------------------------
// The control block.

#[test]
fn registered_ahead_of_capacity_is_corrupt() {
    let msg = corrupt_everywhere(
        "reg-ahead",
        // `registered` is checked on an idle poll (`idle_until_corrupt`).
        true,
        |p| commit(p, 2),
        |w| w.u64(REGISTERED, 5), // capacity 4, nothing released
        "registered count",
    );
    assert!(msg.contains("registered count 5 is outside 2..=4"), "{msg}");
    corrupt_everywhere(
        "reg-max",
        true,
        |p| commit(p, 1),
        |w| w.u64(REGISTERED, u64::MAX),
        "registered count",
    );
}

#[test]
fn registered_going_backwards_is_corrupt() {
    let msg = corrupt_everywhere(
        "reg-back",
        true,
        |p| commit(p, 3),
        |w| w.u64(REGISTERED, 1),
        "registered count",
    );
    assert!(msg.contains("registered count 1 is outside 3..="), "{msg}");
}

/// Issue 24: a poll that finds nothing new looks at `registered` only on
/// every `IDLE_CHECK`-th poll in a row (a spinning consumer took the
/// producer's line once per item); the count it finds corrupt is then
/// reported by every later poll, never forgotten between two checks.
#[test]
fn a_corrupt_registered_count_is_found_by_an_idle_poll_and_kept() {
    let s = stream("reg-idle", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 2);
    assert_eq!(consumer.poll().unwrap(), 2);
    s.poker.u64(REGISTERED, 5); // capacity 4, nothing released
    for k in 1..IDLE_CHECK {
        assert_eq!(consumer.poll().unwrap(), 2, "idle poll {k}");
    }
    let msg = expect_corrupt(consumer.poll(), "registered count");
    assert!(msg.contains("registered count 5 is outside 2..=4"), "{msg}");
    // Repaired, or not: the stream was seen corrupt.
    s.poker.u64(REGISTERED, 2);
    for _ in 0..3 {
        expect_corrupt(consumer.poll(), "registered count 5 is outside 2..=4");
    }
    // A poll that finds something new does not count as idle: the count of
    // polls in a row starts again after it.
    let s = stream("reg-idle2", 8, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 1);
    for _ in 1..IDLE_CHECK {
        consumer.poll().unwrap();
    }
    commit(&s.producer, 1);
    assert_eq!(consumer.poll().unwrap(), 2);
    s.poker.u64(REGISTERED, 1); // behind the completed prefix
    for k in 1..IDLE_CHECK {
        assert_eq!(consumer.poll().unwrap(), 2, "idle poll {k}");
    }
    expect_corrupt(consumer.poll(), "registered count 1 is outside 2..=");
}

/// Issue 24: a wait that goes to sleep looks at `registered` first (an
/// idle consumer can afford the cache miss): a corrupt count ends the wait
/// with the error, not with a timeout, without any idle polls before.
#[test]
fn a_waiting_consumer_checks_registered_before_it_sleeps() {
    let s = stream("reg-sleep", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 2);
    assert_eq!(consumer.poll().unwrap(), 2);
    s.poker.u64(REGISTERED, 5);
    let msg = expect_corrupt(
        bounded("wait_for", || consumer.wait_for(3, Some(SHORT))),
        "registered count",
    );
    assert!(msg.contains("registered count 5 is outside 2..=4"), "{msg}");
}

#[test]
fn a_flags_word_with_unknown_bits_is_corrupt() {
    corrupt_everywhere(
        "flags",
        false,
        |p| commit(p, 1),
        |w| {
            let flags = w.read_u32(FLAGS);
            w.u32(FLAGS, flags | 0x100);
        },
        "flags",
    );
}

#[test]
fn released_ahead_of_registered_is_corrupt_for_the_producer() {
    let s = stream("rel-ahead", 4, 1024);
    commit(&s.producer, 4); // full: the next registration reloads `released`
    s.poker.u64(RELEASED, 5);
    let msg = expect_corrupt(
        bounded("try_register", || s.producer.try_register("x").map(|_| ())),
        "released count",
    );
    assert!(msg.contains("released count 5 is outside 0..=4"), "{msg}");
    expect_corrupt(
        bounded("register_timeout", || {
            s.producer.register_timeout("x", Some(SHORT)).map(|_| ())
        }),
        "released count",
    );
    s.poker.u64(RELEASED, u64::MAX);
    expect_corrupt(
        bounded("try_register", || s.producer.try_register("x").map(|_| ())),
        "released count",
    );
}

#[test]
fn released_jumping_ahead_while_the_producer_waits_is_corrupt() {
    let s = stream("rel-wait", 4, 1024);
    commit(&s.producer, 4);
    let poker = Poker::new(&s.cfg);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        poker.u64(RELEASED, 100);
    });
    expect_corrupt(
        bounded("register_timeout", || {
            s.producer
                .register_timeout("x", Some(Duration::from_secs(2)))
                .map(|_| ())
        }),
        "released count",
    );
    writer.join().unwrap();
}

#[test]
fn released_going_backwards_is_corrupt_for_the_producer() {
    let s = stream("rel-back", 4, 1024);
    commit(&s.producer, 4);
    s.poker.u64(RELEASED, 2); // as if the consumer released two
    commit(&s.producer, 2); // full again at 6 - 2
    s.poker.u64(RELEASED, 1);
    let msg = expect_corrupt(
        bounded("try_register", || s.producer.try_register("x").map(|_| ())),
        "released count",
    );
    assert!(msg.contains("released count 1 is outside 2..=6"), "{msg}");
}

#[test]
fn hostile_bells_and_header_rewrites_do_not_hang_or_matter() {
    let s = stream("bells", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 2);
    for off in [DATA_BELL, DATA_BELL + 4, SPACE_BELL, SPACE_BELL + 4] {
        s.poker.u32(off, u32::MAX);
    }
    // The header was copied at open; rewriting it later changes nothing.
    s.poker.bytes(0, &[0xff; 1024]);
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(
        bounded("wait_for", || consumer.wait_for(3, Some(SHORT))),
        Err(StreamError::Timeout {
            what: "data from the producer",
            waited: SHORT
        })
    );
    consumer.consume(2);
    commit(&s.producer, 4);
    assert_eq!(consumer.poll().unwrap(), 4);
    assert_eq!(consumer.item(3).unwrap().id(), "t5");
}

// ---------------------------------------------------------------------------
// The descriptors.

/// The staged word of a run of `n` from `head` (`src/protocol/staged.rs`).
fn staged(head: u64, n: u64) -> u64 {
    head << 21 | n
}

/// Checks the consumer's prefix holds items `from..from + n` of
/// `commit_item`'s scheme, in order.
fn expect_items(consumer: &Consumer, from: u64, n: u64) {
    for k in 0..n {
        let item = consumer.item(k).unwrap();
        assert_eq!(item.position(), from + k);
        assert_eq!(common::check_item(item.bytes()), Ok(from + k));
    }
}

#[test]
fn a_lying_staged_word_is_corrupt_and_the_true_run_still_delivers() {
    let s = stream("staged-lie", 8, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    s.producer.set_batching(Some(8));
    commit(&s.producer, 2);
    let truth = s.poker.read_u64(STAGED);
    assert_eq!(truth, staged(0, 2), "two items staged, none published");
    assert_eq!(s.poker.read_u64(desc(0, SEQ)), 0);
    // Before the take: a count past the capacity, past the registered
    // count; each refused before anything is taken, and the true word then
    // delivers the run.
    for (lie, needle) in [
        (staged(0, 9), "count must be at most the capacity of 8"),
        (
            staged(0, (1 << 21) - 1),
            "count must be at most the capacity of 8",
        ),
        (staged(0, 3), "past the registered count 2"),
    ] {
        s.poker.u64(STAGED, lie);
        let msg = expect_corrupt(bounded("poll", || consumer.poll()), needle);
        assert!(msg.contains(&format!("staged word {lie:#x}")), "{msg}");
        assert_eq!(s.poker.read_u64(STAGED), lie, "nothing taken");
        s.poker.u64(STAGED, truth);
    }
    assert_eq!(consumer.poll().unwrap(), 2);
    expect_items(&consumer, 0, 2);
    let taken = s.poker.read_u64(STAGED);
    assert_eq!(taken, truth | STAGED_TAKEN);
    // After the take, the walk stands at 2: the same run offered again
    // (the taken bit cleared), a head behind the walk, a head ahead of it
    // while position 2 is unpublished, a head far ahead.
    for (lie, needle) in [
        (truth, "not behind it"),
        (staged(1, 1), "not behind it"),
        (
            staged(5, 1),
            "past position 2, whose descriptor is not published",
        ),
        // A head a whole capacity ahead is still looked for at the walk.
        (
            staged(2 + 8, 1),
            "past position 2, whose descriptor is not published",
        ),
        (staged(2 + 9, 1), "its head at most 8 past the walk"),
        // Within the capacity: a run to the window's end (released 0 + 8)
        // is refused by the registered count (2), one past it by the window.
        (staged(2, 6), "past the registered count 2"),
        (staged(2, 7), "past position 8 (the consumer's window"),
    ] {
        s.poker.u64(STAGED, lie);
        let msg = expect_corrupt(bounded("poll", || consumer.poll()), needle);
        assert!(msg.contains(&format!("staged word {lie:#x}")), "{msg}");
        s.poker.u64(STAGED, taken);
        assert_eq!(consumer.poll().unwrap(), 2, "the two taken, nothing more");
    }
    // A head ahead of the walk whose position holds an older lap's value
    // (at most the position: here the position itself) is a lie too.
    let seq2 = s.poker.read_u64(desc(2, SEQ));
    s.poker.u64(desc(2, SEQ), 2);
    s.poker.u64(STAGED, staged(5, 1));
    expect_corrupt(
        bounded("poll", || consumer.poll()),
        "not published (completion sequence 2)",
    );
    s.poker.u64(desc(2, SEQ), seq2);
    s.poker.u64(STAGED, taken);
    assert_eq!(consumer.poll().unwrap(), 2);
    // Any taken word stages nothing, whatever else it says.
    s.poker.u64(STAGED, STAGED_TAKEN | staged(2, 5));
    assert_eq!(consumer.poll().unwrap(), 2);
    s.poker.u64(STAGED, taken);
    // The producer goes on: the next run is staged after the taken one and
    // delivers.
    consumer.consume(2);
    commit(&s.producer, 3);
    assert_eq!(s.poker.read_u64(desc(0, SEQ)), 2, "the taken run's seq");
    assert_eq!(s.poker.read_u64(STAGED), staged(2, 3));
    assert_eq!(consumer.poll().unwrap(), 3);
    expect_items(&consumer, 2, 3);
}

#[test]
fn a_completion_sequence_out_of_range_is_corrupt() {
    // Slot 0 of a ring of 4 may only ever hold 0, an older lap's run (at
    // most its position), or the position plus a run's count: at most the
    // capacity, never past `registered` (2 here).
    for (tag, seq) in [("seq-lap", 5u64), ("seq-reg", 3), ("seq-max", u64::MAX)] {
        corrupt_everywhere(
            tag,
            false,
            |p| commit(p, 2),
            |w| w.u64(desc(0, SEQ), seq),
            "sequence",
        );
    }
}

/// `n` items of `words` u64 words each, put as one batch (one run when
/// they lie back to back).
fn put_run(producer: &Producer, n: u64, words: u64) {
    let meta = TensorMeta::new(DType::U64, &[words]).unwrap();
    let bytes: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let k = producer.registered() + i;
            (0..words)
                .flat_map(|w| (k * 100 + w).to_le_bytes())
                .collect()
        })
        .collect();
    let items: Vec<_> = bytes
        .iter()
        .map(|b| shmstream::BatchItem::unnamed(meta, b))
        .collect();
    producer.put_many(&items).unwrap();
}

/// Checks item `k` of `consumer`'s prefix is the one `put_run` wrote at
/// `position` with `words` words.
fn expect_item(consumer: &Consumer, k: u64, position: u64, words: u64) {
    let item = consumer.item(k).unwrap();
    assert_eq!(item.position(), position);
    assert_eq!(item.id(), position.to_string());
    let want: Vec<u8> = (0..words)
        .flat_map(|w| (position * 100 + w).to_le_bytes())
        .collect();
    assert_eq!(item.bytes(), &want[..], "position {position}");
}

#[test]
fn a_lying_run_count_is_corrupt_and_the_true_one_still_delivers_the_run() {
    // A ring of 8 items and 8 KiB: positions 0..4 of 1 KiB in one run;
    // 2 released; then position 4 of 2 KiB alone and 5..10 of 512 B in
    // one run (registered 10, the window's end too).
    let s = stream("run-lie", 8, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    put_run(&s.producer, 4, 128);
    assert_eq!(s.poker.read_u64(desc(0, SEQ)), 4, "one run of 4");
    assert_eq!(consumer.poll().unwrap(), 4);
    consumer.consume(2);
    put_run(&s.producer, 1, 256);
    put_run(&s.producer, 5, 64);
    assert_eq!(s.poker.read_u64(desc(4, SEQ)), 5);
    assert_eq!(s.poker.read_u64(desc(5, SEQ)), 10, "one run of 5");
    let lies = [
        // More than the capacity.
        (4 + 9, "more than the capacity of 8"),
        // Past the registered count (and the window: released 2 + 8).
        (4 + 7, "past position 10"),
        (u64::MAX, "more than the capacity of 8"),
        // Within the counts, but 6 items of 2 KiB from byte 4096 reach
        // past one payload length from the oldest unreleased item (byte
        // 2048): over the bytes the consumer still reads.
        (4 + 6, "spans 12288 bytes, past 10240"),
    ];
    for (seq, needle) in lies {
        s.poker.u64(desc(4, SEQ), seq);
        let msg = expect_corrupt(bounded("poll", || consumer.poll()), needle);
        assert!(msg.starts_with("descriptor of position 4: "), "{msg}");
        // Nothing of the lie was taken: the two items before it are still
        // there, whole.
        expect_item(&consumer, 0, 2, 128);
        expect_item(&consumer, 1, 3, 128);
    }
    // A run's other positions are not heads: a count there (of a run of 1
    // inside the true run) is read as a head only if the consumer got
    // there, which it never does; the true counts deliver everything.
    s.poker.u64(desc(4, SEQ), 5);
    assert_eq!(consumer.poll().unwrap(), 8);
    expect_item(&consumer, 2, 4, 256);
    for k in 3..8 {
        expect_item(&consumer, k, k + 2, 64);
    }
    // The five stack as one view, the first two do not join them.
    assert_eq!(consumer.window(3, 5).unwrap().shape(), &[5, 64]);
    assert!(consumer.window(1, 3).is_none());
}

#[test]
fn a_completion_sequence_out_of_range_does_not_hang() {
    let s = stream("seq-nohang", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 2);
    s.poker.u64(desc(0, SEQ), u64::MAX);
    let r = bounded("wait_for", || consumer.wait_for(1, Some(SHORT)));
    assert!(
        matches!(
            r,
            Err(StreamError::Timeout { .. }) | Err(StreamError::Corrupt(_))
        ),
        "{r:?}"
    );
}

#[test]
fn nbytes_larger_than_its_reservation_is_corrupt() {
    // Consistent with the shape, so only the reservation is too small.
    let msg = corrupt_everywhere(
        "nbytes-slot",
        false,
        |p| commit(p, 1),
        |w| {
            w.u32(desc(0, DIMS), 256);
            w.u32(desc(0, NBYTES), 2048);
        },
        "nbytes 2048 exceeds the 1024 bytes reserved",
    );
    assert!(msg.contains("descriptor of position 0"), "{msg}");
    // Disagreeing with the shape.
    corrupt_everywhere(
        "nbytes-shape",
        false,
        |p| commit(p, 1),
        |w| w.u32(desc(0, NBYTES), WIDE - 1),
        "nbytes 4294967294 disagrees with the shape's 32",
    );
    // Wide: the byte count is the side entry's shape's, checked against
    // the reservation.
    corrupt_everywhere(
        "nbytes-wide",
        false,
        |p| commit(p, 1),
        |w| {
            w.u32(desc(0, NBYTES), WIDE);
            w.u64(side(4, 0, WIDE_DIMS), 1 << 32);
        },
        "nbytes 34359738368 exceeds the 1024 bytes reserved",
    );
}

#[test]
fn a_reservation_outside_the_payload_window_is_corrupt() {
    // Item 1 starting inside item 0's bytes (before the end of the previous
    // reservation).
    corrupt_everywhere(
        "rsv-overlap",
        false,
        |p| commit(p, 2),
        |w| w.u64(desc(1, OFFSET), 64),
        "reservation of 1024 bytes at payload byte 64 is outside 1024..",
    );
    // Reaching past the oldest unreleased reservation plus the payload
    // length (item 0 at byte 0 is unreleased).
    corrupt_everywhere(
        "rsv-far",
        false,
        |p| commit(p, 2),
        |w| w.u64(desc(1, OFFSET), 1 << 40),
        "reservation of 1024 bytes at payload byte 1099511627776 is outside 1024..4096",
    );
    // Not aligned for its size (the producer places a 1024-byte
    // reservation 64-byte aligned).
    corrupt_everywhere(
        "rsv-align",
        false,
        |p| commit(p, 2),
        |w| w.u64(desc(1, OFFSET), 1028),
        "reservation of 1024 bytes at payload byte 1028 is not aligned to 64",
    );
    // A length whose end overflows.
    corrupt_everywhere(
        "rsv-overflow",
        false,
        |p| commit(p, 1),
        |w| w.u64(desc(0, LEN), u64::MAX),
        "reservation of 18446744073709551615 bytes at payload byte 0 is outside 0..",
    );
}

#[test]
fn a_shape_whose_product_overflows_is_corrupt() {
    corrupt_everywhere(
        "shape-ovf",
        false,
        |p| commit(p, 1),
        |w| {
            w.u32(desc(0, INFO), info(STATUS_COMMITTED, U64_CODE, 2, 2));
            w.u32(desc(0, DIMS), u32::MAX);
            w.u32(desc(0, DIMS + 4), u32::MAX);
        },
        "the shape's byte count overflows",
    );
    // A wide shape, from the side entry.
    corrupt_everywhere(
        "shape-wide",
        false,
        |p| commit(p, 1),
        |w| {
            w.u32(desc(0, INFO), info(STATUS_COMMITTED, U64_CODE, 2, 2));
            w.u32(desc(0, NBYTES), WIDE);
            w.u64(side(4, 0, WIDE_DIMS), 1 << 40);
            w.u64(side(4, 0, WIDE_DIMS + 8), 1 << 40);
        },
        "the shape's byte count overflows",
    );
}

#[test]
fn too_many_dimensions_are_corrupt() {
    corrupt_everywhere(
        "ndim",
        false,
        |p| commit(p, 1),
        |w| w.u32(desc(0, INFO), info(STATUS_COMMITTED, U64_CODE, 9, 2)),
        "9 dimensions exceed the limit of 8",
    );
}

/// Damages item 0's id (after the items `setup` commits) and checks the
/// by-id surfaces: the poll that shows the item succeeds (ids are read
/// only when asked for), `try_id` is `Corrupt` naming `needle`, `id` and
/// `ids` are empty, and every later call of the consumer reports the same
/// error: `Consumer::poll`/`wait_for`, `StreamBuffer::has_chunk_ready`,
/// `pop_chunk`, `next_chunk`.
fn corrupt_id_everywhere(tag: &str, damage: impl Fn(&Poker), needle: &str) -> String {
    let s = stream(tag, 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 1);
    damage(&s.poker);
    assert_eq!(consumer.poll().unwrap(), 1);
    let item = consumer.item(0).unwrap();
    let msg = expect_corrupt(item.try_id(), needle);
    assert!(msg.starts_with("descriptor of position 0: "), "{msg}");
    assert_eq!(item.id(), "");
    for _ in 0..2 {
        expect_corrupt(bounded("poll", || consumer.poll()), needle);
        expect_corrupt(
            bounded("wait_for", || consumer.wait_for(1, Some(SHORT))),
            needle,
        );
    }
    drop(consumer);
    drop(s);

    let s = stream(tag, 4, 1024);
    let mut buffer = StreamBuffer::<()>::open(&s.cfg, Fixed::new(1).unwrap()).unwrap();
    commit(&s.producer, 2);
    damage(&s.poker);
    {
        let chunk = buffer.pop_chunk().unwrap();
        assert_eq!(chunk.ids().collect::<Vec<_>>(), [""]);
        expect_corrupt(chunk.item(0).unwrap().try_id(), needle);
    }
    for _ in 0..2 {
        expect_corrupt(
            bounded("has_chunk_ready", || buffer.has_chunk_ready()),
            needle,
        );
        expect_corrupt(
            bounded("pop_chunk", || buffer.pop_chunk().map(|c| c.len())),
            needle,
        );
        expect_corrupt(
            bounded("next_chunk", || {
                buffer
                    .next_chunk_timeout(Some(SHORT))
                    .map(|c| c.map(|c| c.len()))
            }),
            needle,
        );
    }
    msg
}

#[test]
fn an_id_length_past_its_field_is_corrupt() {
    for len in [65u32, 255] {
        corrupt_id_everywhere(
            "idlen",
            |w| w.u32(desc(0, INFO), info(STATUS_COMMITTED, U64_CODE, 1, len)),
            &format!("id length {len} is outside 1..=64"),
        );
    }
    corrupt_id_everywhere(
        "idlen0",
        |w| w.u32(desc(0, INFO), info(STATUS_COMMITTED, U64_CODE, 1, 0)),
        "id length 0 is outside 1..=64",
    );
}

#[test]
fn an_id_that_is_not_utf8_is_corrupt() {
    corrupt_id_everywhere(
        "id-utf8",
        |w| w.bytes(side(4, 0, ID), &[0xff, 0xfe]),
        "the id is not UTF-8",
    );
    // A multi-byte character cut by the id length.
    corrupt_id_everywhere(
        "id-cut",
        |w| w.bytes(side(4, 0, ID), "aé".as_bytes()),
        "the id is not UTF-8",
    );
}

#[test]
fn an_abandoned_slot_with_a_corrupt_id_is_corrupt() {
    // The one id a poll reads: the error names it.
    corrupt_everywhere(
        "abandon-id",
        false,
        |p| commit(p, 1),
        |w| {
            w.u32(desc(0, INFO), info(STATUS_ABANDONED, U64_CODE, 1, 2));
            w.bytes(side(4, 0, ID), &[0xff]);
        },
        "the id is not UTF-8",
    );
}

#[test]
fn a_dtype_code_that_does_not_exist_is_corrupt() {
    for code in [0u32, 14, 255] {
        corrupt_everywhere(
            "dtype",
            false,
            |p| commit(p, 1),
            |w| w.u32(desc(0, INFO), info(STATUS_COMMITTED, code, 1, 2)),
            &format!("dtype code {code} does not exist"),
        );
    }
}

#[test]
fn a_status_code_that_does_not_exist_is_corrupt() {
    for status in [0u32, 3, 255] {
        corrupt_everywhere(
            "status",
            false,
            |p| commit(p, 1),
            |w| w.u32(desc(0, INFO), info(status, U64_CODE, 1, 2)),
            &format!("status code {status} does not exist"),
        );
    }
}

#[test]
fn a_forged_abandoned_slot_is_reported_not_skipped() {
    let s = stream("abandon", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 2);
    // An abandonment with a 2-byte reason ("ok") and status -9.
    s.poker.u32(desc(1, DIMS), u32::from_le_bytes(*b"ok\0\0"));
    s.poker.u32(desc(1, NBYTES), -9i32 as u32);
    s.poker.u32(desc(1, INFO), info(STATUS_ABANDONED, 0, 2, 2));
    assert_eq!(consumer.poll().unwrap(), 1);
    consumer.consume(1);
    assert_eq!(
        consumer.poll(),
        Err(StreamError::Abandoned {
            position: 1,
            id: "t1".into(),
            reason: AbandonReason::new(-9, "ok"),
        })
    );
}

/// The abandon reason's length (the `ndim` byte of an abandoned slot's
/// `info`) and bytes (the descriptor's dims, then the side entry's wide
/// dims) are checked before use: a length past `MAX_REASON_LEN` or bytes
/// that are not UTF-8 are corrupt, never read out of bounds.
#[test]
fn a_lying_abandon_reason_is_corrupt() {
    // Byte 96 is within the limit; 97 and 255 are not.
    for len in [97u32, 255] {
        let s = stream(&format!("why{len}"), 4, 1024);
        let mut consumer = Consumer::open(&s.cfg).unwrap();
        s.producer
            .register("t0")
            .unwrap()
            .abandon_with(AbandonReason::new(-1, "fine"));
        s.poker
            .u32(desc(0, INFO), info(STATUS_ABANDONED, 0, len, 2));
        let err = consumer.poll().unwrap_err();
        assert_eq!(
            err,
            StreamError::Corrupt(format!(
                "descriptor of position 0: abandon reason length {len} exceeds the limit of {MAX_REASON_LEN} bytes"
            ))
        );
        // Reported again, not skipped, on the next poll.
        assert_eq!(consumer.poll().unwrap_err(), err);
    }
    // Not UTF-8: in the descriptor's part, and past it in the side entry's.
    for (at, len) in [(desc(0, DIMS + 4), 8u32), (side(4, 0, WIDE_DIMS + 56), 96)] {
        let s = stream(&format!("utf{len}"), 4, 1024);
        let mut consumer = Consumer::open(&s.cfg).unwrap();
        let text = "r".repeat(len as usize);
        s.producer
            .register("t0")
            .unwrap()
            .abandon_with(AbandonReason::new(0, &text));
        s.poker.u32(at, 0xffff_ffff);
        assert!(
            matches!(consumer.poll(), Err(StreamError::Corrupt(m)) if m == "descriptor of position 0: the abandon reason is not UTF-8"),
            "{len}"
        );
    }
    // The longest reason, read whole.
    let s = stream("why96", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    let text: String = ('a'..='z').cycle().take(MAX_REASON_LEN).collect();
    s.producer
        .register("t0")
        .unwrap()
        .abandon_with(AbandonReason::new(i32::MIN, &text));
    match consumer.poll() {
        Err(StreamError::Abandoned { reason, .. }) => {
            assert_eq!((reason.code(), reason.text()), (i32::MIN, &text[..]))
        }
        other => panic!("{other:?}"),
    }
}

/// A correct producer may commit a shape with a zero dimension next to huge
/// ones (its byte count is 0); the stacked view's strides must not overflow.
#[test]
fn a_zero_dimension_next_to_huge_ones_does_not_overflow_the_strides() {
    let s = stream("zero-dim", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    let meta = TensorMeta::new(DType::U64, &[0, u64::MAX, u64::MAX]).unwrap();
    assert_eq!(meta.nbytes(), 0);
    s.producer.register("z").unwrap().commit(meta).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    let item = consumer.item(0).unwrap();
    assert!(item.bytes().is_empty());
    let view = consumer.window(0, 1).unwrap();
    assert_eq!(view.shape(), &[1, 0, u64::MAX, u64::MAX]);
    let _ = view.strides();
}

// ---------------------------------------------------------------------------
// Property-based: random and adversarial writes.

fn hostile_cases() -> u32 {
    std::env::var("SHMSTREAM_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Valid (capacity, default item bytes) pairs of 4..=16 items of 256..=1024
/// bytes; the payload is their product (4 to 16 KiB). The items themselves
/// have mixed sizes ([`mixed_words`]).
const GEOMETRIES: [(u64, u64); 6] = [
    (4, 1024),
    (8, 512),
    (8, 1024),
    (16, 256),
    (16, 512),
    (16, 1024),
];

/// Where a write goes.
#[derive(Clone, Debug)]
enum Target {
    Registered,
    Released,
    Flags,
    Bell(u8),
    Seq(u8),
    Nbytes(u8),
    Info(u8),
    Dim(u8, u8),
    Id(u8, u8),
    WideDim(u8, u8),
    /// A descriptor's reservation offset: a plausible or a hostile value
    /// computed from the reservations in the segment (see [`Place`]).
    Offset(u8, Place),
    /// A descriptor's reservation length (see [`Size`]).
    Len(u8, Size),
    /// Anywhere in the header, control block, descriptor and side tables.
    Anywhere(u16),
    /// Anywhere in the payload (the consumer never trusts it). Only between
    /// the consumer's calls, never while it holds a view: payload views
    /// assume a cooperating peer (docs/design.md), so `concurrent_case`
    /// leaves the payload alone.
    Payload(u16),
    /// A whole forged descriptor, published (`seq` = position + 1): dtype
    /// code, shape, and whether nbytes agrees with the shape, reserved
    /// where the producer would put it (after the previous slot's
    /// reservation, aligned for its length) with `slack` words more than
    /// nbytes, or at `place`. Such a descriptor may pass the checks, so the
    /// views over it are exercised.
    Forge {
        slot: u8,
        dtype: u8,
        dims: Vec<u64>,
        consistent: bool,
        nbytes: u64,
        slack: u8,
        place: Option<Place>,
    },
}

/// Where a forged reservation offset points, relative to the reservations
/// the segment holds: `prev` is the previous slot's (the previous position
/// of the walk), `own` the slot's own.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// The end of `prev` aligned for `own`'s length, plus d bytes (0 is
    /// where the producer puts it; others overlap `prev`, leave a gap or
    /// are misaligned).
    WalkEnd(i8),
    /// `own`'s offset plus 1 to 7 bytes: misaligned.
    Misaligned(u8),
    /// `own`'s offset plus one payload length plus d: past the window of
    /// the oldest unreleased item.
    PastPayload(i8),
    /// Inside `prev`: at k quarters of its length.
    OverlapPrev(u8),
    /// The start of `prev`'s lap (a multiple of the payload length) plus d
    /// laps: behind or far ahead of the walk.
    Laps(i8),
    Huge(u8),
    Max,
}

/// What a forged reservation length is, relative to the slot's own
/// reservation `own` and the payload length `P`.
#[derive(Clone, Copy, Debug)]
enum Size {
    /// `own`'s length plus d (below it: shorter than nbytes).
    Near(i8),
    Zero,
    /// P plus d.
    Payload(i8),
    /// To the end of `own`'s lap plus d: up to or across the wrap.
    ToLapEnd(i8),
    Huge(u8),
    Max,
}

/// What is written.
#[derive(Clone, Debug)]
enum Value {
    Zero,
    Max,
    /// capacity + d
    Capacity(i8),
    /// the natural value of the field + d: `registered` / `released` is the
    /// committed count, `seq` is the slot's position + 1, a dim or nbytes the
    /// default item size.
    Near(i8),
    Huge(u8),
    Random(u64),
    Info {
        status: u8,
        dtype: u8,
        ndim: u8,
        id_len: u8,
    },
}

#[derive(Clone, Debug)]
struct Write {
    target: Target,
    /// Moves the offset off the field's start by a few bytes.
    skew: i8,
    /// 1, 2, 4 or 8 bytes.
    width: u8,
    value: Value,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        2 => Just(Target::Registered),
        1 => Just(Target::Released),
        1 => Just(Target::Flags),
        1 => (0u8..4).prop_map(Target::Bell),
        3 => any::<u8>().prop_map(Target::Seq),
        2 => any::<u8>().prop_map(Target::Nbytes),
        3 => any::<u8>().prop_map(Target::Info),
        2 => (any::<u8>(), 0u8..8).prop_map(|(s, d)| Target::Dim(s, d)),
        1 => (any::<u8>(), 0u8..8).prop_map(|(s, w)| Target::Id(s, w)),
        1 => (any::<u8>(), 0u8..8).prop_map(|(s, w)| Target::WideDim(s, w)),
        3 => (any::<u8>(), place()).prop_map(|(s, p)| Target::Offset(s, p)),
        2 => (any::<u8>(), size()).prop_map(|(s, z)| Target::Len(s, z)),
        2 => any::<u16>().prop_map(Target::Anywhere),
        1 => any::<u16>().prop_map(Target::Payload),
        3 => (
            any::<u8>(),
            prop_oneof![4 => 1u8..=13, 1 => any::<u8>()],
            prop::collection::vec(
                prop_oneof![Just(0u64), Just(1), 1u64..64, Just(1 << 32), Just(u64::MAX)],
                0..=8,
            ),
            prop::bool::weighted(0.8),
            any::<u64>(),
            prop_oneof![3 => Just(0u8), 1 => 1u8..4, 1 => any::<u8>()],
            prop_oneof![3 => Just(None), 1 => place().prop_map(Some)],
        )
            .prop_map(
                |(slot, dtype, dims, consistent, nbytes, slack, place)| Target::Forge {
                    slot,
                    dtype,
                    dims,
                    consistent,
                    nbytes,
                    slack,
                    place,
                },
            ),
    ]
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        4 => prop_oneof![3 => Just(0i8), 1 => -16i8..=16, 1 => any::<i8>()].prop_map(Place::WalkEnd),
        1 => (1u8..8).prop_map(Place::Misaligned),
        2 => prop_oneof![Just(0i8), -16i8..=16].prop_map(Place::PastPayload),
        2 => (0u8..4).prop_map(Place::OverlapPrev),
        1 => (-2i8..=2).prop_map(Place::Laps),
        1 => (0u8..64).prop_map(Place::Huge),
        1 => Just(Place::Max),
    ]
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        3 => prop_oneof![Just(0i8), -16i8..=16, any::<i8>()].prop_map(Size::Near),
        1 => Just(Size::Zero),
        2 => prop_oneof![Just(0i8), -16i8..=16].prop_map(Size::Payload),
        2 => prop_oneof![Just(0i8), -16i8..=16].prop_map(Size::ToLapEnd),
        1 => (0u8..64).prop_map(Size::Huge),
        1 => Just(Size::Max),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let small = prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(255), any::<u8>()];
    prop_oneof![
        2 => Just(Value::Zero),
        2 => Just(Value::Max),
        1 => (-2i8..=2).prop_map(Value::Capacity),
        3 => (-2i8..=2).prop_map(Value::Near),
        1 => (0u8..64).prop_map(Value::Huge),
        2 => any::<u64>().prop_map(Value::Random),
        3 => (
            prop_oneof![Just(0u8), Just(1), Just(1), Just(2), Just(3), Just(255)],
            prop_oneof![0u8..16, Just(13), Just(255)],
            prop_oneof![0u8..=9, Just(255)],
            prop_oneof![Just(0u8), Just(1), Just(2), Just(64), Just(65), Just(255)],
        )
            .prop_map(|(status, dtype, ndim, id_len)| Value::Info {
                status,
                dtype,
                ndim,
                id_len,
            }),
        1 => small.prop_map(|b| Value::Random(b as u64)),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    (
        target(),
        prop_oneof![6 => Just(0i8), 1 => -4i8..=4],
        prop_oneof![Just(8u8), Just(8), Just(4), Just(2), Just(1)],
        value(),
    )
        .prop_map(|(target, skew, width, value)| Write {
            target,
            skew,
            width,
            value,
        })
}

/// What the resolution of a write needs to know about the stream.
#[derive(Clone, Copy)]
struct Geo {
    capacity: u64,
    item_bytes: u64,
    registered: u64,
    /// By slot: the reservation (offset, len) its descriptor holds.
    reservations: [(u64, u64); 16],
}

impl Geo {
    /// The geometry of a stream of `capacity` items of `item_bytes` by
    /// default, with the reservations `poker` reads from its descriptors.
    fn read(poker: &Poker, capacity: u64, item_bytes: u64, registered: u64) -> Geo {
        let mut reservations = [(0, 0); 16];
        for (slot, r) in reservations.iter_mut().enumerate().take(capacity as usize) {
            *r = (
                poker.read_u64(desc(slot as u64, OFFSET)),
                poker.read_u64(desc(slot as u64, LEN)),
            );
        }
        Geo {
            capacity,
            item_bytes,
            registered,
            reservations,
        }
    }

    fn payload_offset(&self) -> u64 {
        (DESCRIPTORS + self.capacity * (DESCRIPTOR_BYTES + SIDE_ENTRY_BYTES)).next_multiple_of(4096)
    }

    /// As `StreamConfig::payload_bytes` without an explicit size.
    fn payload_bytes(&self) -> u64 {
        (self.capacity * self.item_bytes)
            .next_power_of_two()
            .max(4096)
    }

    /// The reservation of the slot before `slot` (the previous position).
    fn prev(&self, slot: u64) -> (u64, u64) {
        self.reservations[((slot + self.capacity - 1) % self.capacity) as usize]
    }

    /// The offset `place` names for `slot`'s reservation of `len` bytes.
    fn place(&self, slot: u64, len: u64, place: Place) -> u64 {
        let p = self.payload_bytes();
        let (prev_offset, prev_len) = self.prev(slot);
        let (own_offset, _) = self.reservations[slot as usize];
        match place {
            Place::WalkEnd(d) => {
                // Rounded up without overflow (the words may be hostile).
                let align = placement_align(len);
                (prev_offset.wrapping_add(prev_len).wrapping_add(align - 1) & !(align - 1))
                    .wrapping_add_signed(d as i64)
            }
            Place::Misaligned(k) => own_offset.wrapping_add(k as u64),
            Place::PastPayload(d) => own_offset.wrapping_add(p).wrapping_add_signed(d as i64),
            Place::OverlapPrev(k) => prev_offset.wrapping_add(prev_len / 4 * k as u64),
            Place::Laps(d) => (prev_offset & !(p - 1)).wrapping_add_signed(d as i64 * p as i64),
            Place::Huge(shift) => 1 << shift,
            Place::Max => u64::MAX,
        }
    }

    /// The length `size` names for `slot`'s reservation.
    fn size(&self, slot: u64, size: Size) -> u64 {
        let p = self.payload_bytes();
        let (own_offset, own_len) = self.reservations[slot as usize];
        match size {
            Size::Near(d) => own_len.wrapping_add_signed(d as i64),
            Size::Zero => 0,
            Size::Payload(d) => p.wrapping_add_signed(d as i64),
            Size::ToLapEnd(d) => (p - own_offset % p).wrapping_add_signed(d as i64),
            Size::Huge(shift) => 1 << shift,
            Size::Max => u64::MAX,
        }
    }
}

/// The offsets and bytes of `w` in a segment of `g` (a forged descriptor
/// writes its side entry too).
fn resolve(w: &Write, g: Geo) -> Vec<(u64, Vec<u8>)> {
    let slot = |s: u8| s as u64 % g.capacity;
    // The position a slot's descriptor would hold next, near `registered`.
    let position = |s: u8| {
        let s = slot(s);
        let base = g.registered.saturating_sub(g.capacity);
        let lap = base / g.capacity * g.capacity;
        if lap + s < base {
            lap + g.capacity + s
        } else {
            lap + s
        }
    };
    if let Target::Forge {
        slot: s,
        dtype,
        ref dims,
        consistent,
        nbytes,
        slack,
        place,
    } = w.target
    {
        let size = DType::ALL
            .iter()
            .find(|d| d.code() == dtype)
            .map_or(1, |d| d.size() as u64);
        let product = dims.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        let nbytes = match product {
            Some(p) if consistent => p,
            _ => nbytes,
        };
        let id_len = 1 + (nbytes % 64) as u32;
        // Narrow (dims and nbytes as u32) when they fit, as the producer
        // writes them; wide otherwise: the dims go to the side entry.
        let narrow = nbytes < WIDE as u64 && dims.iter().all(|&d| d <= u32::MAX as u64);
        let mut d = vec![0u8; DESCRIPTOR_BYTES as usize];
        d[..8].copy_from_slice(&(position(s) + 1).to_ne_bytes());
        let len = nbytes.saturating_add(8 * slack as u64);
        let offset = g.place(slot(s), len, place.unwrap_or(Place::WalkEnd(0)));
        d[OFFSET as usize..OFFSET as usize + 8].copy_from_slice(&offset.to_ne_bytes());
        d[LEN as usize..LEN as usize + 8].copy_from_slice(&len.to_ne_bytes());
        let info = info(STATUS_COMMITTED, dtype as u32, dims.len() as u32, id_len);
        d[INFO as usize..INFO as usize + 4].copy_from_slice(&info.to_ne_bytes());
        let mut e = vec![b'f'; SIDE_ENTRY_BYTES as usize];
        if narrow {
            d[NBYTES as usize..NBYTES as usize + 4].copy_from_slice(&(nbytes as u32).to_ne_bytes());
            for (k, dim) in dims.iter().enumerate() {
                let at = DIMS as usize + 4 * k;
                d[at..at + 4].copy_from_slice(&(*dim as u32).to_ne_bytes());
            }
        } else {
            d[NBYTES as usize..NBYTES as usize + 4].copy_from_slice(&WIDE.to_ne_bytes());
            for (k, dim) in dims.iter().enumerate() {
                let at = WIDE_DIMS as usize + 8 * k;
                e[at..at + 8].copy_from_slice(&dim.to_ne_bytes());
            }
        }
        // The side entry first, as the producer does (registration before
        // the commit's `seq`).
        return vec![
            (side(g.capacity, slot(s), 0), e),
            (desc(slot(s), OFFSET), d[OFFSET as usize..].to_vec()),
            (desc(slot(s), SEQ), d[..OFFSET as usize].to_vec()),
        ];
    }
    // Reservations: a whole word, computed from the segment's.
    match w.target {
        Target::Offset(s, place) => {
            let len = g.reservations[slot(s) as usize].1;
            let v = g.place(slot(s), len, place);
            return vec![(desc(slot(s), OFFSET), v.to_ne_bytes().to_vec())];
        }
        Target::Len(s, size) => {
            let v = g.size(slot(s), size);
            return vec![(desc(slot(s), LEN), v.to_ne_bytes().to_vec())];
        }
        _ => {}
    }
    let (offset, natural) = match w.target {
        Target::Registered => (REGISTERED, g.registered),
        Target::Released => (RELEASED, g.registered),
        Target::Flags => (FLAGS, 8),
        Target::Bell(b) => (
            [DATA_BELL, DATA_BELL + 4, SPACE_BELL, SPACE_BELL + 4][b as usize],
            0,
        ),
        Target::Seq(s) => (desc(slot(s), SEQ), position(s) + 1),
        Target::Nbytes(s) => (desc(slot(s), NBYTES), g.item_bytes),
        Target::Info(s) => (desc(slot(s), INFO), info(1, U64_CODE, 1, 2) as u64),
        Target::Dim(s, d) => (desc(slot(s), DIMS + 4 * d as u64), g.item_bytes / 8),
        Target::Id(s, k) => (side(g.capacity, slot(s), ID + 8 * k as u64), 0x3074),
        Target::WideDim(s, d) => (
            side(g.capacity, slot(s), WIDE_DIMS + 8 * d as u64),
            g.item_bytes / 8,
        ),
        Target::Anywhere(o) => (o as u64 % g.payload_offset(), 0),
        Target::Payload(o) => (g.payload_offset() + o as u64 % g.payload_bytes(), 0),
        Target::Forge { .. } | Target::Offset(..) | Target::Len(..) => {
            unreachable!("resolved above")
        }
    };
    let v = match w.value {
        Value::Zero => 0,
        Value::Max => u64::MAX,
        Value::Capacity(d) => g.capacity.wrapping_add_signed(d as i64),
        Value::Near(d) => natural.wrapping_add_signed(d as i64),
        Value::Huge(shift) => 1u64 << shift,
        Value::Random(v) => v,
        Value::Info {
            status,
            dtype,
            ndim,
            id_len,
        } => info(status as u32, dtype as u32, ndim as u32, id_len as u32) as u64,
    };
    let width = w.width as usize;
    let bytes = v.to_ne_bytes()[..width].to_vec();
    let offset = offset.saturating_add_signed(w.skew as i64);
    // Stay inside the file (header + table + one payload copy).
    let end = g.payload_offset() + g.payload_bytes();
    let offset = offset.min(end - width as u64);
    vec![(offset, bytes)]
}

/// Checks every view the consumer hands out lies inside its payload
/// mapping and agrees with its own metadata, and that the items of a run
/// lie in order within one payload length.
struct Bounds {
    base: usize,
    /// The payload length `P`.
    payload: usize,
    /// Bytes mapped from `base`: `2 P` with the mirror, else `P`.
    mapped: usize,
}

impl Bounds {
    fn of(consumer: &Consumer) -> Bounds {
        let (base, mapped) = consumer.payload_region();
        Bounds {
            base: base as usize,
            payload: consumer.payload_bytes() as usize,
            mapped,
        }
    }

    /// One item: it starts in the first copy of the payload, ends inside
    /// the mapping, holds at most a payload's bytes, and its shape, dtype
    /// and id are well-formed.
    fn item(&self, item: &shmstream::ItemView<'_>) {
        let bytes = item.bytes();
        let start = bytes.as_ptr() as usize;
        assert!(
            start >= self.base && start < self.base + self.payload,
            "item {item:?} starts outside the payload"
        );
        assert!(start + bytes.len() <= self.base + self.mapped, "{item:?}");
        assert!(bytes.len() <= self.payload, "{item:?}");
        // The id is read (from the side table) when asked for: a good
        // one is 1 to 64 bytes, a bad one an error naming it (and `id` is
        // then empty).
        match item.try_id() {
            Ok(id) => assert!((1..=64).contains(&id.len()), "{item:?}"),
            Err(e) => {
                assert!(allowed(&e), "{e:?}");
                assert_eq!(item.id(), "");
            }
        }
        assert!(item.shape().len() <= 8, "{item:?}");
        let expected = item
            .shape()
            .iter()
            .try_fold(item.dtype().size() as u64, |acc, &d| acc.checked_mul(d));
        assert_eq!(expected, Some(bytes.len() as u64), "{item:?}");
    }

    /// Consecutive items, each already through [`item`](Self::item): in
    /// registration order, none overlapping the one before, all within one
    /// payload length of the first (the consumer bounds each by the oldest
    /// unreleased item, at or before the first of any run it hands out).
    /// Views show offsets modulo `P` only, so the run is unwrapped with the
    /// smallest gaps that keep each item clear of the one before: a span
    /// that still exceeds `P` is an overlap or an item out of the window.
    fn run<'a>(&self, items: impl IntoIterator<Item = &'a [u8]>) {
        let p = self.payload as u64;
        // The unwrapped start and length of the previous item; the first
        // item's start.
        let mut prev: Option<(u64, u64)> = None;
        let mut first = 0u64;
        for (i, bytes) in items.into_iter().enumerate() {
            let at = (bytes.as_ptr() as usize - self.base) as u64 % p;
            let len = bytes.len() as u64;
            let start = match prev {
                None => {
                    first = at;
                    at
                }
                Some((prev_start, prev_len)) => {
                    let mut gap = (at + p - prev_start % p) % p;
                    if gap < prev_len {
                        gap += (prev_len - gap).div_ceil(p) * p;
                    }
                    prev_start + gap
                }
            };
            assert!(
                start + len - first <= p,
                "item {i} of a run ends {} bytes after the run's start, past one payload length ({p})",
                start + len - first
            );
            prev = Some((start, len));
        }
    }

    fn window(&self, view: &shmstream::TensorView<'_>, n: u64) {
        let start = view.as_ptr() as usize;
        assert_eq!(view.len() as u64, n);
        assert!(
            start >= self.base && start < self.base + self.payload,
            "{view:?}"
        );
        assert!(
            start + view.span_bytes() <= self.base + self.mapped,
            "{view:?}"
        );
        for k in 0..view.len() {
            let item = view.item(k).unwrap();
            let p = item.as_ptr() as usize;
            assert!(p >= self.base && p + item.len() <= self.base + self.mapped);
            assert!(item.len() <= self.payload);
        }
        assert!(view.item(view.len()).is_none());
        let _ = view.strides();
        if let Some(all) = view.contiguous() {
            assert!(all.as_ptr() as usize + all.len() <= self.base + self.mapped);
        }
    }
}

/// The field of shared memory a consumer's `Corrupt` message names: each
/// check the consumer makes, with the words its message uses.
fn corrupt_field(msg: &str) -> Option<&'static str> {
    const DESCRIPTOR_FIELDS: [(&str, &str); 12] = [
        ("id length ", "id length"),
        ("the id is not UTF-8", "id"),
        ("status code ", "status"),
        ("dtype code ", "dtype"),
        (" dimensions exceed ", "ndim"),
        ("the shape's byte count overflows", "shape"),
        ("nbytes ", "nbytes"),
        ("completion sequence ", "sequence"),
        ("reservation of ", "reservation"),
        ("a run of ", "run"),
        ("abandon reason length ", "reason length"),
        ("the abandon reason is not UTF-8", "reason"),
    ];
    if let Some(rest) = msg.strip_prefix("descriptor of position ") {
        let (position, what) = rest.split_once(": ")?;
        position.parse::<u64>().ok()?;
        return DESCRIPTOR_FIELDS
            .iter()
            .find(|(words, _)| what.contains(words))
            .map(|&(_, field)| field);
    }
    if msg.starts_with("registered count ") {
        Some("registered")
    } else if msg.starts_with("flags word ") {
        Some("flags")
    } else if msg.starts_with("staged word ") {
        Some("staged")
    } else {
        None
    }
}

/// Errors the consumer may give for damaged memory.
fn allowed(e: &StreamError) -> bool {
    match e {
        StreamError::Corrupt(msg) => corrupt_field(msg).is_some(),
        StreamError::Abandoned { id, reason, .. } => {
            (1..=64).contains(&id.len()) && reason.text().len() <= shmstream::MAX_REASON_LEN
        }
        // A forged flags word may say the producer is gone, or done.
        StreamError::Timeout { .. } | StreamError::ProducerGone | StreamError::NotReady => true,
        _ => false,
    }
}

/// Errors the producer may give when its view of the control block is damaged.
fn producer_allowed(e: &StreamError) -> bool {
    matches!(
        e,
        StreamError::Full { .. }
            | StreamError::AfterDone
            | StreamError::ConsumerGone
            | StreamError::Timeout { .. }
    ) || matches!(e, StreamError::Corrupt(m) if m.starts_with("released count "))
}

/// Words of the `k`th item of a mixed-size stream whose default item is
/// `item_bytes`: empty, a word, 56 bytes, a few words, the default, twice
/// it (so the payload, not only the items, can run out), or just past it.
fn mixed_words(k: u64, item_bytes: u64) -> u64 {
    let r = common::mix(k ^ 0x517e);
    match r % 8 {
        0 => 0,
        1 => 1,
        2 => 7,
        3 => 2 + (r >> 8) % 30,
        4 => item_bytes / 8,
        5 => item_bytes / 4,
        6 => 3,
        _ => item_bytes / 8 + 1,
    }
}

/// The producer tries to add one item of a mixed size (registered with
/// its size); whatever it gets, it must not panic. False when it did not.
fn produce_one(producer: &Producer) -> bool {
    let k = producer.registered();
    let words = mixed_words(k, producer.item_bytes());
    match producer.try_register_sized(&format!("t{k}"), 8 * words) {
        Ok(slot) => {
            commit_item(slot, k, words);
            true
        }
        Err(e) => {
            assert!(producer_allowed(&e), "{e:?}");
            false
        }
    }
}

/// Commits up to `n` items of mixed sizes, fewer when the items or the
/// payload bytes run out first.
fn commit_mixed(producer: &Producer, n: u64) {
    for _ in 0..n {
        if !produce_one(producer) {
            break;
        }
    }
}

/// What a consumer showed while it was driven: every item view passed
/// `Bounds::item`, every error passed `allowed`.
#[derive(Debug, Default)]
struct Seen {
    /// Item views handed out and checked (an item shown by several polls
    /// counts each time).
    items: u64,
    /// `Corrupt` errors, by the field they name.
    corrupt: std::collections::BTreeMap<&'static str, u64>,
    /// The other allowed errors (a forged flags word or an abandoned slot).
    other_errors: u64,
}

impl Seen {
    fn error(&mut self, e: &StreamError) {
        assert!(allowed(e), "{e:?}");
        match e {
            StreamError::Corrupt(msg) => {
                let field = corrupt_field(msg).expect("allowed: names a field");
                *self.corrupt.entry(field).or_default() += 1;
            }
            _ => self.other_errors += 1,
        }
    }

    fn add(&mut self, other: Seen) {
        self.items += other.items;
        for (field, n) in other.corrupt {
            *self.corrupt.entry(field).or_default() += n;
        }
        self.other_errors += other.other_errors;
    }

    fn corrupt_total(&self) -> u64 {
        self.corrupt.values().sum()
    }
}

/// Drives a consumer through a few bounded rounds of poll, items, windows,
/// waits and consumes; `between` runs between rounds (more damage, more
/// items). Returns what it saw, each item and error already checked.
fn drive_consumer(consumer: &mut Consumer, seed: u64, mut between: impl FnMut(u32)) -> Seen {
    let b = Bounds::of(consumer);
    let capacity = consumer.capacity();
    let mut seen = Seen::default();
    for round in 0..6u32 {
        let r = if round == 3 {
            consumer.wait_for(1 + seed % 3, Some(Duration::ZERO))
        } else {
            consumer.poll()
        };
        match r {
            Ok(avail) => {
                assert!(avail <= capacity, "{avail} items in a ring of {capacity}");
                assert_eq!(avail, consumer.available());
                for i in 0..avail {
                    b.item(&consumer.item(i).expect("i < available"));
                }
                b.run((0..avail).map(|i| consumer.item(i).unwrap().bytes()));
                assert!(consumer.item(avail).is_none());
                seen.items += avail;
                let mix = common::mix(seed ^ round as u64);
                if avail > 0 {
                    let i = mix % avail;
                    let n = 1 + (mix >> 16) % (avail - i);
                    if let Some(view) = consumer.window(i, n) {
                        b.window(&view, n);
                    }
                    if let Some(view) = consumer.window(0, avail) {
                        b.window(&view, avail);
                    }
                }
                assert!(consumer.window(0, avail + 1).is_none());
                assert!(consumer.window(u64::MAX, 2).is_none());
                consumer.consume((mix >> 32) % (avail + 2));
            }
            Err(e) => seen.error(&e),
        }
        between(round);
    }
    seen
}

/// As `drive_consumer`, through a `StreamBuffer`.
fn drive_buffer(buffer: &mut StreamBuffer<()>, mut between: impl FnMut(u32)) -> u64 {
    let b = Bounds::of(buffer.consumer());
    let capacity = buffer.consumer().capacity();
    let mut seen = 0;
    for round in 0..6u32 {
        if let Err(e) = buffer.has_chunk_ready() {
            assert!(allowed(&e), "{e:?}");
        }
        let r = if round == 3 {
            buffer.next_chunk_timeout(Some(Duration::ZERO)).map(|c| {
                c.map(|chunk| {
                    chunk_checks(&b, &chunk, capacity);
                    chunk.len()
                })
            })
        } else {
            buffer.pop_chunk().map(|chunk| {
                chunk_checks(&b, &chunk, capacity);
                Some(chunk.len())
            })
        };
        match r {
            Ok(n) => seen += n.unwrap_or(0) as u64,
            Err(e) => assert!(allowed(&e), "{e:?}"),
        }
        between(round);
    }
    seen
}

fn chunk_checks(b: &Bounds, chunk: &shmstream::StreamChunk<'_>, capacity: u64) {
    assert!(chunk.len() as u64 <= capacity);
    for item in chunk.items() {
        b.item(&item);
    }
    b.run(chunk.items().map(|item| item.bytes()));
    assert_eq!(chunk.ids().count(), chunk.len());
    if let Some(view) = chunk.stacked() {
        b.window(&view, chunk.len() as u64);
    }
}

/// One case: a small live stream with a few valid items, damaged by
/// `writes` (half before the consumer looks, half between its calls),
/// read through a `Consumer` or a `StreamBuffer`.
fn hostile_case(
    prefix: &str,
    geometry: usize,
    committed: u64,
    consumed_before: u64,
    writes: &[Write],
    through_buffer: bool,
    seed: u64,
) {
    let (capacity, item_bytes) = GEOMETRIES[geometry % GEOMETRIES.len()];
    let committed = committed % (capacity + 1);
    let cfg = config(prefix, capacity, item_bytes);
    let producer = Producer::create(&cfg).unwrap();
    let poker = Poker::new(&cfg);
    let geo = |producer: &Producer| Geo::read(&poker, capacity, item_bytes, producer.registered());
    let (first, later) = writes.split_at(writes.len() / 2);
    if through_buffer {
        let mut buffer = StreamBuffer::<()>::open(&cfg, Sliding::new(2, 1).unwrap()).unwrap();
        commit_mixed(&producer, committed);
        for w in first {
            for (offset, bytes) in resolve(w, geo(&producer)) {
                poker.bytes(offset, &bytes);
            }
        }
        drive_buffer(&mut buffer, |round| {
            produce_one(&producer);
            if round == 1 {
                for w in later {
                    for (offset, bytes) in resolve(w, geo(&producer)) {
                        poker.bytes(offset, &bytes);
                    }
                }
            }
        });
    } else {
        let mut consumer = Consumer::open(&cfg).unwrap();
        commit_mixed(&producer, committed);
        if consumed_before > 0 {
            let n = consumer.poll().unwrap();
            consumer.consume(consumed_before % (n + 1));
        }
        for w in first {
            for (offset, bytes) in resolve(w, geo(&producer)) {
                poker.bytes(offset, &bytes);
            }
        }
        drive_consumer(&mut consumer, seed, |round| {
            produce_one(&producer);
            if round == 1 {
                for w in later {
                    for (offset, bytes) in resolve(w, geo(&producer)) {
                        poker.bytes(offset, &bytes);
                    }
                }
            }
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: hostile_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_writes_never_break_the_consumer(
        geometry in 0usize..GEOMETRIES.len(),
        committed in 0u64..=16,
        consumed_before in 0u64..4,
        writes in prop::collection::vec(write(), 1..10),
        through_buffer in prop::bool::weighted(0.3),
        seed in any::<u64>(),
    ) {
        let prefix = unique_prefix("prop");
        let _cleanup = Cleanup(prefix.clone());
        let start = Instant::now();
        hostile_case(&prefix, geometry, committed, consumed_before, &writes, through_buffer, seed);
        prop_assert!(start.elapsed() < HANG, "case took {:?}", start.elapsed());
    }
}

// ---------------------------------------------------------------------------
// Concurrent: the writes happen while the consumer reads.

/// Applies `writes` in a loop from another thread until `stop`, while the
/// consumer is driven and the producer keeps adding items.
///
/// Only the header, the control block and the descriptors are hostile here:
/// a write that would reach into the payload (a `Payload` target, or an
/// `Anywhere` one skewed past the table) is left out, since payload views
/// assume a cooperating peer and racing their bytes is not a test of the
/// consumer's checks but a data race on memory it was promised.
fn concurrent_case(prefix: &str, geometry: usize, writes: Vec<Write>, seed: u64) {
    let (capacity, item_bytes) = GEOMETRIES[geometry % GEOMETRIES.len()];
    let cfg = config(prefix, capacity, item_bytes);
    let producer = Producer::create(&cfg).unwrap();
    let mut consumer = Consumer::open(&cfg).unwrap();
    commit_mixed(&producer, capacity / 2);
    let poker = Poker::new(&cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        // The reservations as they are now: the writes aim near them (the
        // producer adds more meanwhile).
        let g = Geo::read(&poker, capacity, item_bytes, producer.registered());
        std::thread::spawn(move || {
            let mut n = 0u64;
            // Bounded even if `stop` never came.
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                for w in &writes {
                    let g = Geo {
                        registered: g.registered + n % 4,
                        ..g
                    };
                    for (offset, bytes) in resolve(w, g) {
                        if offset + bytes.len() as u64 <= g.payload_offset() {
                            poker.bytes(offset, &bytes);
                        }
                    }
                }
                n += 1;
                if n % 8 == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    for _ in 0..4 {
        drive_consumer(&mut consumer, seed, |_| {
            produce_one(&producer);
        });
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // And once more after the writer stopped: the damage is final now.
    drive_consumer(&mut consumer, seed, |_| {
        produce_one(&producer);
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (hostile_cases() / 20).max(32),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn concurrent_hostile_writes_never_break_the_consumer(
        geometry in 0usize..GEOMETRIES.len(),
        writes in prop::collection::vec(write(), 1..6),
        seed in any::<u64>(),
    ) {
        let prefix = unique_prefix("conc");
        let _cleanup = Cleanup(prefix.clone());
        let start = Instant::now();
        concurrent_case(&prefix, geometry, writes, seed);
        prop_assert!(start.elapsed() < HANG, "case took {:?}", start.elapsed());
    }
}

/// Episodes of a writer thread putting random bytes at random interesting
/// places of the header, control block and descriptor table (never the
/// payload: payload views assume a cooperating peer) while a producer keeps
/// adding items and a consumer keeps reading, for a bounded time
/// (`SHMSTREAM_HOSTILE_MILLIS`, default 1000). Damage soon wedges a stream
/// for good (a forged `registered` the producer then contradicts, a lost
/// completion), so each episode starts on a fresh stream.
///
/// Every item the consumer accepts must pass `Bounds::item` (inside the
/// payload, an id of 1 to 64 bytes, at most 8 dimensions, nbytes equal to
/// the shape's byte count and within the payload) and `Bounds::run` (in
/// order, within one payload length); every error must be a
/// `Corrupt` naming the field it found wrong, or what a forged flags word or
/// an abandoned slot explains.
#[test]
fn a_free_running_hostile_writer_never_breaks_the_consumer() {
    let millis = std::env::var("SHMSTREAM_HOSTILE_MILLIS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000u64);
    let payload = Geo {
        capacity: 8,
        item_bytes: 512,
        registered: 0,
        reservations: [(0, 0); 16],
    }
    .payload_offset();
    let deadline = Instant::now() + Duration::from_millis(millis);
    let (mut episodes, mut writes) = (0u64, 0u64);
    // What the consumer saw before its episode's writer started, and after.
    let (mut calm, mut hostile) = (Seen::default(), Seen::default());
    // At least a few episodes, however slow the machine.
    while episodes < 8 || Instant::now() < deadline {
        let s = stream("soak", 8, 512);
        let mut consumer = Consumer::open(&s.cfg).unwrap();
        commit(&s.producer, 4);
        calm.add(drive_consumer(&mut consumer, episodes, |_| {
            produce_one(&s.producer);
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, written) = (stop.clone(), written.clone());
            let poker = Poker::new(&s.cfg);
            let mut x = common::mix(0x5eed ^ episodes);
            std::thread::spawn(move || {
                let mut writes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = common::mix(x);
                    let slot = x % 8;
                    let offset = match (x >> 8) % 10 {
                        0 => REGISTERED,
                        1 => RELEASED,
                        2 => FLAGS,
                        3 => desc(slot, SEQ),
                        4 => desc(slot, NBYTES),
                        5 | 6 => desc(slot, INFO),
                        7 => desc(slot, DIMS + 4 * ((x >> 12) % 8)),
                        8 if x >> 60 == 0 => side(8, slot, WIDE_DIMS + 8 * ((x >> 12) % 8)),
                        8 => side(8, slot, ID + 8 * ((x >> 12) % 8)),
                        _ => (x >> 16) % payload,
                    };
                    let y = common::mix(x);
                    let v = match (x >> 40) % 6 {
                        0 => 0,
                        1 => u64::MAX,
                        2 => y % 32,
                        3 => info(
                            (y % 4) as u32,
                            (y >> 8) as u32 % 16,
                            (y >> 16) as u32 % 10,
                            (y >> 24) as u32 % 70,
                        ) as u64,
                        _ => y,
                    };
                    let width = [1usize, 2, 4, 8][((x >> 50) % 4) as usize];
                    // Below the payload, whatever the width.
                    poker.bytes(offset.min(payload - 8), &v.to_ne_bytes()[..width]);
                    writes += 1;
                    written.store(writes, Ordering::Relaxed);
                    if writes % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
                writes
            })
        };
        // Until the writer wrote a few hundred times (bounded, should it
        // never be scheduled).
        let mut round = 0u64;
        while written.load(Ordering::Relaxed) < 256 && round < 100_000 {
            hostile.add(drive_consumer(
                &mut consumer,
                episodes ^ round << 32,
                |_| {
                    produce_one(&s.producer);
                },
            ));
            round += 1;
        }
        stop.store(true, Ordering::Relaxed);
        writes += writer.join().unwrap();
        episodes += 1;
    }
    eprintln!(
        "{episodes} episodes, {writes} hostile writes; before the writer: {calm:?}; with it: {hostile:?}"
    );
    // Each item and each error was checked as it came (`drive_consumer`:
    // `Bounds::item`, `allowed`); here: those checks were exercised. Before
    // its writer starts, each episode's consumer is shown its four items
    // (and its only errors are timeouts of `wait_for`).
    assert!(calm.items >= 4 * episodes, "{calm:?}");
    assert_eq!(calm.corrupt_total(), 0, "{calm:?}");
    assert!(writes > 0, "the writers never wrote");
    assert!(
        hostile.items + hostile.corrupt_total() > 0,
        "with a writer, the consumer neither accepted an item nor reported a corrupt field: {hostile:?}"
    );
}

/// An id is read from the side table once per position: a later rewrite of
/// the side entry changes nothing the consumer shows (it keeps its copy).
#[test]
fn an_id_once_read_is_the_consumer_s_copy() {
    let s = stream("id-copy", 4, 1024);
    let mut consumer = Consumer::open(&s.cfg).unwrap();
    commit(&s.producer, 1);
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().id(), "t0");
    s.poker.bytes(side(4, 0, ID), b"x9");
    assert_eq!(consumer.item(0).unwrap().id(), "t0");
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().try_id().unwrap(), "t0");
}

/// The check of a run itself: an item overlapping the one before, or
/// ending more than a payload length after the run's start, fails it; a
/// run across the wrap, or a payload-sized item then an empty one, passes.
#[test]
fn bounds_run_catches_overlaps_and_items_past_the_window() {
    let buf = vec![0u8; 8192];
    let b = Bounds {
        base: buf.as_ptr() as usize,
        payload: 4096,
        mapped: 8192,
    };
    b.run([&buf[100..200], &buf[4000..4100], &buf[90..100]]);
    b.run([&buf[0..4096], &buf[0..0]]);
    for bad in [
        [&buf[0..100], &buf[50..60], &buf[200..200]],
        [&buf[100..200], &buf[4000..4100], &buf[150..160]],
    ] {
        let caught = std::panic::catch_unwind(|| b.run(bad)).is_err();
        assert!(caught, "{:?}", bad.map(|s| s.as_ptr() as usize - b.base));
    }
}
