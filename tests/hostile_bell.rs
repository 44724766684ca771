//! A hostile peer zeroes the data bell's sleeper count while the consumer
//! sleeps on it, so the producer's rings skip the wake-up. The consumer's
//! sleep is sliced (`SLEEP_SLICE`, 20 ms; docs/design.md, "The wake-up
//! handshake"), so whatever the shared word says, a wait still ends by its
//! timeout, still sees a commit, and still notices the producer's death.

mod common;

use common::{commit_item, config, unique_prefix, Cleanup};
use shmstream::{Consumer, Producer, StreamConfig, StreamError};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMSTREAM_BELL_ROLE";
const PREFIX: &str = "SHMSTREAM_BELL_PREFIX";

/// The data bell's sleeper count (docs/design.md, the header page: the
/// data bell at 1408, futex word then sleepers, u32 each).
const DATA_BELL_SLEEPERS: u64 = 1408 + 4;

/// Generous bounds for a loaded machine: the design promises one slice.
const LATE: Duration = Duration::from_secs(1);
/// What a wait is given when it must end earlier (a hang before a fix).
const LONG: Duration = Duration::from_secs(5);

fn cfg(prefix: &str) -> StreamConfig {
    config(prefix, 8, 512).with_timeout(None)
}

/// Not a test of its own: the producer process. Commits one item per line
/// read from stdin, answering `committed`, and sleeps when stdin closes.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    assert_eq!(role, "producer");
    let producer = Producer::create(&cfg(&std::env::var(PREFIX).unwrap())).unwrap();
    println!("ready");
    for (s, _) in (0u64..).zip(std::io::stdin().lines()) {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 8);
        println!("committed");
    }
    std::thread::sleep(Duration::from_secs(60));
}

/// The producer process: killed on drop, so a failing test leaves none.
struct ProducerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl ProducerProcess {
    fn spawn(prefix: &str) -> ProducerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(ROLE, "producer")
            .env(PREFIX, prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut p = ProducerProcess {
            child,
            stdin,
            lines,
        };
        p.expect("ready");
        p
    }

    fn expect(&mut self, word: &str) {
        loop {
            match self.lines.next() {
                // libtest may print "test child_entry ... " on the line first.
                Some(Ok(line)) if line.trim_end().ends_with(word) => return,
                Some(Ok(_)) => continue,
                other => panic!("the producer ended before saying {word}: {other:?}"),
            }
        }
    }

    /// Asks for one commit; returns when it was asked for, once it is
    /// published.
    fn commit(&mut self) -> Instant {
        let asked = Instant::now();
        writeln!(self.stdin, "commit").unwrap();
        self.expect("committed");
        asked
    }

    fn kill9(&mut self) -> Instant {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        Instant::now()
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Zeroes the sleeper count through its own open file description until
/// dropped; counts the times it found the consumer announced there.
struct Zeroer {
    stop: Arc<AtomicBool>,
    caught: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Zeroer {
    fn start(cfg: &StreamConfig) -> Zeroer {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm{}", cfg.segment_name().unwrap()))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let caught = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), caught.clone());
        let thread = std::thread::spawn(move || zero_until(&file, &s, &c));
        Zeroer {
            stop,
            caught,
            thread: Some(thread),
        }
    }
}

fn zero_until(file: &File, stop: &AtomicBool, caught: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let mut word = [0u8; 4];
        file.read_exact_at(&mut word, DATA_BELL_SLEEPERS).unwrap();
        if u32::from_ne_bytes(word) != 0 {
            file.write_all_at(&0u32.to_ne_bytes(), DATA_BELL_SLEEPERS)
                .unwrap();
            caught.fetch_add(1, Ordering::Relaxed);
        }
        // Not a spin: the consumer and the producer need the cores.
        std::thread::sleep(Duration::from_micros(100));
    }
}

impl Drop for Zeroer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `wait` on its own thread; the result and when it came, or `None`
/// when it did not come within `limit` (the thread is then left behind).
fn bounded<T: Send + 'static>(
    limit: Duration,
    wait: impl FnOnce() -> T + Send + 'static,
) -> Option<(T, Instant)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = wait();
        let _ = tx.send((out, Instant::now()));
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_zeroed_sleeper_count_delays_no_wait_past_its_timeout_a_commit_or_a_death() {
    let prefix = unique_prefix("hb");
    let _cleanup = Cleanup(prefix.clone());
    let mut producer = ProducerProcess::spawn(&prefix);
    let mut consumer = Consumer::open(&cfg(&prefix)).unwrap();
    let zeroer = Zeroer::start(&cfg(&prefix));

    // 1. Nothing comes: the wait ends at its timeout.
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (result, consumer) = bounded(LONG, move || {
        (consumer.wait_for(1, Some(timeout)), consumer)
    })
    .expect("a wait of 300 ms did not end within 5 s")
    .0;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(StreamError::Timeout { .. })),
        "{result:?}"
    );
    assert!(took >= timeout && took < timeout + LATE, "took {took:?}");

    // 2. A commit whose ring finds no sleeper announced is still seen.
    let mut consumer = consumer;
    let waiter = std::thread::spawn(move || {
        let result = consumer.wait_for(1, Some(LONG));
        (result, Instant::now(), consumer)
    });
    // Let the consumer reach its futex sleep and the zeroer find it there.
    std::thread::sleep(Duration::from_millis(200));
    let asked_at = producer.commit();
    let (result, seen_at, consumer) = waiter.join().unwrap();
    assert_eq!(result, Ok(1));
    let late = seen_at.saturating_duration_since(asked_at);
    println!("commit seen {late:?} after it was asked for");
    assert!(late < LATE, "the commit was seen {late:?} late");

    // 3. The producer is killed while the consumer sleeps with no timeout.
    let mut consumer = consumer;
    consumer.consume(1);
    let waiter = std::thread::spawn(move || {
        let result = consumer.wait_for(1, None);
        (result, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = producer.kill9();
    let (result, noticed_at) = bounded(LONG, move || waiter.join().unwrap())
        .expect("the producer's death was not noticed within 5 s")
        .0;
    assert_eq!(result, Err(StreamError::ProducerGone));
    let took = noticed_at.saturating_duration_since(killed_at);
    println!("producer death noticed after {took:?}");
    assert!(took < LATE, "took {took:?}");

    // The attack did happen: the consumer was found announced and zeroed.
    let caught = zeroer.caught.load(Ordering::Relaxed);
    println!("sleeper count zeroed {caught} times");
    assert!(caught > 0, "the zeroer never found the consumer asleep");
}
