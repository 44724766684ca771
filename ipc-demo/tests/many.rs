//! `ipc-demo run --streams N --producers P` (issue 12): P producer
//! processes create N streams through one worker hub, one consumer process
//! takes them all with `wait_any`; every stream verified, a line per
//! stream, nothing left in /dev/shm.

mod common;
use common::*;
use std::time::{Duration, Instant};

const STREAMS: u64 = 16;
const ITEMS: u64 = 200;

#[test]
fn many_streams_from_two_producers_arrive_whole_with_a_line_per_stream() {
    let scope = Scope::new("many");
    let out = run(
        DEMO,
        &[
            "--prefix",
            &scope.prefix,
            "--no-progress",
            "--streams",
            &STREAMS.to_string(),
            "--producers",
            "2",
            "--items",
            &ITEMS.to_string(),
            "--sizes",
            "56,4K",
            "--policy",
            "fixed:size=8",
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    // 100 items of 56 bytes and 100 of 4096 in each stream, in chunks of 8.
    let bytes = ITEMS / 2 * (56 + 4096);
    let mut chunks = 0;
    for s in 0..STREAMS {
        let line = stdout
            .lines()
            .find(|l| {
                l.starts_with("stream ")
                    && l.split_whitespace()
                        .nth(1)
                        .unwrap()
                        .ends_with(&format!("-s{s}"))
            })
            .unwrap_or_else(|| panic!("no line for stream {s}: {stdout}"));
        let fields: Vec<&str> = line.split_whitespace().skip(2).collect();
        assert_eq!(
            fields[..4],
            ["items", &ITEMS.to_string(), "bytes", &bytes.to_string()],
            "{line}"
        );
        // 25 full chunks, and an empty final one when the end came after
        // the 25th was taken.
        assert_eq!(fields[4], "chunks", "{line}");
        assert!(["25", "26"].contains(&fields[5]), "{line}");
        chunks += fields[5].parse::<u64>().unwrap();
    }
    let total = stdout
        .lines()
        .find(|l| l.starts_with("total"))
        .expect(&stdout);
    assert!(
        total.contains(&format!(
            "{STREAMS} streams, {} items of {} expected, {} bytes, {chunks} chunks, every item verified",
            STREAMS * ITEMS,
            STREAMS * ITEMS,
            STREAMS * bytes,
        )),
        "{total}"
    );
    assert!(stdout.contains("from 2 producer processes"), "{stdout}");
    scope.assert_no_leftovers();
}

#[test]
fn the_json_summary_has_every_stream_and_the_producers_waits() {
    let scope = Scope::new("manyjson");
    let out = run(
        DEMO,
        &[
            "--prefix",
            &scope.prefix,
            "--json",
            "--streams",
            "5",
            "--producers",
            "3",
            "--items",
            "50",
            "--capacity",
            "32",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = json(&out.stdout);
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 5);
    for s in streams {
        assert_eq!(s["items"], 50);
        assert_eq!(s["bytes"], 50 * 56);
    }
    assert_eq!(report["total"]["items"], 250);
    assert!(report["backpressure"]["items"].is_u64());
    assert!(report["hub"].as_str().unwrap().contains("hub-"));
    scope.assert_no_leftovers();
}

#[test]
fn more_producers_than_streams_is_refused_before_anything_starts() {
    let scope = Scope::new("manyargs");
    let out = run(
        DEMO,
        &[
            "--prefix",
            &scope.prefix,
            "--streams",
            "2",
            "--producers",
            "3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--producers 3 exceeds --streams 2"),
        "{}",
        text(&out.stderr)
    );
    scope.assert_no_leftovers();
}

#[test]
fn streams_or_producers_past_a_hub_are_refused_at_once() {
    // --streams 10^12 used to build 10^12 segment names first (708 MB in
    // 8 s before any check).
    let scope = Scope::new("manymax");
    let max = shmstream::MAX_HUB_ENTRIES;
    for (flag, value, limit) in [
        (
            "--streams",
            "1000000000000",
            format!("a hub's {max} entries"),
        ),
        (
            "--streams",
            &(max + 1).to_string(),
            format!("a hub's {max} entries"),
        ),
        (
            "--producers",
            "1000000000000",
            format!("a hub's {} producers", shmstream::MAX_HUB_PRODUCERS),
        ),
    ] {
        let start = Instant::now();
        let mut args = vec!["--prefix", &scope.prefix, flag, value];
        if flag == "--producers" {
            args.extend(["--streams", "4096"]);
        }
        let out = run(DEMO, &args, None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("{flag} {value} exceeds {limit}")),
            "{stderr}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    scope.assert_no_leftovers();
}

#[test]
fn sigterm_stops_every_process_and_leaves_no_segment_or_hub() {
    let mut scope = Scope::new("manysig");
    let prefix = scope.prefix.clone();
    let i = scope.spawn(
        DEMO,
        &[
            "--prefix",
            &prefix,
            "--no-progress",
            "--streams",
            "8",
            "--producers",
            "2",
            "--items",
            "1000000",
            "--rate",
            "1000",
        ],
    );
    // Wait until the streams exist (the hub and some segments).
    let start = Instant::now();
    while scope.leftovers().len() < 9 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            scope.leftovers()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = scope.child(i).id() as libc::pid_t;
    // SAFETY: kill has no memory effects; the pid is our live child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = scope.wait(i);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("ipc-demo: interrupted by SIGTERM after"),
        "{stderr}"
    );
    assert!(
        stderr.contains("consumer and producers stopped"),
        "{stderr}"
    );
    assert!(stderr.contains("segments removed"), "{stderr}");
    scope.assert_no_leftovers();
}

#[test]
fn clean_removes_the_hub_of_a_killed_worker_and_dry_run_says_so() {
    let mut scope = Scope::new("manyclean");
    let prefix = scope.prefix.clone();
    let i = scope.spawn(
        CONSUMER,
        &["--prefix", &prefix, "--hub", "w", "--streams", "2"],
    );
    let hub = format!("{prefix}hub-w");
    let start = Instant::now();
    while !scope.leftovers().contains(&hub) {
        assert!(start.elapsed() < Duration::from_secs(20), "no hub");
        std::thread::sleep(Duration::from_millis(10));
    }
    let keep = run(DEMO, &["clean", "--dry-run", "--prefix", &prefix], None);
    assert!(
        text(&keep.stdout).contains(&format!("would keep /{hub} (worker ")),
        "{}",
        text(&keep.stdout)
    );
    scope.child(i).kill().unwrap();
    scope.wait(i);
    let dry = run(DEMO, &["clean", "--dry-run", "--prefix", &prefix], None);
    assert!(
        text(&dry.stdout).contains(&format!("would remove /{hub} (worker ")),
        "{}",
        text(&dry.stdout)
    );
    assert_eq!(scope.leftovers(), std::slice::from_ref(&hub));
    let clean = run(DEMO, &["clean", "--prefix", &prefix], None);
    assert!(
        text(&clean.stdout).contains(&format!("removed /{hub} (worker dead)")),
        "{}",
        text(&clean.stdout)
    );
    scope.assert_no_leftovers();
}
