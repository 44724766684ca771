//! One worker, many streams, one wait: `StreamSet` over an in-process hub
//! (the heap form of the hub protocol, what Miri runs). Producers in other
//! threads create streams through `Hub`, commit, finish or leave; the
//! consumer thread only ever sleeps in `wait_any`.
//!
//! `scripts/test-miri.sh` runs it under Miri (counts scaled down);
//! `cargo test --test stream_set` natively.

#![cfg(not(loom))]

use shmstream::policy::Policy;
use shmstream::{
    DType, Hub, Producer, SetupError, StreamConfig, StreamError, StreamId, StreamKey, StreamSet,
    TensorMeta,
};
use std::collections::HashMap;
use std::thread;
use std::time::Duration;

/// Streams per producer thread and items per stream.
const STREAMS: u64 = if cfg!(miri) { 3 } else { 48 };
const ITEMS: u64 = if cfg!(miri) { 4 } else { 200 };

/// A wait that ends only by timing out is a lost wake-up: fail, not hang.
const PATIENCE: Option<Duration> = Some(Duration::from_secs(60));

fn id(producer: u64, stream: u64) -> StreamId {
    StreamId {
        request_id: format!("req-{producer}-{stream}"),
        edge_name: "codec".into(),
        from_partition: format!("p{producer}"),
    }
}

fn config(id: StreamId) -> StreamConfig {
    StreamConfig::new(id)
        .with_capacity(8)
        .with_item_bytes(64)
        .with_timeout(PATIENCE)
}

/// The value item `seq` of a stream carries.
fn value(producer: u64, stream: u64, seq: u64) -> u64 {
    producer << 48 | stream << 24 | seq
}

fn send(p: &Producer, v: u64, seq: u64) {
    p.register(&format!("t{seq}"))
        .unwrap()
        .write(TensorMeta::new(DType::U64, &[1]).unwrap(), &v.to_le_bytes())
        .unwrap();
}

fn fixed1() -> Policy {
    "fixed:size=1".parse().unwrap()
}

/// Pops every chunk a reported stream has; returns true once it finished.
fn drain(set: &mut StreamSet, key: StreamKey, next: &mut HashMap<StreamId, u64>) -> bool {
    let buffer = set.get_mut(key).expect("a reported key names a stream");
    let sid = buffer.id().clone();
    let producer: u64 = sid.from_partition[1..].parse().unwrap();
    let stream: u64 = sid.request_id.rsplit('-').next().unwrap().parse().unwrap();
    loop {
        match buffer.next_chunk_timeout(Some(Duration::ZERO)) {
            Ok(Some(chunk)) => {
                for i in 0..chunk.len() {
                    let item = chunk.item(i).unwrap();
                    let seq = next.entry(sid.clone()).or_insert(0);
                    assert_eq!(item.id(), format!("t{seq}"), "{sid}");
                    let got = u64::from_le_bytes(item.bytes().try_into().unwrap());
                    assert_eq!(got, value(producer, stream, *seq), "{sid}");
                    *seq += 1;
                }
            }
            Ok(None) => return true,
            Err(StreamError::Timeout { .. }) => return false,
            Err(e) => panic!("{sid}: {e}"),
        }
    }
}

#[test]
fn two_producers_many_streams_one_wait_every_item_in_order() {
    let mut set: StreamSet = StreamSet::in_process(64 * 2)
        .unwrap()
        .with_default_policy(fixed1());
    let hubs: Vec<Hub> = (0..2).map(|_| set.hub().unwrap()).collect();
    let producers: Vec<_> = hubs
        .into_iter()
        .enumerate()
        .map(|(p, hub)| {
            let p = p as u64;
            thread::spawn(move || {
                // Streams are created while the others already run.
                let mut live: Vec<(u64, Producer)> = Vec::new();
                for s in 0..STREAMS {
                    live.push((s, hub.create_stream(&config(id(p, s))).unwrap()));
                    for (s, producer) in &live {
                        let seq = producer.registered();
                        if seq < ITEMS {
                            send(producer, value(p, *s, seq), seq);
                        }
                    }
                }
                for (s, producer) in &live {
                    for seq in producer.registered()..ITEMS {
                        send(producer, value(p, *s, seq), seq);
                    }
                    producer.signal_done();
                }
                // Dropped here: finished streams, then gone producers.
            })
        })
        .collect();
    let mut next = HashMap::new();
    let mut finished = 0;
    while finished < 2 * STREAMS {
        let ready = set.wait_any(PATIENCE);
        assert!(!ready.is_empty(), "wait_any timed out: a lost wake-up");
        for key in ready {
            if drain(&mut set, key, &mut next) {
                assert!(set.remove(key).is_some());
                assert!(set.get(key).is_none(), "a removed key names nothing");
                finished += 1;
            }
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(next.len() as u64, 2 * STREAMS);
    assert!(next.values().all(|&n| n == ITEMS), "{next:?}");
    assert!(set.is_empty());
}

#[test]
fn a_stream_with_several_chunks_ready_is_reported_again_without_a_new_commit() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy(fixed1());
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&config(id(0, 0))).unwrap();
    for seq in 0..3 {
        send(&producer, value(0, 0, seq), seq);
    }
    for _ in 0..3 {
        let ready = set.wait_any(PATIENCE);
        assert_eq!(ready.len(), 1);
        let chunk = set.get_mut(ready[0]).unwrap().pop_chunk().unwrap();
        assert_eq!(chunk.len(), 1);
    }
    // Nothing left: the set now times out.
    assert!(set.wait_any(Some(Duration::from_millis(1))).is_empty());
}

/// A stream whose policy continues after done (the reference's
/// Thinker→Talker edges) offers the same empty chunk for ever once drained:
/// the set reports it until that chunk is taken once, then never again,
/// so a worker waiting on the set sleeps (issue 26). `pop_chunk` keeps
/// giving the empty chunk, as the reference's does.
#[test]
fn a_drained_continue_after_done_stream_is_reported_until_its_empty_chunk_is_taken() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy("fixed:size=1,continue".parse().unwrap());
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&config(id(0, 0))).unwrap();
    send(&producer, value(0, 0, 0), 0);
    producer.signal_done();
    let ready = set.wait_any(PATIENCE);
    assert_eq!(ready.len(), 1);
    let buffer = set.get_mut(ready[0]).unwrap();
    assert_eq!(buffer.pop_chunk().unwrap().len(), 1);
    assert!(!buffer.is_quiet(), "the empty chunk is not taken yet");
    // Done and drained: the empty chunk is news once.
    let ready = set.wait_any(PATIENCE);
    assert_eq!(ready.len(), 1);
    let buffer = set.get_mut(ready[0]).unwrap();
    let empty = buffer.pop_chunk().unwrap();
    assert_eq!((empty.len(), empty.is_final()), (0, false));
    drop(empty);
    assert!(buffer.is_quiet());
    // Then nothing changes: not reported, in 20 waits.
    for _ in 0..20 {
        assert!(set.wait_any(Some(Duration::from_millis(1))).is_empty());
    }
    // The reference's pop still answers with the same empty chunk.
    let buffer = set.get_mut(ready[0]).unwrap();
    let again = buffer.pop_chunk().unwrap();
    assert_eq!((again.len(), again.is_final()), (0, false));
    drop(again);
    assert!(buffer.is_quiet());
}

/// The stream number of a stream of `id(_, stream)`.
fn stream_of(set: &StreamSet, key: StreamKey) -> usize {
    let sid = set.get(key).unwrap().id();
    sid.request_id.rsplit('-').next().unwrap().parse().unwrap()
}

#[test]
fn a_caller_serving_only_the_first_ready_stream_serves_every_stream_in_turn() {
    const N: usize = 6;
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy(fixed1());
    let hub = set.hub().unwrap();
    let producers: Vec<Producer> = (0..N as u64)
        .map(|s| hub.create_stream(&config(id(0, s))).unwrap())
        .collect();
    // Stream 0 is hot (it gets a new item before every call); the others
    // have chunks enough to stay ready for the whole test.
    let mut sent = [0u64; N];
    for (s, p) in producers.iter().enumerate().skip(1) {
        for seq in 0..6 {
            send(p, value(0, s as u64, seq), seq);
        }
        sent[s] = 6;
    }
    let mut served = [0u64; N];
    let mut last = [0usize; N];
    let calls = 2 * N;
    for call in 1..=calls {
        if sent[0] - served[0] < 4 {
            send(&producers[0], value(0, 0, sent[0]), sent[0]);
            sent[0] += 1;
        }
        let ready = set.wait_any(PATIENCE);
        assert!(!ready.is_empty());
        // Serve only the first.
        let s = stream_of(&set, ready[0]);
        assert_eq!(set.get_mut(ready[0]).unwrap().pop_chunk().unwrap().len(), 1);
        assert!(
            call - last[s] <= N,
            "stream {s} waited {} calls (served: {served:?})",
            call - last[s]
        );
        served[s] += 1;
        last[s] = call;
    }
    // Every stream had its turn in every N calls.
    for (s, &at) in last.iter().enumerate() {
        assert!(
            calls - at < N,
            "stream {s} last served at call {at}: {served:?}"
        );
    }
    assert!(served.iter().all(|&n| n == 2), "{served:?}");
}

#[test]
fn a_dropped_producer_is_reported_once_and_then_says_producer_gone() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy("fixed:size=4".parse().unwrap());
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&config(id(0, 0))).unwrap();
    send(&producer, 1, 0);
    // One item of a window of four: nothing to report.
    assert!(set.wait_any(Some(Duration::from_millis(1))).is_empty());
    drop(producer);
    let ready = set.wait_any(PATIENCE);
    assert_eq!(ready.len(), 1);
    let err = set
        .get_mut(ready[0])
        .unwrap()
        .next_chunk_timeout(Some(Duration::ZERO));
    assert_eq!(err.unwrap_err(), StreamError::ProducerGone);
    // Reported once, not at every call.
    assert!(set.wait_any(Some(Duration::from_millis(1))).is_empty());
}

#[test]
fn without_an_adopter_streams_wait_to_be_added_by_identity() {
    let mut set: StreamSet = StreamSet::in_process(64).unwrap();
    let hub = set.hub().unwrap();
    let missing = config(id(9, 9));
    assert!(matches!(
        set.add(&missing, fixed1()),
        Err(SetupError::NotAnnounced { .. })
    ));
    let producer = hub.create_stream(&config(id(0, 1))).unwrap();
    send(&producer, value(0, 1, 0), 0);
    assert!(set.wait_any(Some(Duration::from_millis(1))).is_empty());
    assert_eq!(set.announced(), vec![id(0, 1)]);
    let key = set.add(&config(id(0, 1)), fixed1()).unwrap();
    assert_eq!(set.find(&id(0, 1)), Some(key));
    assert_eq!(set.wait_any(PATIENCE), vec![key]);
    assert!(
        set.add(&config(id(0, 1)), fixed1()).is_err(),
        "adopted once"
    );
}

/// Defect 4 of issue 21: a refused `add` (the policy's window exceeds the
/// ring) must leave the announcement where it was; on a9f0152 it consumed
/// it and the retry got `NotAnnounced`.
#[test]
fn a_refused_add_leaves_the_stream_announced_and_a_valid_retry_reads_every_item() {
    let mut set: StreamSet = StreamSet::in_process(64).unwrap();
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&config(id(0, 2))).unwrap();
    for seq in 0..5 {
        send(&producer, value(0, 2, seq), seq);
    }
    producer.signal_done();
    let too_wide: Policy = "fixed:size=9".parse().unwrap();
    let err = set.add(&config(id(0, 2)), too_wide).unwrap_err();
    assert!(
        matches!(
            err,
            SetupError::WindowExceedsCapacity {
                window: 9,
                capacity: 8
            }
        ),
        "{err}"
    );
    assert_eq!(set.announced(), vec![id(0, 2)], "still announced");
    assert!(set.is_empty());
    let key = set.add(&config(id(0, 2)), fixed1()).unwrap();
    let mut next = HashMap::new();
    let mut finished = false;
    while !finished {
        for k in set.wait_any(PATIENCE) {
            assert_eq!(k, key);
            finished = drain(&mut set, k, &mut next);
        }
    }
    assert_eq!(next[&id(0, 2)], 5, "every item");
}

/// Adoption errors are kept up to 64, the oldest going first (a bound
/// of the worker's memory whatever its producers announce).
#[test]
fn adoption_errors_are_kept_up_to_sixty_four_the_latest() {
    let too_wide: Policy = "fixed:size=9".parse().unwrap();
    let mut set: StreamSet = StreamSet::in_process(128)
        .unwrap()
        .with_default_policy(too_wide);
    let hub = set.hub().unwrap();
    let producers: Vec<_> = (0..70)
        .map(|s| {
            let p = hub.create_stream(&config(id(0, s))).unwrap();
            // One look per stream: the errors come in creation order.
            assert!(set.announced().is_empty());
            p
        })
        .collect();
    let errors = set.take_adopt_errors();
    assert_eq!(errors.len(), 64);
    assert_eq!(errors[0].0, id(0, 6), "the oldest went first");
    assert_eq!(errors[63].0, id(0, 69));
    assert!(errors.iter().all(|(_, e)| matches!(
        e,
        SetupError::WindowExceedsCapacity {
            window: 9,
            capacity: 8
        }
    )));
    assert!(set.take_adopt_errors().is_empty());
    drop(producers);
}

/// A hub admits 64 producer attachments; the 65th is refused naming the
/// limit, and a slot comes back when an attachment goes.
#[test]
fn a_hub_admits_sixty_four_producers_and_frees_a_slot_when_one_goes() {
    let set: StreamSet = StreamSet::in_process(64).unwrap();
    let mut hubs: Vec<Hub> = (0..64).map(|_| set.hub().unwrap()).collect();
    let err = set.hub().unwrap_err();
    assert!(
        matches!(err, SetupError::TooManyProducers { max: 64, .. }),
        "{err}"
    );
    hubs.pop();
    assert!(set.hub().is_ok());
}

#[test]
fn a_full_hub_is_an_error_naming_its_size_and_a_removed_stream_frees_its_entry() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy(fixed1());
    let hub = set.hub().unwrap();
    let producers: Vec<_> = (0..64)
        .map(|s| hub.create_stream(&config(id(0, s))).unwrap())
        .collect();
    let err = hub.create_stream(&config(id(0, 64))).unwrap_err();
    assert!(
        matches!(err, SetupError::HubFull { entries: 64, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("all 64 stream entries"), "{err}");
    // Adopt them all, remove one: its entry serves the next stream.
    send(&producers[5], value(0, 5, 0), 0);
    let ready = set.wait_any(PATIENCE);
    assert_eq!(ready.len(), 1);
    assert_eq!(set.len(), 64);
    assert!(set.remove(ready[0]).is_some());
    let again = hub.create_stream(&config(id(0, 64))).unwrap();
    send(&again, value(0, 64, 0), 0);
    let ready2 = set.wait_any(PATIENCE);
    assert_eq!(ready2.len(), 1);
    assert_eq!(ready2[0].entry(), ready[0].entry(), "the freed entry");
    assert_ne!(ready2[0], ready[0], "a new generation");
    assert!(set.get(ready[0]).is_none());
    assert_eq!(set.get(ready2[0]).unwrap().id(), &id(0, 64));
}

#[test]
fn bad_hub_sizes_are_refused_naming_the_limits() {
    for entries in [0, 63, 65, 8192] {
        let err = StreamSet::<()>::in_process(entries).unwrap_err();
        assert!(
            err.to_string()
                .contains("64 to 4096 streams in multiples of 64"),
            "{err}"
        );
    }
}

/// A signal handled in the waiting thread (installed without `SA_RESTART`,
/// as CPython installs its own) ends the wait when the set returns on
/// signals, and only then.
#[cfg(not(miri))]
mod signals {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    extern "C" fn on_usr1(_: libc::c_int) {}

    fn install_usr1_without_restart() {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler does nothing, which is async-signal-safe; SIGUSR1 is
        // used by nothing else in this test binary.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
    }

    /// A thread waiting 5 s on an idle set of 64 announced, adopted
    /// streams (no items); SIGUSR1 to it after 100 ms. Returns the thread
    /// (its result: how many keys, how long it waited), the set's waker and
    /// a function that signals the thread again.
    fn wait_and_signal(
        return_on_signal: bool,
    ) -> (
        thread::JoinHandle<(usize, Duration)>,
        impl Fn() + Send + 'static,
        impl Fn(),
    ) {
        install_usr1_without_restart();
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let mut set = StreamSet::<()>::in_process(64)
                .unwrap()
                .with_default_policy(fixed1())
                .with_return_on_signal(return_on_signal);
            let hub = set.hub().unwrap();
            let producers: Vec<_> = (0..64)
                .map(|s| hub.create_stream(&config(id(9, s))).unwrap())
                .collect();
            assert!(set.wait_any(Some(Duration::ZERO)).is_empty());
            assert_eq!(set.len(), 64);
            // SAFETY: pthread_self has no preconditions.
            tx.send((unsafe { libc::pthread_self() }, set.waker()))
                .unwrap();
            let t0 = Instant::now();
            let keys = set.wait_any(Some(Duration::from_secs(5)));
            let waited = t0.elapsed();
            drop(producers);
            (keys.len(), waited)
        });
        let (tid, waker) = rx.recv().unwrap();
        let signal = move || {
            // SAFETY: the waiter's thread is joined by the caller only after
            // its last signal, so `tid` names it (running, or ended and not
            // yet joined: ESRCH then), and SIGUSR1 has a handler.
            let r = unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
            assert!(r == 0 || r == libc::ESRCH, "pthread_kill: {r}");
        };
        thread::sleep(Duration::from_millis(100));
        signal();
        (waiter, waker, signal)
    }

    #[test]
    fn with_return_on_signal_a_signal_ends_the_wait_with_nothing_ready() {
        let (waiter, _waker, signal) = wait_and_signal(true);
        // A signal handled before the waiter entered its sleep (a loaded
        // machine can delay it past the first) interrupts nothing: signal
        // again until it is seen, for at most the bound asserted below.
        let start = Instant::now();
        while !waiter.is_finished() && start.elapsed() < Duration::from_millis(900) {
            thread::sleep(Duration::from_millis(20));
            if !waiter.is_finished() {
                signal();
            }
        }
        let (keys, waited) = waiter.join().unwrap();
        assert_eq!(keys, 0);
        assert!(
            waited < Duration::from_secs(1),
            "the signal did not end the wait: {waited:?}"
        );
    }

    #[test]
    fn without_return_on_signal_the_wait_goes_on_until_woken() {
        let (waiter, waker, _signal) = wait_and_signal(false);
        thread::sleep(Duration::from_millis(200));
        assert!(
            !waiter.is_finished(),
            "the wait ended on a signal it should sleep through"
        );
        waker();
        let (keys, waited) = waiter.join().unwrap();
        assert_eq!(keys, 0);
        // Past the signal (about 100 ms in; the waiter's clock starts a
        // little after the main thread's, so not quite 300 ms), ended by
        // the waker well before the 5 s timeout.
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(4),
            "the waker did not end the wait: {waited:?}"
        );
    }
}

/// The futex word of an armed set's bell.
fn word(wait: &shmstream::BellWait) -> u32 {
    // SAFETY: `futex()` points at the bell's aligned u32 word, which the
    // wait keeps alive (it holds the hub); the word is only ever accessed
    // atomically.
    unsafe { std::sync::atomic::AtomicU32::from_ptr(wait.futex().cast_mut()) }
        .load(std::sync::atomic::Ordering::Acquire)
}

/// An event loop's wait (issue 25): `look_or_arm` announces a sleeper on
/// the hub's bell and hands its futex word over instead of sleeping; a
/// commit then changes the word (what completes an io_uring `FUTEX_WAIT`
/// on it), as does the set's waker; once the wait is dropped the
/// announcement is gone and a commit rings nobody.
#[test]
fn an_armed_set_is_rung_by_a_commit_and_a_dropped_arm_by_nothing() {
    let mut set: StreamSet = StreamSet::in_process(64)
        .unwrap()
        .with_default_policy(fixed1());
    let hub = set.hub().unwrap();
    let producer = hub.create_stream(&config(id(0, 0))).unwrap();
    // The word moves off its first value (a wait must name the one it saw).
    set.waker()();
    let mut ready = Vec::new();
    let wait = loop {
        if let Some(w) = set.look_or_arm(&mut ready) {
            break w;
        }
        assert!(ready.is_empty(), "nothing committed yet: {ready:?}");
    };
    assert_eq!(set.len(), 1, "the look adopted the announced stream");
    // An in-process producer has no pidfd: it is watched between slices.
    assert!(wait
        .slice()
        .is_some_and(|s| !s.is_zero() && s <= shmstream::WATCH_SLICE));
    assert_ne!(wait.seen(), 0);
    assert_eq!(word(&wait), wait.seen());
    assert!(format!("{wait:?}").contains(&format!("seen: {}", wait.seen())));
    send(&producer, value(0, 0, 0), 0);
    assert_ne!(word(&wait), wait.seen(), "the commit rang the armed bell");
    drop(wait);
    assert!(set.look_or_arm(&mut ready).is_none());
    assert_eq!(ready.len(), 1);
    assert_eq!(set.get_mut(ready[0]).unwrap().pop_chunk().unwrap().len(), 1);

    // Dropped unrung: the next commit makes no futex call.
    let wait = set.look_or_arm(&mut ready).expect("nothing ready: armed");
    let seen = wait.seen();
    drop(wait);
    send(&producer, value(0, 0, 1), 1);
    let again = set.look_or_arm(&mut ready);
    assert!(again.is_none() && ready.len() == 1, "{ready:?}");
    assert_eq!(set.get_mut(ready[0]).unwrap().pop_chunk().unwrap().len(), 1);
    let wait = set.look_or_arm(&mut ready).expect("armed");
    assert_eq!(wait.seen(), seen, "nobody rang the bell after the drop");

    // The waker rings it too, and the look after it arms again.
    set.waker()();
    assert_ne!(word(&wait), wait.seen());
    drop(wait);
    let woken = set.look_or_arm(&mut ready);
    assert!(woken.is_none() && ready.is_empty());
    assert!(set.look_or_arm(&mut ready).is_some());
}
