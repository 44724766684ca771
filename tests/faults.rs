//! Peers that die: a SIGKILLed producer or consumer is noticed through the
//! kernel-held lock, by a side that sleeps on the futex, and its segment can
//! be reclaimed.

mod common;

use common::{check_item, commit_item, config, unique_prefix, Cleanup};
use shmstream::{remove_if_dead, Consumer, Producer, SetupError, StreamError};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMSTREAM_FAULT_ROLE";
const PREFIX: &str = "SHMSTREAM_FAULT_PREFIX";

/// The detection bound the design promises is one sleep slice (20 ms) plus
/// the kernel's teardown of the dead process; this generous limit only
/// guards against a hang on a loaded machine, the measured time is printed.
const DETECTION_LIMIT: Duration = Duration::from_secs(2);

/// Kills the child on drop, so a failing test leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns this binary's `child_entry` in `role`; returns once the child
/// printed `ready`.
fn spawn_ready(role: &str, prefix: &str) -> Killed {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PREFIX, prefix)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            // libtest may print "test child_entry ... " on the same line first.
            Some(Ok(line)) if line.trim_end().ends_with("ready") => break,
            Some(Ok(_)) => continue,
            other => panic!("child ended before it was ready: {other:?}"),
        }
    }
    Killed(child)
}

fn kill9(child: &mut Killed) -> Instant {
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    Instant::now()
}

fn cfg(prefix: &str) -> shmstream::StreamConfig {
    config(prefix, 8, 512).with_timeout(None)
}

/// Not a test of its own: the body of the child process.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let prefix = std::env::var(PREFIX).unwrap();
    match role.as_str() {
        // Commits five items and sleeps until killed.
        "producer" => {
            let producer = Producer::create(&cfg(&prefix)).unwrap();
            for s in 0..5 {
                commit_item(producer.register(&format!("t{s}")).unwrap(), s, 8);
            }
            // A registered slot that will never be committed.
            let _pending = producer.register("t5").unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Attaches and reads nothing until killed.
        "consumer" => {
            let _consumer = Consumer::open(&cfg(&prefix)).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_killed_producers_items_stay_readable_then_its_death_is_reported() {
    let prefix = unique_prefix("kp");
    let _cleanup = Cleanup(prefix.clone());
    let mut child = spawn_ready("producer", &prefix);
    let mut consumer = Consumer::open(&cfg(&prefix)).unwrap();
    assert_eq!(consumer.poll().unwrap(), 5);
    // The consumer sleeps on the futex waiting for item 5 when the kill comes.
    let waiter = std::thread::spawn(move || {
        let result = consumer.wait_for(6, None);
        (consumer, result, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(100));
    let killed_at = kill9(&mut child);
    let (mut consumer, result, noticed_at) = waiter.join().unwrap();
    assert_eq!(result.unwrap_err(), StreamError::ProducerGone);
    let took = noticed_at - killed_at;
    println!("producer death noticed after {took:?}");
    assert!(took < DETECTION_LIMIT, "took {took:?}");
    // What was complete before the death is still there, intact.
    assert_eq!(consumer.poll().unwrap(), 5);
    for i in 0..5 {
        assert_eq!(check_item(consumer.item(i).unwrap().bytes()), Ok(i));
    }
}

#[test]
fn a_producer_blocked_on_a_full_ring_learns_that_its_consumer_was_killed() {
    let prefix = unique_prefix("kc");
    let _cleanup = Cleanup(prefix.clone());
    let producer = Producer::create(&cfg(&prefix)).unwrap();
    let mut child = spawn_ready("consumer", &prefix);
    for s in 0..8 {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 8);
    }
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        (kill9(&mut child), child)
    });
    let result = producer.register_timeout("t8", None);
    let noticed_at = Instant::now();
    let (killed_at, _child) = killer.join().unwrap();
    assert_eq!(result.unwrap_err(), StreamError::ConsumerGone);
    let took = noticed_at.saturating_duration_since(killed_at);
    println!("consumer death noticed after {took:?}");
    assert!(took < DETECTION_LIMIT, "took {took:?}");
}

#[test]
fn a_killed_producers_segment_is_reclaimed_and_a_live_one_is_kept() {
    let prefix = unique_prefix("kr");
    let _cleanup = Cleanup(prefix.clone());
    let name = cfg(&prefix).segment_name().unwrap();
    let mut child = spawn_ready("producer", &prefix);
    // Alive: neither removed nor taken over.
    assert!(!remove_if_dead(&name).unwrap());
    assert!(matches!(
        Producer::create(&cfg(&prefix)).unwrap_err(),
        SetupError::AlreadyExists { owner_pid, .. } if owner_pid == child.0.id()
    ));
    kill9(&mut child);
    child.0.wait().unwrap();
    // Dead: the segment is still there, and a new producer reclaims it.
    assert!(shmstream::list_segments(&prefix).unwrap().contains(&name));
    let producer = Producer::create(&cfg(&prefix)).unwrap();
    commit_item(producer.register("fresh").unwrap(), 0, 8);
    let mut consumer = Consumer::open(&cfg(&prefix)).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
    assert_eq!(consumer.item(0).unwrap().id(), "fresh");
}

#[test]
fn clean_removes_a_killed_producers_segment() {
    let prefix = unique_prefix("kx");
    let _cleanup = Cleanup(prefix.clone());
    let name = cfg(&prefix).segment_name().unwrap();
    let mut child = spawn_ready("producer", &prefix);
    kill9(&mut child);
    child.0.wait().unwrap();
    assert!(remove_if_dead(&name).unwrap());
    assert!(shmstream::list_segments(&prefix).unwrap().is_empty());
    assert!(!remove_if_dead(&name).unwrap(), "already gone");
}
