//! The `wire` target: message headers of the UCX ingress, raw bytes
//! ([`wire_header`]; the invariants are in the docs of `fuzzing`).

use shmstream::{MAX_DIMS, MAX_ID_LEN};

/// Decodes a message header of the UCX ingress (see
/// [`shmstream_net::wire`]), with a payload length and a capacity taken
/// from the input's first two bytes ([`wire_frame`]). Raw bytes only, not
/// structured: the decoder reads bytes from a peer.
///
/// # Panics
///
/// When a decoded offer is out of limits or does not encode back to the
/// bytes it came from, or a refusal names no field.
pub fn wire_header(data: &[u8]) {
    use shmstream_net::wire::{encode_offer, parse, Message};
    let (len, capacity, header) = wire_frame(data);
    match parse(header, len, capacity) {
        Ok(Message::Offer(offer)) => {
            assert!((1..=MAX_ID_LEN).contains(&offer.id.len()));
            assert!(offer.meta.shape().len() <= MAX_DIMS);
            assert!(offer.meta.nbytes() <= capacity);
            assert_eq!(offer.meta.nbytes(), len as u64);
            let mut again = Vec::new();
            encode_offer(&mut again, offer.seq, &offer.id, &offer.meta);
            assert_eq!(again, header, "the offer does not encode back");
        }
        Ok(_) => {}
        Err(e) => {
            assert!(!e.field.is_empty() && !e.detail.is_empty());
            assert!(!e.to_string().is_empty());
        }
    }
}

/// How [`wire_header`] reads its input: the first byte x 8 is the
/// payload's length, the second (mod 40) log2 of the stream's payload
/// capacity, the rest the message header. A shorter input is a header of
/// its own, with a payload of 0 bytes and a capacity of 0.
pub fn wire_frame(data: &[u8]) -> (usize, u64, &[u8]) {
    match data {
        [a, b, rest @ ..] => (*a as usize * 8, 1u64 << (*b % 40), rest),
        _ => (0, 0, data),
    }
}
