//! The per-item descriptor checks on arbitrary bytes: the first 8 bytes of
//! the input are the position, the next 8 the slot size (both native-endian
//! u64), the rest is one descriptor (192 bytes, padded with zeros). Any input
//! must give `Ok` or `Err`, never a panic; an accepted item must fit its slot
//! and carry a valid id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((position, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((slot_bytes, bytes)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let position = u64::from_ne_bytes(*position);
    let slot_bytes = u64::from_ne_bytes(*slot_bytes);
    if let Ok(Some((id, nbytes))) =
        shmstream::fuzzing::check_descriptor(bytes, position, slot_bytes)
    {
        assert!(
            nbytes <= slot_bytes,
            "accepted {nbytes} bytes in a slot of {slot_bytes}"
        );
        assert!(
            (1..=64).contains(&id.len()),
            "accepted an id of {} bytes",
            id.len()
        );
    }
});
