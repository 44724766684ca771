//! The fuzz corpora, replayed on stable Rust: every seed under
//! `fuzz/seeds/<target>/` (and, when a fuzzing run left one, every input
//! under `fuzz/corpus/<target>/`) goes through the same in-process entry
//! point as the cargo-fuzz target (`ipc_demo::fuzzing`), which panics when
//! an invariant breaks. Also the replay's line limit, in process.

use ipc_demo::fuzzing;
use ipc_demo::replay::{replay_in_process, ReplaySetup};
use ipc_demo::trace::MAX_LINE_BYTES;
use std::path::{Path, PathBuf};

/// The Python argument conversion's target, whose entry point lives in
/// its own file (it tests `shmstream::binding`, not `ipc_demo`).
#[path = "../../fuzz/fuzz_targets/py_args.rs"]
mod py_args;

type Entry = fn(&[u8]);

const TARGETS: [(&str, Entry); 5] = [
    ("replay", fuzzing::replay_trace),
    ("policy", fuzzing::policy_name),
    ("config", fuzzing::stream_config),
    ("wire", fuzzing::wire_header),
    ("py_args", py_args::check),
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
fn some_wire_seeds_decode_as_offers() {
    // A seed refused at the first check (say, an old magic) only fuzzes
    // that check: the corpus must reach the offer's fields
    // (tests/wire_seeds.rs writes the seeds).
    use shmstream_net::wire::{parse, Message};
    let offers = files(&fuzz_dir().join("seeds").join("wire"))
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).unwrap();
            let (len, capacity, header) = fuzzing::wire_frame(&data);
            matches!(parse(header, len, capacity), Ok(Message::Offer(_)))
        })
        .count();
    assert!(
        offers >= 1,
        "no seed in fuzz/seeds/wire decodes as an offer"
    );
}

#[test]
fn the_entry_points_read_the_documented_text_forms() {
    // The replay entry point does check its output: a trace whose chunk
    // lines are right passes, and the text form is read as documented.
    let trace = b"#text\n{\"policy\":\"fixed:size=1\",\"capacity\":8,\"item_bytes\":512}\n\
{\"op\":\"register\",\"id\":\"a\"}\n{\"op\":\"put\",\"id\":\"a\"}\n{\"op\":\"done\"}\n{\"op\":\"poll\"}\n";
    fuzzing::replay_trace(trace);
    // A policy entry point that parses a policy prints it back.
    fuzzing::policy_name(b"#text\nsliding:window=4,stride=2");
    // A decoded offer must encode back: a header with a non-zero reserved
    // byte is refused, not accepted and changed. The first two bytes are
    // the payload length / 8 and log2 of the capacity.
    let meta = shmstream::TensorMeta::new(shmstream::DType::U8, &[8]).unwrap();
    let mut frame = vec![1u8, 20];
    let mut header = Vec::new();
    shmstream_net::wire::encode_offer(&mut header, 0, "x", &meta);
    frame.extend_from_slice(&header);
    fuzzing::wire_header(&frame);
    frame[2 + 27] = 1;
    fuzzing::wire_header(&frame);
}

#[test]
fn a_line_past_the_limit_is_refused_by_number() {
    let setup = ReplaySetup {
        policy: "fixed:size=1".parse().unwrap(),
        capacity: 8,
        item_bytes: 512,
        payload_bytes: None,
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

#[test]
fn a_ramp_past_2_53_keeps_its_window_bound() {
    // Found by the fuzz target `policy` (growth 1: the window should stay
    // at `size`, but the f64 running size rounded up past it; fixed in the
    // core by capping the running size at `size`).
    use shmstream::policy::{ChunkPolicy, Policy};
    let mut p: Policy =
        "ramp:first=7021686266523907107,size=11201699597861137780,max=12008468691120715552"
            .parse()
            .unwrap();
    for _ in 0..3 {
        assert!(
            p.window() <= p.max_window(),
            "{} > {}",
            p.window(),
            p.max_window()
        );
        p.register_chunk(p.stride());
    }
}

#[test]
fn a_payload_sized_item_fits_an_empty_ring_after_a_small_one() {
    // Found by the fuzz target `config` (capacity 1, default item size 1):
    // after a 1-byte item is released the ring is empty, yet a 4096-byte
    // item (placed 64-byte aligned, at byte 64) is refused as if the 63
    // padding bytes were still held: `Full` for ever, a timeout here.
    use shmstream::{DType, StreamConfig, StreamId, TensorMeta};
    let config = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(1)
    .with_item_bytes(1)
    .with_timeout(Some(std::time::Duration::ZERO));
    let policy: shmstream::policy::Policy = "fixed:size=1".parse().unwrap();
    let (producer, mut buffer) = shmstream::in_process_buffer::<()>(&config, policy).unwrap();
    assert_eq!(producer.payload_bytes(), 4096);
    for (id, n) in [("x", 1u64), ("y", 4096)] {
        let meta = TensorMeta::new(DType::U8, &[n]).unwrap();
        producer
            .pre_read_register_sized(id, n)
            .unwrap_or_else(|e| panic!("an empty ring refuses {n} bytes: {e}"));
        producer.put(id, meta, &vec![7; n as usize]).unwrap();
        drop(buffer.pop_chunk().unwrap());
    }
}

#[test]
fn a_replay_error_stays_one_line_whatever_the_trace_holds() {
    // Found by the fuzz target `replay`: a key with an escaped line break
    // came back in the error as a real one.
    let setup = ReplaySetup {
        policy: "fixed:size=1".parse().unwrap(),
        capacity: 8,
        item_bytes: 512,
        payload_bytes: None,
        values: false,
    };
    let trace = "{\"op\":\"pop\",\"a\\nb\\u001b[2J\":1}\n";
    let e = replay_in_process(&setup, trace.as_bytes(), &mut Vec::new()).unwrap_err();
    assert!(e.starts_with("line 1: "), "{e}");
    assert!(!e.chars().any(char::is_control), "{e:?}");
    assert!(e.contains("a\\nb\\u{1b}[2J"), "{e}");
}
