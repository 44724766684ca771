//! `ipc-demo replay`: SPEC section 6 traces through a real segment, the
//! worked examples of SPEC section 3 line for line, and bad traces.

mod common;
use common::*;

fn replay(scope: &Scope, policy: &str, extra: &[&str], trace: &str) -> std::process::Output {
    let mut args = vec!["replay", "--policy", policy, "--prefix", &scope.prefix];
    args.extend_from_slice(extra);
    run(DEMO, &args, Some(trace))
}

fn ok_lines(scope: &Scope, policy: &str, trace: &str) -> Vec<String> {
    let out = replay(scope, policy, &[], trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

fn register_put(ids: std::ops::Range<u32>) -> String {
    ids.map(|i| {
        format!("{{\"op\":\"register\",\"id\":\"t{i}\"}}\n{{\"op\":\"put\",\"id\":\"t{i}\"}}\n")
    })
    .collect()
}

#[test]
fn sliding_4_2_over_7_items_flushes_a_final_chunk() {
    let scope = Scope::new("rslide");
    let trace = register_put(0..7) + "{\"op\":\"done\"}\n{\"op\":\"poll\"}\n{\"op\":\"pop\"}\n";
    assert_eq!(
        ok_lines(&scope, "sliding:window=4,stride=2", &trace),
        [
            r#"{"chunk_index":0,"start_offset":0,"is_final":false,"context_items":0,"ids":["t0","t1","t2","t3"]}"#,
            r#"{"chunk_index":1,"start_offset":2,"is_final":false,"context_items":2,"ids":["t2","t3","t4","t5"]}"#,
            r#"{"chunk_index":2,"start_offset":4,"is_final":true,"context_items":2,"ids":["t4","t5","t6"]}"#,
            r#"{"ready":false}"#,
        ]
    );
    scope.assert_no_leftovers();
}

#[test]
fn fixed_3_drained_before_done_ends_with_one_empty_final_chunk() {
    let scope = Scope::new("rfixed");
    let mut trace = String::new();
    for i in 0..6 {
        trace += &register_put(i..i + 1);
        trace += "{\"op\":\"poll\"}\n";
    }
    trace += "{\"op\":\"done\"}\n{\"op\":\"poll\"}\n{\"op\":\"poll\"}\n";
    assert_eq!(
        ok_lines(&scope, "fixed:size=3", &trace),
        [
            r#"{"chunk_index":0,"start_offset":0,"is_final":false,"context_items":0,"ids":["t0","t1","t2"]}"#,
            r#"{"chunk_index":1,"start_offset":3,"is_final":false,"context_items":0,"ids":["t3","t4","t5"]}"#,
            r#"{"chunk_index":2,"start_offset":6,"is_final":true,"context_items":0,"ids":[]}"#,
        ]
    );
    scope.assert_no_leftovers();
}

#[test]
fn left_context_10_2_windows_overlap_by_two() {
    let scope = Scope::new("rleft");
    let trace = register_put(0..30) + "{\"op\":\"done\"}\n{\"op\":\"poll\",\"max\":3}\n";
    let lines = ok_lines(&scope, "left-context:chunk=10,context=2", &trace);
    let windows: Vec<(u64, u64, usize)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["start_offset"].as_u64().unwrap(),
                v["context_items"].as_u64().unwrap(),
                v["ids"].as_array().unwrap().len(),
            )
        })
        .collect();
    // [0..10), [8..20), [18..30): `max` stopped the poll after three.
    assert_eq!(windows, [(0, 0, 10), (8, 2, 12), (18, 2, 12)]);
    scope.assert_no_leftovers();
}

#[test]
fn an_early_put_waits_invisible_and_values_come_back() {
    let scope = Scope::new("rorder");
    let trace = concat!(
        "{\"op\":\"register\",\"id\":\"a\"}\n",
        "{\"op\":\"register\",\"id\":\"b\"}\n",
        "{\"op\":\"put\",\"id\":\"b\",\"dtype\":\"i32\",\"shape\":[2],\"data\":[7,-8]}\n",
        "{\"op\":\"pop\"}\n",
        "{\"op\":\"put\",\"id\":\"a\",\"dtype\":\"f32\",\"shape\":[2],\"data\":[1.5,2.5]}\n",
        "{\"op\":\"done\"}\n",
        "{\"op\":\"poll\"}\n",
    );
    let out = replay(&scope, "fixed:size=1", &["--values"], trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        [
            r#"{"ready":false}"#,
            r#"{"chunk_index":0,"start_offset":0,"is_final":false,"context_items":0,"ids":["a"],"values":[[1.5,2.5]]}"#,
            r#"{"chunk_index":1,"start_offset":1,"is_final":true,"context_items":0,"ids":["b"],"values":[[7,-8]]}"#,
        ]
    );
    scope.assert_no_leftovers();
}

#[test]
fn bad_traces_stop_at_the_line_that_is_wrong() {
    let scope = Scope::new("rbad");
    let reg = "{\"op\":\"register\",\"id\":\"t0\"}\n";
    let cases: [(String, &[&str]); 6] = [
        (
            format!("{reg}{{\"op\":\"pop\"}}\n{{\"op\":\"register\",\n"),
            &["line 3", "not valid JSON"],
        ),
        (
            format!("{reg}{{\"op\":\"jump\"}}\n"),
            &["line 2", "unknown variant `jump`"],
        ),
        (
            format!("{reg}{{\"op\":\"put\",\"id\":\"t9\"}}\n"),
            &["line 2", "\"t9\"", "never registered"],
        ),
        (
            format!("{reg}{reg}"),
            &["line 2", "\"t0\"", "registered twice"],
        ),
        (
            format!("\n{reg}{{\"op\":\"put\",\"id\":\"t0\"}}\n{{\"op\":\"put\",\"id\":\"t0\"}}\n"),
            &["line 4", "put twice"],
        ),
        (
            format!("{reg}{{\"op\":\"put\",\"id\":\"t0\",\"dtype\":\"f32\",\"shape\":[2000]}}\n"),
            &[
                "line 2",
                "tensor \"t0\" of 8000 bytes",
                "does not fit in the 4096 bytes reserved for it",
                "\"nbytes\":8000",
                "--item-bytes",
            ],
        ),
    ];
    for (trace, words) in &cases {
        let out = replay(&scope, "fixed:size=1", &[], trace);
        assert_one_line_error(&out, words);
    }
    scope.assert_no_leftovers();
}

#[test]
fn a_huge_shape_without_data_is_a_clean_error_and_leaves_no_segment() {
    let scope = Scope::new("rhuge");
    let reg = "{\"op\":\"register\",\"id\":\"t0\"}\n";
    let put = |rest: &str| format!("{reg}{{\"op\":\"put\",\"id\":\"t0\",{rest}}}\n");
    let cases: [(&[&str], String, &[&str]); 5] = [
        // One dimension of 2^40: 4 TiB of f32, refused by the reserved
        // size before anything is allocated (this aborted the process).
        (
            &[],
            put("\"dtype\":\"f32\",\"shape\":[1099511627776]"),
            &[
                "line 2",
                "4398046511104 bytes",
                "does not fit in the 4096 bytes reserved for it",
            ],
        ),
        // Fits a 32 MiB reservation, not the replay's stated limit per tensor.
        (
            &["--capacity", "1", "--item-bytes", "32M"],
            put("\"dtype\":\"u8\",\"shape\":[16777217]"),
            &[
                "line 2",
                "16777217 bytes",
                "limit of 16777216 bytes per tensor",
            ],
        ),
        // More elements than 64 bits count, and more bytes.
        (
            &[],
            put("\"dtype\":\"u8\",\"shape\":[4294967296,4294967296]"),
            &["line 2", "more elements than fit in 64 bits"],
        ),
        (
            &[],
            put("\"dtype\":\"f64\",\"shape\":[4611686018427387904]"),
            &["line 2", "more bytes than fit in 64 bits"],
        ),
        // The size is checked before the data is compared with it.
        (
            &[],
            put("\"dtype\":\"f32\",\"shape\":[1099511627776],\"data\":[1]"),
            &["line 2", "does not fit in the 4096 bytes reserved for it"],
        ),
    ];
    for (extra, trace, words) in &cases {
        let out = replay(&scope, "fixed:size=1", extra, trace);
        assert_eq!(
            out.status.code(),
            Some(1),
            "not a clean exit: {:?}",
            out.status
        );
        assert_one_line_error(&out, words);
        scope.assert_no_leftovers();
    }
}

#[test]
fn replay_limits_are_named_and_checked_before_the_segment_exists() {
    let scope = Scope::new("rlimit");
    // A ring past the replay's limit: no segment is made at all.
    let out = replay(
        &scope,
        "fixed:size=1",
        &["--capacity", "1048576", "--item-bytes", "1G"],
        "",
    );
    assert_one_line_error(
        &out,
        &[
            "--capacity 1048576 x --item-bytes 1073741824",
            "limit of 1073741824 bytes",
        ],
    );
    let out = replay(&scope, "fixed:size=1", &["--payload-bytes", "2G"], "");
    assert_one_line_error(
        &out,
        &["--payload-bytes 2147483648", "limit of 1073741824 bytes"],
    );
    let out = replay(&scope, "fixed:size=1", &["--payload-bytes", "3000"], "");
    assert_one_line_error(&out, &["--payload-bytes", "power of two from 4K"]);
    let out = replay(
        &scope,
        "fixed:size=1",
        &["--item-bytes", "8K", "--payload-bytes", "4K"],
        "",
    );
    assert_one_line_error(
        &out,
        &["--item-bytes 8192 exceeds the payload ring of 4096"],
    );
    // A poll past the stated limit names the line and the limit.
    let out = replay(
        &scope,
        "fixed:size=1",
        &[],
        "{\"op\":\"poll\",\"max\":1000001}\n",
    );
    assert_one_line_error(&out, &["line 1", "limit of 1000000 chunks"]);
    scope.assert_no_leftovers();
}

#[test]
fn registers_with_sizes_carry_tensors_of_any_size() {
    let scope = Scope::new("rsized");
    // A 56-byte frame, an empty tensor, 64 KiB and 2 MiB tensors, and one of
    // the default size, in a payload of 4 MiB.
    let trace = concat!(
        "{\"op\":\"register\",\"id\":\"a\",\"nbytes\":56}\n",
        "{\"op\":\"register\",\"id\":\"b\",\"nbytes\":0}\n",
        "{\"op\":\"register\",\"id\":\"c\",\"nbytes\":65536}\n",
        "{\"op\":\"register\",\"id\":\"d\",\"nbytes\":2097152}\n",
        "{\"op\":\"register\",\"id\":\"e\"}\n",
        "{\"op\":\"put\",\"id\":\"d\",\"dtype\":\"f32\",\"shape\":[524288]}\n",
        "{\"op\":\"put\",\"id\":\"c\",\"dtype\":\"u8\",\"shape\":[256,256]}\n",
        "{\"op\":\"put\",\"id\":\"b\",\"dtype\":\"i64\",\"shape\":[0,7]}\n",
        "{\"op\":\"put\",\"id\":\"a\",\"dtype\":\"i64\",\"shape\":[7],\"data\":[1,2,3,4,5,6,7]}\n",
        "{\"op\":\"pop\"}\n",
        "{\"op\":\"put\",\"id\":\"e\",\"dtype\":\"i32\",\"shape\":[1024]}\n",
        "{\"op\":\"done\"}\n",
        "{\"op\":\"poll\"}\n",
    );
    let out = replay(
        &scope,
        "fixed:size=2",
        &["--payload-bytes", "4M", "--item-bytes", "4K"],
        trace,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        [
            r#"{"chunk_index":0,"start_offset":0,"is_final":false,"context_items":0,"ids":["a","b"]}"#,
            r#"{"chunk_index":1,"start_offset":2,"is_final":false,"context_items":0,"ids":["c","d"]}"#,
            r#"{"chunk_index":2,"start_offset":4,"is_final":true,"context_items":0,"ids":["e"]}"#,
        ]
    );
    // The values come back, the empty tensor as an empty list.
    let out = replay(
        &scope,
        "fixed:size=2",
        &["--payload-bytes", "4M", "--values"],
        &trace
            .replace(",\"nbytes\":2097152", ",\"nbytes\":0")
            .replace(
                "{\"op\":\"put\",\"id\":\"d\",\"dtype\":\"f32\",\"shape\":[524288]}\n",
                "{\"op\":\"put\",\"id\":\"d\",\"dtype\":\"f32\",\"shape\":[0]}\n",
            ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = text(&out.stdout).lines().next().unwrap_or("").to_string();
    assert_eq!(
        first,
        r#"{"chunk_index":0,"start_offset":0,"is_final":false,"context_items":0,"ids":["a","b"],"values":[[1,2,3,4,5,6,7],[]]}"#
    );
    scope.assert_no_leftovers();
}

#[test]
fn a_full_payload_and_a_too_large_register_name_the_flag() {
    let scope = Scope::new("rpfull");
    let reg =
        |id: &str, n: u64| format!("{{\"op\":\"register\",\"id\":\"{id}\",\"nbytes\":{n}}}\n");
    // Two 2 KiB reservations fill a 4 KiB payload: the third waits for a
    // pop, which a replay does not do for it.
    let trace = reg("t0", 2048) + &reg("t1", 2048) + &reg("t2", 2048);
    let out = replay(&scope, "fixed:size=1", &["--payload-bytes", "4K"], &trace);
    assert_one_line_error(
        &out,
        &[
            "line 3",
            "\"t2\"",
            "its 2048 bytes do not fit",
            "payload ring of 4096 bytes",
            "raise --payload-bytes",
        ],
    );
    // Once the first is put and popped, the third fits.
    let trace = reg("t0", 2048)
        + &reg("t1", 2048)
        + "{\"op\":\"put\",\"id\":\"t0\",\"dtype\":\"u8\",\"shape\":[2048]}\n{\"op\":\"pop\"}\n"
        + &reg("t2", 2048);
    let out = replay(&scope, "fixed:size=1", &["--payload-bytes", "4K"], &trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // More than the whole payload: refused before any waiting.
    let out = replay(
        &scope,
        "fixed:size=1",
        &[],
        &reg("big", 18446744073709551615),
    );
    assert_one_line_error(
        &out,
        &[
            "line 1",
            "cannot register \"big\" with 18446744073709551615 bytes",
            "more than the payload ring of 4194304 bytes",
            "--payload-bytes",
        ],
    );
    // The item ring full: the other flag.
    let trace = reg("t0", 8) + &reg("t1", 8) + &reg("t2", 8);
    let out = replay(&scope, "fixed:size=1", &["--capacity", "2"], &trace);
    assert_one_line_error(
        &out,
        &["line 3", "the ring is full (2 items)", "--capacity"],
    );
    scope.assert_no_leftovers();
}
