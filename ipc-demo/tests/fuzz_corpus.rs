//! The fuzz corpora, replayed on stable Rust: every seed under
//! `fuzz/seeds/<target>/` (and, when a fuzzing run left one, every input
//! under `fuzz/corpus/<target>/`) goes through the same in-process entry
//! point as the cargo-fuzz target (`ipc_demo::fuzzing`), which panics when
//! an invariant breaks. Also the replay's line limit, in process.

use ipc_demo::fuzzing;
use ipc_demo::replay::{replay_in_process, ReplaySetup};
use ipc_demo::trace::MAX_LINE_BYTES;
use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

const TARGETS: [(&str, Entry); 4] = [
    ("replay", fuzzing::replay_trace),
    ("policy", fuzzing::policy_name),
    ("config", fuzzing::stream_config),
    ("wire", fuzzing::wire_header),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_corpus_input_passes_its_target() {
    for (target, entry) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(
            seeds.len() >= 3,
            "fuzz/seeds/{target} holds {} seeds, expected at least 3",
            seeds.len()
        );
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        for file in seeds.iter().chain(&corpus) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
        }
    }
}

#[test]
fn the_entry_points_read_the_documented_text_forms() {
    // The replay entry point does check its output: a trace whose chunk
    // lines are right passes, and the text form is read as documented.
    let trace = b"#text\n{\"policy\":\"fixed:size=1\",\"capacity\":8,\"slot_bytes\":512}\n\
{\"op\":\"register\",\"id\":\"a\"}\n{\"op\":\"put\",\"id\":\"a\"}\n{\"op\":\"done\"}\n{\"op\":\"poll\"}\n";
    fuzzing::replay_trace(trace);
    // A policy entry point that parses a policy prints it back.
    fuzzing::policy_name(b"#text\nsliding:window=4,stride=2");
    // A decoded frame must encode back: a header with a non-zero reserved
    // byte is refused, not accepted and changed.
    let mut frame = b"SHMF\x01\x01\x00\x00".to_vec();
    frame.extend_from_slice(&1u64.to_le_bytes());
    frame.push(b'x');
    fuzzing::wire_header(&frame);
    frame[7] = 1;
    fuzzing::wire_header(&frame);
}

#[test]
fn a_line_past_the_limit_is_refused_by_number() {
    let setup = ReplaySetup {
        policy: "fixed:size=1".parse().unwrap(),
        capacity: 8,
        slot_bytes: 512,
        values: false,
    };
    let mut trace = b"{\"op\":\"pop\"}\n".to_vec();
    trace.extend(std::iter::repeat_n(b' ', MAX_LINE_BYTES + 1));
    trace.extend_from_slice(b"\n{\"op\":\"pop\"}\n");
    let mut out = Vec::new();
    let e = replay_in_process(&setup, &trace[..], &mut out).unwrap_err();
    assert_eq!(
        e,
        format!("line 2: longer than the limit of {MAX_LINE_BYTES} bytes")
    );
    assert_eq!(out, b"{\"ready\":false}\n");
    // Exactly at the limit it is read (and, being blank, skipped).
    let mut trace = vec![b' '; MAX_LINE_BYTES];
    trace.extend_from_slice(b"\n{\"op\":\"pop\"}\n");
    let mut out = Vec::new();
    replay_in_process(&setup, &trace[..], &mut out).unwrap();
    assert_eq!(out, b"{\"ready\":false}\n");
}
