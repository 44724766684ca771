//! Stream configuration values: names, prefix, capacity, item and payload
//! sizes through `StreamConfig` validation and an in-process stream, and the
//! tools' `--shape` and seconds parsers.
//! The entry point and its invariants live in `ipc_demo::fuzzing`, shared
//! with the stable test that replays the corpora
//! (`ipc-demo/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipc_demo::fuzzing::stream_config(data));
