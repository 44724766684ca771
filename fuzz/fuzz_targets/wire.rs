//! The offer header decoder of `ipc-producer --source ucx` (shmstream_net::wire).
//! The entry point and its invariants live in `ipc_demo::fuzzing`, shared
//! with the stable test that replays the corpora
//! (`ipc-demo/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipc_demo::fuzzing::wire_header(data));
