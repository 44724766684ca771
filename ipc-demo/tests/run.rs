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
    // Items that fill their slots, in a ring that wraps every 8 items and
    // windows that straddle the wrap (the payload is mapped twice).
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
            "--slot-bytes",
            "4096",
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
