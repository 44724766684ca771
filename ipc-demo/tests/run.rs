//! `ipc-demo` with no subcommand: a producer and a consumer process over
//! one stream, every item verified, for each policy kind.

mod common;
use common::*;

fn demo(scope: &Scope, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--prefix", &scope.prefix, "--json", "--no-progress"];
    args.extend_from_slice(extra);
    let out = run(DEMO, &args, None);
    assert!(
        out.status.success(),
        "ipc-demo {extra:?} failed: {}",
        text(&out.stderr)
    );
    json(&out.stdout)
}

#[test]
fn the_default_run_delivers_every_item_in_place() {
    let scope = Scope::new("run");
    let report = demo(&scope, &["--items", "3000"]);
    assert_complete(&report, 3000, 1);
    assert_eq!(report["policy"], "sliding:window=28,stride=7");
    // Every window was read as one stacked view, none item by item.
    assert_eq!(report["stacked_windows"], report["chunks"]);
    assert_eq!(report["unstacked_windows"], 0);
    assert_eq!(report["bytes"], 3000 * 56);
    let latency = &report["latency"];
    assert_eq!(latency["samples"], 3000);
    assert!(latency["p50_ns"].as_u64().unwrap() <= latency["p99_ns"].as_u64().unwrap());
    assert!(report["segment"]
        .as_str()
        .unwrap()
        .starts_with(&format!("/{}demo-", scope.prefix)));
    scope.assert_no_leftovers();
}

/// `--batching` (issue 24): the producer stages one-by-one commits into
/// runs; in order and reordered, every item still arrives and verifies, in
/// place, and the ring and hub runs pass the flag on. Fails on fd42387:
/// the flag is unknown (exit status 2).
#[test]
fn batching_runs_deliver_every_item_in_place() {
    let scope = Scope::new("batching");
    for reorder in ["1", "8"] {
        let report = demo(
            &scope,
            &["--items", "3000", "--batching", "64", "--reorder", reorder],
        );
        assert_complete(&report, 3000, 1);
        assert_eq!(report["unstacked_windows"], 0);
        assert_eq!(report["bytes"], 3000 * 56);
    }
    let report = demo(
        &scope,
        &["--items", "500", "--batching", "8", "--streams", "3"],
    );
    assert_eq!(report["total"]["items"], 1500, "{report}");
    for stream in report["streams"].as_array().unwrap() {
        assert_eq!(stream["items"], 500, "{report}");
    }
    scope.assert_no_leftovers();
}

#[test]
fn the_table_reports_items_latency_and_no_copies() {
    let scope = Scope::new("table");
    let out = run(
        DEMO,
        &[
            "--prefix",
            &scope.prefix,
            "--items",
            "500",
            "--rate",
            "20000",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for expected in [
        "items          500 of 500 expected, 0 lost",
        "latency        p50 ",
        "copied         0 bytes on the consumer side",
    ] {
        assert!(table.contains(expected), "no {expected:?} in\n{table}");
    }
    scope.assert_no_leftovers();
}

#[test]
fn each_policy_kind_verifies_end_to_end() {
    let scope = Scope::new("policy");
    let cases = [
        ("fixed:size=30", 1),
        ("fixed:size=30,continue", 0),
        ("sliding:window=28,stride=7", 1),
        ("left-context:chunk=10,context=2", 1),
        ("ramp:first=4,size=8,growth=2,max=32", 1),
        ("ramp:first=4,size=8,growth=1.5,max=64,continue", 0),
        ("scheduled:schedule=4/8/16,chunk=25,context=25", 1),
        ("scheduled:schedule=4/8/16,chunk=25,context=25,prime=5", 1),
    ];
    for (policy, finals) in cases {
        let report = demo(&scope, &["--items", "1500", "--policy", policy]);
        assert_complete(&report, 1500, finals);
        assert_eq!(report["policy"], policy);
    }
    scope.assert_no_leftovers();
}

#[test]
fn odd_shapes_and_a_tiny_ring_still_verify() {
    let scope = Scope::new("shapes");
    // One byte per item: no room for a timestamp, so no latency.
    let report = demo(
        &scope,
        &[
            "--items",
            "700",
            "--shape",
            "1",
            "--dtype",
            "u8",
            "--policy",
            "fixed:size=3",
        ],
    );
    assert_complete(&report, 700, 1);
    assert!(report["latency"].is_null());
    // Items of 4 KiB in a ring of 8 items and a payload of 32 KiB
    // (8 x 4K): both wrap every 8 items, and windows straddle the wrap (the
    // payload is mapped twice).
    let report = demo(
        &scope,
        &[
            "--items",
            "900",
            "--shape",
            "4x128",
            "--dtype",
            "f64",
            "--capacity",
            "8",
            "--item-bytes",
            "4K",
            "--reorder",
            "3",
            "--policy",
            "sliding:window=5,stride=2",
        ],
    );
    assert_complete(&report, 900, 1);
    assert_eq!(report["stacked_windows"], report["chunks"]);
    scope.assert_no_leftovers();
}

/// The producer's waits for a full ring, from the launcher's report.
fn waits(report: &serde_json::Value) -> (u64, u64) {
    let w = &report["backpressure"];
    (
        w["items"].as_u64().unwrap_or_else(|| panic!("{report}")),
        w["payload_bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{report}")),
    )
}

#[test]
fn a_mix_of_56_byte_64k_and_2m_items_arrives_whole() {
    let scope = Scope::new("sizes");
    let report = demo(&scope, &["--sizes", "56,64K,2M", "--items", "300"]);
    assert_complete(&report, 300, 1);
    assert_eq!(report["bytes"], 100 * (56 + 65536 + 2 * 1048576));
    // Windows of mixed sizes are read item by item (only a final flush of
    // one item, or none, could stack).
    assert!(report["unstacked_windows"].as_u64() > Some(30), "{report}");
    assert!(report["stacked_windows"].as_u64() <= Some(1), "{report}");
    assert!(report["latency"]["samples"] == 300, "{report}");
    // The launcher sized the payload for a window of 28: no byte wait is
    // needed to make progress, and the report says how often it waited.
    assert!(report["backpressure"].is_object(), "{report}");
    scope.assert_no_leftovers();
}

#[test]
fn random_sizes_from_zero_bytes_and_a_64m_item_arrive_whole() {
    let scope = Scope::new("random");
    let report = demo(
        &scope,
        &[
            "--sizes",
            "random:0..256K",
            "--seed",
            "5",
            "--items",
            "2000",
        ],
    );
    assert_complete(&report, 2000, 1);
    // Items of 0 to 23 bytes carry no timestamp: fewer samples than items.
    let samples = report["latency"]["samples"].as_u64().unwrap();
    assert!(samples < 2000 && samples > 1000, "{report}");
    // The same seed gives the same stream, another seed another one.
    let again = demo(
        &scope,
        &[
            "--sizes",
            "random:0..256K",
            "--seed",
            "5",
            "--items",
            "2000",
        ],
    );
    assert_eq!(again["bytes"], report["bytes"]);
    let other = demo(
        &scope,
        &[
            "--sizes",
            "random:0..256K",
            "--seed",
            "6",
            "--items",
            "2000",
        ],
    );
    assert_ne!(other["bytes"], report["bytes"]);
    // The largest sizes of the issue, 64 MiB among them, in one stream.
    let report = demo(
        &scope,
        &[
            "--sizes",
            "56,64K,2M,64M",
            "--items",
            "8",
            "--policy",
            "fixed:size=4",
        ],
    );
    assert_complete(&report, 8, 1);
    assert_eq!(report["bytes"], 2 * (56 + 65536 + 2097152 + 67108864));
    scope.assert_no_leftovers();
}

#[test]
fn a_small_payload_holds_back_big_items_and_the_stream_completes() {
    let scope = Scope::new("bytesfull");
    // Two 1.5 MiB items fit a 4 MiB payload, a third does not: the
    // producer waits for payload bytes, never for an item slot.
    let report = demo(
        &scope,
        &[
            "--sizes",
            "1536K",
            "--payload-bytes",
            "4M",
            "--policy",
            "fixed:size=2",
            "--items",
            "60",
        ],
    );
    assert_complete(&report, 60, 1);
    let (items, bytes) = waits(&report);
    assert_eq!(items, 0, "{report}");
    assert!(bytes > 0, "no wait for payload bytes: {report}");
    scope.assert_no_leftovers();
}

#[test]
fn a_small_item_capacity_holds_back_tiny_items_and_the_stream_completes() {
    let scope = Scope::new("itemsfull");
    // Eight 56-byte items fill the item ring long before its 32 KiB of
    // payload: the producer waits for item slots, never for bytes.
    let report = demo(
        &scope,
        &[
            "--sizes",
            "56",
            "--capacity",
            "8",
            "--policy",
            "fixed:size=8",
            "--items",
            "4000",
        ],
    );
    assert_complete(&report, 4000, 1);
    // Equal sizes stack (the final chunk may be empty: neither kind).
    assert_eq!(report["unstacked_windows"], 0, "{report}");
    assert!(report["stacked_windows"].as_u64() >= Some(500), "{report}");
    let (items, bytes) = waits(&report);
    assert!(items > 0, "no wait for an item slot: {report}");
    assert_eq!(bytes, 0, "{report}");
    scope.assert_no_leftovers();
}

#[test]
fn the_table_names_the_sizes_and_the_waits() {
    let scope = Scope::new("sizetable");
    let out = run(
        DEMO,
        &[
            "--prefix",
            &scope.prefix,
            "--sizes",
            "56,4K",
            "--items",
            "200",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for expected in [
        "ipc-demo: 200 items of u8 tensors of 56,4K bytes (cycling)",
        "items          200 of 200 expected, 0 lost",
        "backpressure   the producer waited ",
    ] {
        assert!(table.contains(expected), "no {expected:?} in\n{table}");
    }
    scope.assert_no_leftovers();
}
