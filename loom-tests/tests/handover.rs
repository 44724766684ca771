//! Model 12: the hub's hand-over (issue 21): a producer announces a
//! stream (claim, publish: the real entry protocol of a heap hub) and goes,
//! while the worker's set adopts it or not and goes too (closing every
//! entry, then settling each stream it found published and never adopted
//! through the segment's `consumer_pid` word: the real decision code of
//! `src/protocol/handover.rs`). The OS parts are modelled here: the segment's name
//! (present or not), the producer's liveness lock (released after its last
//! step or when it is killed), and the segment's contents (a loom cell the
//! producer writes before it goes, and that a side removing the name reads
//! as its last use of the stream: the worker's read of a stream handed to
//! it, or the release of its memory).
//!
//! Every model asserts: the name is removed exactly once (a side the
//! protocol makes the remover asserts the name is still there; a name left
//! at the end is a leak), and no access to the contents after the removal
//! races the producer's last write (loom's causality check of the cell).
//!
//! Teeth: `SHMSTREAM_WEAKEN=handover_release scripts/test-loom.sh --test
//! handover` makes the producer's exchange (`0 -> HANDED_OVER`) Relaxed:
//! the worker that finds the word handed over reads and removes the stream
//! without the producer's last writes ordered before, and loom reports a
//! causality violation on the cell.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;
use shmstream::handover::{
    consumer_attaches, producer_leaves, worker_closes, Close, Leave, ModelHub,
};

/// The worker's pid in the model.
const WORKER_PID: u32 = 7;

/// One stream's segment as the OS keeps it.
#[derive(Debug)]
struct Segment {
    /// The header's `consumer_pid` word: what decides.
    word: AtomicU32,
    /// The name is in /dev/shm.
    named: AtomicBool,
    /// Removals of the name (a second one is a double unlink).
    removals: AtomicUsize,
    /// The producer's liveness lock (the kernel drops it when the producer
    /// is done or dies).
    producer_alive: AtomicBool,
    /// What the producer wrote (its commits, `done`, the gone flag).
    contents: UnsafeCell<u64>,
}

impl Segment {
    fn new() -> Arc<Segment> {
        Arc::new(Segment {
            word: AtomicU32::new(0),
            named: AtomicBool::new(true),
            removals: AtomicUsize::new(0),
            producer_alive: AtomicBool::new(true),
            contents: UnsafeCell::new(0),
        })
    }

    /// The producer's last write to its stream before it goes.
    fn write(&self, value: u64) {
        self.contents.with_mut(|p| {
            // SAFETY: loom's cell: a racing access fails the model.
            unsafe { *p = value }
        });
    }

    /// A side the protocol made the remover: it reads the stream (its last
    /// use of it) and unlinks the name, which must still be there.
    fn remove(&self, who: &str) {
        let seen = self.contents.with(|p| {
            // SAFETY: as in `write`.
            unsafe { *p }
        });
        assert!(seen >= 1, "{who} removes a stream it never saw written");
        assert!(
            self.named.swap(false, Ordering::Relaxed),
            "{who} removes a name already removed: two sides decided"
        );
        self.removals.fetch_add(1, Ordering::Relaxed);
    }

    /// `remove_if_dead`: removes the name only if the producer's lock is
    /// free (it then finished, or was killed), and if the name is there.
    fn remove_if_dead(&self) {
        // Acquire: the lock's release happens after the producer's last
        // step (the kernel orders them).
        if !self.producer_alive.load(Ordering::Acquire) && self.named.swap(false, Ordering::Relaxed)
        {
            self.removals.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn assert_removed_once(&self) {
        assert!(
            !self.named.load(Ordering::Relaxed),
            "the name was left in /dev/shm (word {:#x})",
            self.word.load(Ordering::Relaxed)
        );
        assert_eq!(self.removals.load(Ordering::Relaxed), 1);
    }
}

/// How the producer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Drops its producer: the hand-over decision.
    Drops,
    /// Killed after announcing: its lock goes, nothing else.
    Killed,
}

/// The producer: creates its segment (written before it is announced),
/// claims and publishes an entry, writes again and goes. A claim or a
/// publish the closing set refused removes the stream at once
/// (`create_stream` fails with `WorkerGone`).
fn producer(hub: &ModelHub, seg: &Segment, end: End, worker_alive: &AtomicBool) {
    seg.write(1);
    // No entry (the set closed them all) or a refused publish: `WorkerGone`.
    let published = hub
        .claim()
        .is_some_and(|(entry, gen)| hub.publish(entry, gen));
    if !published {
        seg.write(2);
        // `cancel_hand_over`, then the drop: no exchange, the name goes.
        assert_eq!(producer_leaves(&seg.word, false), Leave::Remove);
        seg.remove("the refused producer");
        seg.producer_alive.store(false, Ordering::Release);
        return;
    }
    seg.write(2);
    if end == End::Drops {
        let hand_over = worker_alive.load(Ordering::Acquire);
        if producer_leaves(&seg.word, hand_over) == Leave::Remove {
            seg.remove("the producer");
        }
    }
    seg.producer_alive.store(false, Ordering::Release);
}

/// The worker's set: adopts what it finds announced if `adopt` (opening
/// the stream: the consumer's swap), then goes: closes every entry, and
/// settles each published entry it never adopted.
fn worker(hub: &ModelHub, seg: &Segment, adopt: bool) {
    let mut inherited = None;
    if adopt && !hub.take_announced().is_empty() {
        inherited = Some(consumer_attaches(&seg.word, WORKER_PID));
    }
    let published = hub.close_first();
    match inherited {
        // The adopted stream's consumer goes: it removes the name only if
        // the producer left it to it.
        Some(true) => seg.remove("the consumer that inherited the stream"),
        Some(false) => {}
        None => {
            if published.is_some() {
                match worker_closes(&seg.word) {
                    Close::WorkerRemoves => seg.remove("the closing set"),
                    Close::ProducerRemoves => seg.remove_if_dead(),
                    Close::NotOurs => {}
                }
            }
        }
    }
}

/// Both close at once, the stream announced and never adopted: the
/// claim/publish race the set's close, and the two exchanges race.
#[test]
fn a_producer_and_a_set_closing_at_once_remove_the_name_once() {
    model(|| {
        let hub = Arc::new(ModelHub::new());
        let seg = Segment::new();
        let alive = Arc::new(AtomicBool::new(true));
        let p = {
            let (hub, seg, alive) = (hub.clone(), seg.clone(), alive.clone());
            thread::spawn(move || producer(&hub, &seg, End::Drops, &alive))
        };
        worker(&hub, &seg, false);
        p.join().unwrap();
        seg.assert_removed_once();
    });
}

/// The same with the set adopting whatever it finds announced first: the
/// consumer's swap joins the race.
#[test]
fn a_producer_and_a_set_that_adopts_closing_at_once_remove_the_name_once() {
    model(|| {
        let hub = Arc::new(ModelHub::new());
        let seg = Segment::new();
        let alive = Arc::new(AtomicBool::new(true));
        let p = {
            let (hub, seg, alive) = (hub.clone(), seg.clone(), alive.clone());
            thread::spawn(move || producer(&hub, &seg, End::Drops, &alive))
        };
        worker(&hub, &seg, true);
        p.join().unwrap();
        seg.assert_removed_once();
    });
}

/// A dead side: the producer is killed after announcing (its lock goes,
/// nothing else), then the set goes; or the worker is killed (its lock
/// goes) and then the producer goes.
#[test]
fn a_dead_side_leaves_the_name_to_the_living_one() {
    model(|| {
        let hub = ModelHub::new();
        let seg = Segment::new();
        let alive = AtomicBool::new(true);
        producer(&hub, &seg, End::Killed, &alive);
        worker(&hub, &seg, false);
        seg.assert_removed_once();
    });
    model(|| {
        // The worker is killed (its hub lock goes) before the producer
        // goes. (One killed after the producer handed over leaves a dead
        // producer's file, which `ipc-demo clean` removes.)
        let hub = ModelHub::new();
        let seg = Segment::new();
        let alive = AtomicBool::new(false);
        producer(&hub, &seg, End::Drops, &alive);
        seg.assert_removed_once();
    });
}

/// Two producers claim from the same entry at once: the loser of the CAS
/// moves on to the next entry (it must not take a lost race for a closed
/// hub and give up).
#[test]
fn two_claims_racing_for_one_entry_both_get_one() {
    model(|| {
        let hub = Arc::new(ModelHub::new());
        let other = {
            let hub = hub.clone();
            thread::spawn(move || hub.claim_other())
        };
        let mine = hub.claim().expect("an entry");
        let theirs = other.join().unwrap().expect("an entry");
        assert_ne!(mine.0, theirs.0);
    });
}
