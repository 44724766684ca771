//! Two real processes share a segment: this test binary spawns itself as
//! the producer (selected by an environment variable) and consumes in the
//! parent.

mod common;

use common::{
    check_item, commit_item, config, consume_in_order, consume_sized, produce_reordered,
    produce_sized, unique_prefix, Cleanup,
};
use shmstream::policy::Fixed;
use shmstream::{Consumer, Producer, SetupError, StreamBuffer, StreamConfig};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMSTREAM_TEST_ROLE";
const PREFIX: &str = "SHMSTREAM_TEST_PREFIX";
const ITEMS: &str = "SHMSTREAM_TEST_ITEMS";

/// Runs this test binary's `child_entry` test as the producer process.
fn spawn_child(role: &str, prefix: &str, items: u64) -> Child {
    child_command(role, prefix, items).spawn().unwrap()
}

fn child_command(role: &str, prefix: &str, items: u64) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PREFIX, prefix)
        .env(ITEMS, items.to_string());
    command
}

fn child_config(prefix: &str) -> StreamConfig {
    config(prefix, 256, 512).with_timeout(Some(Duration::from_secs(30)))
}

/// The mixed-size stream: 512 items or 64 MiB of payload in flight,
/// whichever fills first. Items average about 120 KiB (see
/// [`common::sized_len`]), so 512 of them are about the payload's size:
/// runs of small items fill the items, runs of large ones (and every
/// 64 MiB one, which needs the whole payload) the bytes. The test asserts
/// that both happen.
fn sized_config(prefix: &str) -> StreamConfig {
    config(prefix, 512, 0)
        .with_payload_bytes(64 << 20)
        .with_timeout(Some(Duration::from_secs(60)))
}

/// How the sized producer child reports its back-pressure counts on its
/// stdout: this tag, then `items bytes`.
const BACKPRESSURE: &str = "sized-backpressure:";

/// One 64 MiB tensor every this many items of the mixed-size stream.
const HUGE_EVERY: u64 = 250_000;

/// Not a test of its own: the body of the child process.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let prefix = std::env::var(PREFIX).unwrap();
    let items: u64 = std::env::var(ITEMS).unwrap().parse().unwrap();
    let cfg = match role.as_str() {
        "sized" => sized_config(&prefix),
        _ => child_config(&prefix),
    };
    let producer = Producer::create(&cfg).unwrap();
    match role.as_str() {
        // Sizes from 0 bytes to 1 MiB and a few of 64 MiB, registered with
        // their sizes, out of order within groups of 8 (a 64 MiB one
        // alone); tells the parent how often each resource was full.
        "sized" => {
            let seen = produce_sized(&producer, items, HUGE_EVERY, 8);
            println!("{BACKPRESSURE} {} {}", seen.items, seen.bytes);
        }
        // Mixed sizes, out of order within groups of 8.
        "stream" => produce_reordered(&producer, items, 8),
        // Full speed into a ring the consumer holds, until it drains.
        "flood" => {
            for s in 0..items {
                commit_item(producer.register(&format!("t{s}")).unwrap(), s, 64);
            }
        }
        other => panic!("unknown role {other}"),
    }
    producer.signal_done();
    producer
        .wait_drained(Some(Duration::from_secs(30)))
        .unwrap();
}

fn open_retrying<T>(mut open: impl FnMut() -> Result<T, SetupError>) -> T {
    let start = Instant::now();
    loop {
        match open() {
            Ok(v) => return v,
            Err(SetupError::NotFound { .. } | SetupError::NotInitialized { .. })
                if start.elapsed() < Duration::from_secs(20) =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_million_items_cross_processes_in_order_none_lost_none_duplicated() {
    let prefix = unique_prefix("xp");
    let _cleanup = Cleanup(prefix.clone());
    let n: u64 = 1_000_000;
    let mut child = spawn_child("stream", &prefix, n);
    let mut consumer = open_retrying(|| Consumer::open(&child_config(&prefix)));
    let received = consume_in_order(&mut consumer, Duration::from_secs(30));
    assert_eq!(received, n);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_held_chunk_is_not_overwritten_by_a_producer_at_full_speed() {
    let prefix = unique_prefix("hold");
    let _cleanup = Cleanup(prefix.clone());
    let n = 2_000;
    let mut child = spawn_child("flood", &prefix, n);
    let mut buffer: StreamBuffer =
        open_retrying(|| StreamBuffer::open(&child_config(&prefix), Fixed::new(64).unwrap()));
    let mut seen = 0u64;
    let mut held_once = false;
    while let Some(chunk) = buffer
        .next_chunk_timeout(Some(Duration::from_secs(30)))
        .unwrap()
    {
        let view = chunk.stacked().unwrap();
        let before: Vec<u8> = view.item(0).unwrap().to_vec();
        if !held_once {
            // Let the producer fill every other slot and block on ours.
            std::thread::sleep(Duration::from_millis(300));
            held_once = true;
        }
        for (i, item) in chunk.items().enumerate() {
            assert_eq!(
                check_item(item.bytes()),
                Ok(chunk.start_offset() + i as u64)
            );
        }
        assert_eq!(view.item(0).unwrap(), &before[..]);
        seen += chunk.len() as u64;
    }
    assert_eq!(seen, n);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_million_tensors_of_random_sizes_arrive_in_order_and_intact() {
    let prefix = unique_prefix("sized");
    let _cleanup = Cleanup(prefix.clone());
    let n = 1_000_000;
    // The child's stdout carries its back-pressure counts (its stderr,
    // panics included, goes to ours).
    let child = child_command("sized", &prefix, n)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut consumer = open_retrying(|| Consumer::open(&sized_config(&prefix)));
    assert_eq!(consumer.payload_bytes(), 64 << 20);
    assert_eq!(consumer.capacity(), 512);
    let started = Instant::now();
    let seen = consume_sized(&mut consumer, HUGE_EVERY, Duration::from_secs(60));
    assert_eq!(seen, n);
    eprintln!("{n} mixed-size tensors in {:.2?}", started.elapsed());
    drop(consumer);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let counts: Vec<u64> = stdout
        .lines()
        .find_map(|line| line.split_once(BACKPRESSURE).map(|(_, counts)| counts))
        .unwrap_or_else(|| panic!("no back-pressure counts in the child's output: {stdout}"))
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (items_full, bytes_full) = (counts[0], counts[1]);
    eprintln!("producer found the stream full: items {items_full} times, payload bytes {bytes_full} times");
    assert!(items_full > 0, "the item ring never filled");
    assert!(bytes_full > 0, "the payload never filled");
}

#[test]
fn a_stacked_window_across_the_wrap_is_contiguous_in_the_mapping() {
    let prefix = unique_prefix("wrap");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let producer = Producer::create(&cfg).unwrap();
    let mut buffer: StreamBuffer = StreamBuffer::open(&cfg, Fixed::new(3).unwrap()).unwrap();
    for s in 0..3 {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 16);
    }
    let first = buffer.pop_chunk().unwrap();
    assert_eq!(first.len(), 3);
    drop(first);
    for s in 3..6 {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 16);
    }
    producer.signal_done();
    // Positions 3, 4, 5 live in slots 3, 0, 1: the window wraps.
    let chunk = buffer.pop_chunk().unwrap();
    let view = chunk.stacked().unwrap();
    assert_eq!(view.shape(), &[3, 16]);
    let (base, len) = buffer_payload(&chunk);
    let start = view.as_ptr() as usize;
    assert_eq!(start, base + 3 * 1024, "the window starts in slot 3");
    assert!(
        start + view.span_bytes() > base + len,
        "the window runs into the mirror"
    );
    assert!(start + view.span_bytes() <= base + 2 * len);
    for i in 0..3 {
        assert_eq!(check_item(view.item(i).unwrap()), Ok(3 + i as u64));
        // The bytes are those of the slot itself (or its mirror), not a copy.
        let stacked = view.item(i).unwrap().as_ptr() as usize;
        let slot = chunk.item(i).unwrap().bytes().as_ptr() as usize;
        assert!(
            stacked == slot || stacked == slot + len,
            "item {i} is not in place"
        );
    }
    assert!(chunk.is_final());
}

fn buffer_payload(chunk: &shmstream::StreamChunk<'_>) -> (usize, usize) {
    // Item 1 (position 4) sits in slot 0: the start of the payload area.
    let base = chunk.item(1).unwrap().bytes().as_ptr() as usize;
    (base, 4 * 1024)
}
