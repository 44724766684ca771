//! The open-time header checks on arbitrary bytes: the first 8 bytes of the
//! input are the file length (native-endian u64), the rest is the first
//! page of the file. Inputs shorter than 8 bytes are a page of their own
//! length. Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file_len, page) = match data.split_first_chunk::<8>() {
        Some((len, page)) => (u64::from_ne_bytes(*len), page),
        None => (data.len() as u64, data),
    };
    let _ = shmstream::fuzzing::check_header(page, file_len);
});
