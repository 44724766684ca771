//! The per-item descriptor checks on arbitrary bytes: the first 32 bytes of
//! the input are the position, the end of the previous reservation, the
//! start of the oldest unreleased one (all ones: the item itself) and the
//! payload size (native-endian u64s; the
//! payload size is rounded to a power of two of at least a page, and the
//! low bit of the position picks a mirrored payload), the rest is one
//! descriptor (64 bytes) and its side entry (128 bytes: the id, the wide
//! dims), padded with zeros (`fuzz/gen-descriptor-seeds.py` writes the
//! seeds). Any input must give `Ok` or
//! `Err`, never a panic; an accepted item must lie after the previous one,
//! within one payload length of the oldest unreleased one, hold its tensor in its
//! reservation and carry a valid id; an abandoned one's id and reason are
//! read and checked (`Ok(None)` or `Err`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, bytes)) = data.split_first_chunk::<32>() else {
        return;
    };
    let word = |i: usize| u64::from_ne_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
    let (position, walk_end, oldest_start, payload) = (word(0), word(1), word(2), word(3));
    let mirrored = position & 1 == 1;
    if let Ok(Some(item)) = shmstream::fuzzing::check_descriptor(
        bytes,
        position,
        walk_end,
        oldest_start,
        payload,
        mirrored,
    ) {
        let payload = payload.clamp(4096, 1 << 40).next_power_of_two();
        assert!(item.nbytes <= item.len, "{item:?} holds more than it reserved");
        assert!(item.offset >= walk_end, "{item:?} starts before {walk_end}");
        let floor = if oldest_start == u64::MAX { item.offset } else { oldest_start };
        // The whole run: its last item ends where the head's would have to.
        assert!(item.count >= 1 && item.count <= shmstream::fuzzing::FUZZ_CAPACITY, "{item:?}");
        assert!(item.count <= shmstream::fuzzing::FUZZ_REGISTERED, "{item:?}");
        let span = (item.count - 1) * item.stride + item.len;
        assert!(item.count == 1 || item.stride >= item.len, "{item:?} overlaps itself");
        assert!(
            item.offset + span <= floor.saturating_add(payload),
            "{item:?} reaches past {floor} + {payload}"
        );
        assert!(
            mirrored || (item.offset % payload) + span <= payload,
            "{item:?} crosses the end of an unmirrored payload"
        );
        assert!(
            (1..=64).contains(&item.id.len()),
            "accepted an id of {} bytes",
            item.id.len()
        );
    }
});
