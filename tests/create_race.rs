//! Producers and cleaners racing for one segment name (issue 15, defect 5):
//! at most one producer owns a name at a time, and nothing removes the name
//! of a producer that is alive, whether it is starting or running.

mod common;

use common::{commit_item, config, unique_prefix, Cleanup};
use shmstream::{remove_if_dead, Consumer, Producer, SetupError, StreamConfig};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

const ROUNDS: usize = if cfg!(miri) { 2 } else { 300 };
/// Two creators, one per core of a small machine: they must start within
/// microseconds of each other to hit the window the first version had
/// (its lock came only after fchmod and ftruncate). That version failed
/// here in some rounds of most runs, not of every run; the cleaner test
/// below catches it in every run.
const CREATORS: usize = 2;
const CREATOR_ROUNDS: usize = if cfg!(miri) { 2 } else { 4000 };

fn shm_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&shm_path(name)).exists()
}

/// A leftover file under `name` whose producer is gone (nobody holds its
/// lock), as a killed producer leaves it.
fn leave_stale(name: &str) {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(name))
        .unwrap();
}

/// The id of the one item the segment under `cfg`'s name holds: which
/// producer the name leads to.
fn owner_tag(cfg: &StreamConfig) -> String {
    let mut consumer = Consumer::open(cfg).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    consumer.item(0).unwrap().id().to_string()
}

#[test]
fn producers_racing_for_one_name_never_both_win() {
    let prefix = unique_prefix("race");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let name = cfg.segment_name().unwrap();
    // Every round: the creators poll until the main thread says go and
    // create at once (a barrier's wake-ups are too far apart); then the
    // main thread checks the outcome while the winner lives; then the
    // winner drops.
    let ready = AtomicUsize::new(0);
    let go = AtomicUsize::new(0);
    let created = Barrier::new(CREATORS + 1);
    let checked = Barrier::new(CREATORS + 1);
    let dropped = Barrier::new(CREATORS + 1);
    let outcomes: Mutex<Vec<Result<usize, String>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..CREATORS {
            let (cfg, outcomes, ready, go) = (&cfg, &outcomes, &ready, &go);
            let (created, checked, dropped) = (&created, &checked, &dropped);
            s.spawn(move || {
                for round in 0..CREATOR_ROUNDS {
                    ready.fetch_add(1, Ordering::AcqRel);
                    // Short spins between yields: the main thread needs a
                    // core to say go, and both creators should see it at
                    // once.
                    'wait: loop {
                        for _ in 0..200 {
                            if go.load(Ordering::Acquire) == round + 1 {
                                break 'wait;
                            }
                            std::hint::spin_loop();
                        }
                        std::thread::yield_now();
                    }
                    let producer = match Producer::create(cfg) {
                        Ok(p) => {
                            commit_item(p.register(&format!("r{round}-t{t}")).unwrap(), 0, 2);
                            outcomes.lock().unwrap().push(Ok(t));
                            Some(p)
                        }
                        Err(SetupError::AlreadyExists { owner_pid, .. })
                            if owner_pid == std::process::id() || owner_pid == 0 =>
                        {
                            outcomes.lock().unwrap().push(Err(String::new()));
                            None
                        }
                        Err(e) => {
                            outcomes.lock().unwrap().push(Err(e.to_string()));
                            None
                        }
                    };
                    created.wait();
                    checked.wait();
                    drop(producer);
                    dropped.wait();
                }
            });
        }
        let mut failures = Vec::new();
        for round in 0..CREATOR_ROUNDS {
            while ready.load(Ordering::Acquire) != CREATORS * (round + 1) {
                std::thread::yield_now();
            }
            go.store(round + 1, Ordering::Release);
            created.wait();
            let results = std::mem::take(&mut *outcomes.lock().unwrap());
            let winners: Vec<usize> = results.iter().filter_map(|r| r.clone().ok()).collect();
            let odd: Vec<&String> = results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .filter(|e| !e.is_empty())
                .collect();
            if winners.len() != 1 || !odd.is_empty() {
                failures.push(format!(
                    "round {round}: winners {winners:?}, other errors {odd:?}"
                ));
            } else {
                // While the winner lives, the name leads to its segment.
                let tag = owner_tag(&cfg);
                if tag != format!("r{round}-t{}", winners[0]) {
                    failures.push(format!(
                        "round {round}: the name leads to {tag}, not to the winner t{}",
                        winners[0]
                    ));
                }
            }
            checked.wait();
            dropped.wait();
            if exists(&name) {
                failures.push(format!("round {round}: the name outlived its producer"));
                let _ = std::fs::remove_file(shm_path(&name));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    });
}

#[test]
fn a_cleaner_never_removes_a_starting_or_running_producers_segment() {
    let prefix = unique_prefix("clean");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let name = cfg.segment_name().unwrap();
    for round in 0..ROUNDS {
        // Half the rounds start from a dead producer's leftover, which both
        // the producer and the cleaner try to remove.
        if round % 2 == 1 {
            leave_stale(&name);
        }
        let live = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        let calls_while_live = AtomicU64::new(0);
        let removed_while_live = AtomicU64::new(0);
        let errors = Mutex::new(Vec::<String>::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    // `live` set before the call: the producer's create had
                    // returned, so nothing may remove its name any more.
                    let was_live = live.load(Ordering::Acquire);
                    let result = remove_if_dead(&name);
                    if let Err(e) = &result {
                        errors.lock().unwrap().push(e.to_string());
                    }
                    if was_live {
                        if result.unwrap_or(false) {
                            removed_while_live.fetch_add(1, Ordering::Relaxed);
                        }
                        calls_while_live.fetch_add(1, Ordering::Release);
                    }
                }
            });
            let result = Producer::create(&cfg);
            let producer = match result {
                Ok(p) => p,
                Err(e) => {
                    stop.store(true, Ordering::Release);
                    panic!("round {round}: a cleaner made create fail: {e}");
                }
            };
            commit_item(producer.register(&format!("r{round}")).unwrap(), 0, 2);
            live.store(true, Ordering::Release);
            // Let the cleaner look at the live segment a few times.
            while calls_while_live.load(Ordering::Acquire) < 3 {
                std::thread::yield_now();
            }
            let tag = std::panic::catch_unwind(|| owner_tag(&cfg));
            stop.store(true, Ordering::Release);
            assert_eq!(
                tag.as_deref().ok(),
                Some(format!("r{round}").as_str()),
                "round {round}: the name does not lead to the live producer"
            );
            drop(producer);
        });
        assert_eq!(
            removed_while_live.load(Ordering::Relaxed),
            0,
            "round {round}: a live producer's segment was removed"
        );
        assert_eq!(
            errors.into_inner().unwrap(),
            Vec::<String>::new(),
            "round {round}: remove_if_dead failed"
        );
        assert!(
            !exists(&name),
            "round {round}: the name outlived its producer"
        );
    }
}

#[test]
fn a_producer_removes_its_name_only_while_the_name_is_its_own() {
    let prefix = unique_prefix("own");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let name = cfg.segment_name().unwrap();
    let first = Producer::create(&cfg).unwrap();
    // Someone removes the first producer's name by hand, and a second
    // producer takes the name.
    std::fs::remove_file(shm_path(&name)).unwrap();
    let second = Producer::create(&cfg).unwrap();
    commit_item(second.register("second").unwrap(), 0, 2);
    // The first one goes: the name is not its own any more, so it stays.
    drop(first);
    assert!(
        exists(&name),
        "the first producer removed the second's name"
    );
    assert_eq!(owner_tag(&cfg), "second");
    drop(second);
    assert!(!exists(&name));
}
