//! `ipc-demo inspect` and `ipc-demo clean` on segments of real producer
//! processes, one of them killed.

mod common;
use common::*;
use std::io::BufReader;
use std::time::{Duration, Instant};

/// Starts a producer of `items` items that then waits (up to 30 s) for a
/// consumer; returns its child index and segment name.
fn producer(scope: &mut Scope, request: &str, items: &str) -> (usize, String) {
    producer_with(scope, request, items, &[])
}

/// As [`producer`], with `extra` arguments.
fn producer_with(scope: &mut Scope, request: &str, items: &str, extra: &[&str]) -> (usize, String) {
    let prefix = scope.prefix.clone();
    let mut args = vec![
        "--prefix",
        prefix.as_str(),
        "--request-id",
        request,
        "--items",
        items,
        "--timeout",
        "30",
    ];
    args.extend_from_slice(extra);
    let i = scope.spawn(PRODUCER, &args);
    let mut stdout = BufReader::new(scope.child(i).stdout.take().unwrap());
    (i, line_after(&mut stdout, "segment"))
}

fn inspect_json(name: &str) -> serde_json::Value {
    let out = run(DEMO, &["inspect", name, "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    json(&out.stdout)
}

#[test]
fn inspect_shows_a_live_segment() {
    let mut scope = Scope::new("insp");
    let (i, name) = producer(&mut scope, "inspected", "10");
    let pid = scope.child(i).id();
    let start = Instant::now();
    let state = loop {
        let state = inspect_json(&name);
        if state["done"] == true || start.elapsed() > Duration::from_secs(20) {
            break state;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(state["name"], name.as_str());
    assert_eq!(state["request_id"], "inspected");
    assert_eq!(state["edge_name"], "codec_tokens");
    assert_eq!(state["from_partition"], "talker");
    assert_eq!(
        (
            state["capacity"].as_u64(),
            state["item_bytes"].as_u64(),
            state["payload_bytes"].as_u64()
        ),
        (Some(1024), Some(4096), Some(4 << 20))
    );
    assert_eq!(
        (state["registered"].as_u64(), state["released"].as_u64()),
        (Some(10), Some(0))
    );
    // Ten 56-byte items, each reserved with its size, back to back.
    assert_eq!(state["items_in_use"], 10);
    assert_eq!(state["bytes_in_use"], 560);
    assert_eq!(state["done"], true);
    assert_eq!(state["producer_pid"], pid);
    assert_eq!(state["producer_alive"], true);
    assert_eq!(state["consumer_attached"], false);
    // The human forms: the list names it, the detail says who is alive.
    let list = run(DEMO, &["inspect", "--prefix", &scope.prefix], None);
    assert!(text(&list.stdout).contains(&name), "{}", text(&list.stdout));
    let detail = text(&run(DEMO, &["inspect", name.trim_start_matches('/')], None).stdout);
    assert!(
        detail.contains(&format!("producer     pid {pid}, alive")),
        "{detail}"
    );
    assert!(
        detail.contains("items        10 of 1024 in use"),
        "{detail}"
    );
    assert!(
        detail.contains("bytes        560 of 4194304 in use"),
        "{detail}"
    );
    // A consumer drains it; the producer then exits and removes it.
    let consumed = run(
        CONSUMER,
        &[
            "--prefix",
            &scope.prefix,
            "--request-id",
            "inspected",
            "--items",
            "10",
        ],
        None,
    );
    assert!(consumed.status.success(), "{}", text(&consumed.stderr));
    assert!(scope.wait(i).status.success());
    scope.assert_no_leftovers();
}

#[test]
fn inspect_counts_the_bytes_of_items_of_any_size() {
    let mut scope = Scope::new("inspb");
    let sizes = [1000u64, 65536, 0, 3];
    let (i, name) = producer_with(
        &mut scope,
        "bytes",
        "6",
        &["--sizes", "1000,64K,0,3", "--payload-bytes", "1M"],
    );
    let start = Instant::now();
    let state = loop {
        let state = inspect_json(&name);
        if state["done"] == true || start.elapsed() > Duration::from_secs(20) {
            break state;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(state["payload_bytes"], 1 << 20);
    assert_eq!(state["items_in_use"], 6);
    // Each item placed after the previous one at its alignment (the
    // largest power of two dividing its size, 8 to 64).
    let mut end = 0u64;
    for seq in 0..6 {
        let n = sizes[seq % 4];
        end = end.next_multiple_of(shmstream::placement_align(n)) + n;
    }
    assert_eq!(state["bytes_in_use"], end, "{state}");
    let detail = text(&run(DEMO, &["inspect", &name], None).stdout);
    assert!(
        detail.contains(&format!("bytes        {end} of 1048576 in use")),
        "{detail}"
    );
    let list = text(&run(DEMO, &["inspect", "--prefix", &scope.prefix], None).stdout);
    assert!(
        list.contains(&format!("items 6/1024 bytes {end}/1048576")),
        "{list}"
    );
    // A consumer that checks the sizes drains it.
    let consumed = run(
        CONSUMER,
        &[
            "--prefix",
            &scope.prefix,
            "--request-id",
            "bytes",
            "--items",
            "6",
            "--sizes",
            "1000,64K,0,3",
            "--policy",
            "fixed:size=2",
        ],
        None,
    );
    assert!(consumed.status.success(), "{}", text(&consumed.stderr));
    assert!(scope.wait(i).status.success());
    scope.assert_no_leftovers();
}

#[test]
fn a_consumer_told_other_sizes_says_which_item_differs() {
    let mut scope = Scope::new("sizebad");
    let (i, _) = producer_with(&mut scope, "wrong", "4", &["--sizes", "64,128"]);
    let consumed = run(
        CONSUMER,
        &[
            "--prefix",
            &scope.prefix,
            "--request-id",
            "wrong",
            "--sizes",
            "64",
            "--policy",
            "fixed:size=1",
        ],
        None,
    );
    assert_one_line_error(&consumed, &["item 1 is 128 bytes, expected 64"]);
    // The producer notices its consumer is gone and removes the segment.
    let _ = scope.wait(i);
    scope.assert_no_leftovers();
}

/// A dead segment whose header this build cannot read (here: an older
/// layout version) is removed by `clean`, which goes by the producer's
/// lock alone, so the dry run must say "would remove" too, not "would
/// skip".
#[test]
fn a_dry_run_says_what_clean_does_with_a_segment_of_another_layout_version() {
    use std::os::unix::fs::FileExt;
    let mut scope = Scope::new("cleanv");
    let (dead, dead_name) = producer(&mut scope, "oldlayout", "5");
    scope.child(dead).kill().unwrap();
    scope.child(dead).wait().unwrap();
    // The header's `version` word (after the 8-byte magic), as a build of
    // layout version 4 wrote it.
    let path = format!("/dev/shm{dead_name}");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&4u32.to_ne_bytes(), 8).unwrap();
    drop(file);
    let dry = run(
        DEMO,
        &["clean", "--dry-run", "--prefix", &scope.prefix],
        None,
    );
    let said = text(&dry.stdout);
    assert!(dry.status.success(), "{said}");
    assert!(
        said.contains(&format!("would remove {dead_name}")),
        "{said}"
    );
    assert!(said.contains("would remove 1, kept 0"), "{said}");
    assert_eq!(scope.leftovers().len(), 1, "a dry run removed something");
    let cleaned = run(DEMO, &["clean", "--prefix", &scope.prefix], None);
    let said = text(&cleaned.stdout);
    assert!(said.contains(&format!("removed {dead_name}")), "{said}");
    assert!(scope.leftovers().is_empty());
}

#[test]
fn clean_removes_a_dead_segment_and_keeps_a_live_one() {
    let mut scope = Scope::new("clean");
    let (dead, dead_name) = producer(&mut scope, "doomed", "5");
    let (live, live_name) = producer(&mut scope, "alive", "5");
    scope.child(dead).kill().unwrap(); // SIGKILL: no chance to remove its segment
    scope.child(dead).wait().unwrap();
    let file = |name: &str| name.trim_start_matches('/').to_string();
    assert_eq!(scope.leftovers(), {
        let mut v = vec![file(&dead_name), file(&live_name)];
        v.sort();
        v
    });
    let dry = run(
        DEMO,
        &["clean", "--dry-run", "--prefix", &scope.prefix],
        None,
    );
    let said = text(&dry.stdout);
    assert!(dry.status.success());
    assert!(
        said.contains(&format!("would remove {dead_name}")),
        "{said}"
    );
    assert!(said.contains(&format!("would keep {live_name}")), "{said}");
    assert_eq!(scope.leftovers().len(), 2, "a dry run removed something");
    let cleaned = run(DEMO, &["clean", "--prefix", &scope.prefix], None);
    let said = text(&cleaned.stdout);
    assert!(cleaned.status.success());
    assert!(said.contains(&format!("removed {dead_name}")), "{said}");
    assert!(said.contains(&format!("kept {live_name}")), "{said}");
    assert_eq!(scope.leftovers(), [file(&live_name)]);
    // The live one still works: drain it, and its producer removes it.
    let consumed = run(
        CONSUMER,
        &[
            "--prefix",
            &scope.prefix,
            "--request-id",
            "alive",
            "--items",
            "5",
        ],
        None,
    );
    assert!(consumed.status.success(), "{}", text(&consumed.stderr));
    assert!(scope.wait(live).status.success());
    scope.assert_no_leftovers();
}

#[test]
fn a_producer_stopped_by_a_signal_removes_its_segment() {
    let mut scope = Scope::new("sig");
    let (i, name) = producer(&mut scope, "stopped", "5");
    assert_eq!(scope.leftovers(), [name.trim_start_matches('/')]);
    let pid = scope.child(i).id() as libc::pid_t;
    // SAFETY: sends SIGTERM to our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = scope.wait(i);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    scope.assert_no_leftovers();
}

/// `ipc-demo run` starts its producer with `--wait-consumer` (unless
/// `--cold-start`) so the ring does not fill before the consumer runs: such
/// a producer registers nothing until a consumer attaches, then streams.
#[test]
fn a_producer_told_to_wait_produces_nothing_until_the_consumer_attaches() {
    let mut scope = Scope::new("wait");
    let (i, name) = producer_with(&mut scope, "waiting", "10", &["--wait-consumer"]);
    // Long enough for ten items many times over, had it not waited.
    std::thread::sleep(Duration::from_millis(300));
    let state = inspect_json(&name);
    assert_eq!(
        (
            state["registered"].as_u64(),
            state["consumer_attached"].as_bool()
        ),
        (Some(0), Some(false)),
        "{state}"
    );
    let consumed = run(
        CONSUMER,
        &[
            "--prefix",
            &scope.prefix,
            "--request-id",
            "waiting",
            "--items",
            "10",
            "--json",
        ],
        None,
    );
    assert!(consumed.status.success(), "{}", text(&consumed.stderr));
    assert_complete(&json(&consumed.stdout), 10, 1);
    assert!(scope.wait(i).status.success());
    scope.assert_no_leftovers();
}

#[test]
fn a_producer_committing_each_group_at_once_delivers_every_item_verified() {
    let mut scope = Scope::new("many");
    let (i, _name) = producer_with(
        &mut scope,
        "together",
        "2000",
        &["--commit-many", "--reorder", "16", "--capacity", "64"],
    );
    let consumed = run(
        CONSUMER,
        &[
            "--prefix",
            &scope.prefix,
            "--request-id",
            "together",
            "--items",
            "2000",
            "--json",
        ],
        None,
    );
    assert!(consumed.status.success(), "{}", text(&consumed.stderr));
    assert_complete(&json(&consumed.stdout), 2000, 1);
    assert!(scope.wait(i).status.success());
    scope.assert_no_leftovers();
}
