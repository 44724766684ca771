//! The messages of the ingress protocol: active-message headers, all
//! little-endian, all starting with the same 8 bytes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `SHMN` |
//! | 1 | version, 1 |
//! | 1 | kind: 1 offer, 2 end, 3 acknowledgement |
//! | 2 | reserved, 0 |
//!
//! - **offer** (sender -> receiver; the tensor's bytes are the message's
//!   rendezvous payload): `seq` u64, `nbytes` u64, dtype code u8, ndim u8
//!   (0 to 8), id length u8 (1 to 64), reserved u8, the shape (8 x ndim),
//!   the id (UTF-8).
//! - **end** (sender -> receiver): `count` u64, the offers sent.
//! - **ack** (receiver -> sender): `seq` u64, status u8 ([`AckStatus`]),
//!   reserved u8, message length u16, the message (UTF-8, the receiver's
//!   reason for a refusal or failure).
//!
//! [`parse_offer`] validates every field before the receiver touches the
//! stream; a refusal is an [`OfferError`] naming the field and the limit.

use crate::error::OfferError;
use shmstream::{DType, TensorMeta, MAX_DIMS, MAX_ID_LEN};

/// The first bytes of every message.
pub const MAGIC: [u8; 4] = *b"SHMN";
/// The protocol version.
pub const VERSION: u8 = 1;
/// The active-message handler id both sides register.
pub const AM_ID: u32 = 0x5348;
const PREFIX: usize = 8;
const OFFER_FIXED: usize = PREFIX + 20;
/// Longest acknowledgement message carried.
pub const MAX_ACK_MESSAGE: usize = 1024;

const KIND_OFFER: u8 = 1;
const KIND_END: u8 = 2;
const KIND_ACK: u8 = 3;

/// A validated offer.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// Its place in the sender's order (0, 1, 2, ...).
    pub seq: u64,
    /// The tensor id.
    pub id: String,
    /// Dtype and shape; `meta.nbytes()` is the payload's length.
    pub meta: TensorMeta,
}

/// How the receiver ended an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AckStatus {
    /// Landed and committed.
    Committed = 0,
    /// Refused before anything was reserved (the stream is untouched).
    Refused = 1,
    /// The transfer failed; its position was abandoned.
    Failed = 2,
}

/// A message as read by [`parse`].
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A tensor offered.
    Offer(Offer),
    /// The sender's last message.
    End {
        /// Offers it sent.
        count: u64,
    },
    /// The receiver's verdict on an offer.
    Ack {
        /// The offer's sequence number.
        seq: u64,
        /// Committed, refused or failed.
        status: AckStatus,
        /// Why, for a refusal or failure.
        message: String,
    },
}

fn prefix(kind: u8) -> [u8; PREFIX] {
    let mut p = [0u8; PREFIX];
    p[..4].copy_from_slice(&MAGIC);
    p[4] = VERSION;
    p[5] = kind;
    p
}

/// Encodes an offer header into `out` (cleared first).
///
/// # Panics
///
/// Never for an id of 1 to 64 bytes; longer ids are cut (and so refused
/// by the receiver as a mismatch): the sender checks ids first.
pub fn encode_offer(out: &mut Vec<u8>, seq: u64, id: &str, meta: &TensorMeta) {
    out.clear();
    out.extend_from_slice(&prefix(KIND_OFFER));
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&meta.nbytes().to_le_bytes());
    let id = &id.as_bytes()[..id.len().min(u8::MAX as usize)];
    out.extend_from_slice(&[
        meta.dtype().code(),
        meta.shape().len() as u8,
        id.len() as u8,
        0,
    ]);
    for d in meta.shape() {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(id);
}

/// Encodes the end message.
pub fn encode_end(count: u64) -> Vec<u8> {
    let mut out = prefix(KIND_END).to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out
}

/// Encodes an acknowledgement (the message cut to [`MAX_ACK_MESSAGE`]).
pub fn encode_ack(seq: u64, status: AckStatus, message: &str) -> Vec<u8> {
    let mut cut = message.len().min(MAX_ACK_MESSAGE);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = prefix(KIND_ACK).to_vec();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[status as u8, 0]);
    out.extend_from_slice(&(cut as u16).to_le_bytes());
    out.extend_from_slice(&message.as_bytes()[..cut]);
    out
}

fn refuse(seq: Option<u64>, id: Option<&str>, field: &'static str, detail: String) -> OfferError {
    OfferError {
        seq,
        id: id.map(str::to_string),
        field,
        detail,
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads a message; `data_len` is the length of its payload (the offered
/// tensor's bytes) and `payload_capacity` the largest tensor the stream
/// can hold.
///
/// # Errors
///
/// An [`OfferError`] naming the field at fault and the limit: a short or
/// foreign header, an unknown version or kind, a bad id, dtype or shape,
/// `nbytes` that disagrees with dtype x shape or exceeds the capacity, a
/// payload length other than `nbytes`, trailing bytes.
pub fn parse(header: &[u8], data_len: usize, payload_capacity: u64) -> Result<Message, OfferError> {
    if header.len() < PREFIX {
        return Err(refuse(
            None,
            None,
            "header",
            format!(
                "{} bytes, a message header has at least {PREFIX}",
                header.len()
            ),
        ));
    }
    if header[..4] != MAGIC {
        return Err(refuse(
            None,
            None,
            "magic",
            format!("{:02x?}, expected \"SHMN\"", &header[..4]),
        ));
    }
    if header[4] != VERSION {
        return Err(refuse(
            None,
            None,
            "version",
            format!("{}, this receiver speaks {VERSION}", header[4]),
        ));
    }
    if header[6..8] != [0, 0] {
        return Err(refuse(
            None,
            None,
            "header",
            "reserved bytes 6..8 are not 0".into(),
        ));
    }
    let body = &header[PREFIX..];
    match header[5] {
        KIND_OFFER => parse_offer(header, data_len, payload_capacity).map(Message::Offer),
        KIND_END if body.len() == 8 => Ok(Message::End {
            count: u64_at(body, 0),
        }),
        KIND_END => Err(refuse(
            None,
            None,
            "header",
            format!(
                "an end message of {} bytes, expected {}",
                header.len(),
                PREFIX + 8
            ),
        )),
        KIND_ACK => {
            if body.len() < 12 {
                return Err(refuse(
                    None,
                    None,
                    "header",
                    "an acknowledgement shorter than 20 bytes".into(),
                ));
            }
            let seq = u64_at(body, 0);
            let status = match body[8] {
                0 => AckStatus::Committed,
                1 => AckStatus::Refused,
                2 => AckStatus::Failed,
                s => {
                    return Err(refuse(
                        Some(seq),
                        None,
                        "status",
                        format!("{s}, expected 0, 1 or 2"),
                    ))
                }
            };
            let len = u16::from_le_bytes([body[10], body[11]]) as usize;
            if body.len() != 12 + len {
                return Err(refuse(
                    Some(seq),
                    None,
                    "header",
                    format!(
                        "message length {len} disagrees with the header's {} bytes",
                        header.len()
                    ),
                ));
            }
            let message = String::from_utf8_lossy(&body[12..]).into_owned();
            Ok(Message::Ack {
                seq,
                status,
                message,
            })
        }
        k => Err(refuse(
            None,
            None,
            "kind",
            format!("{k}, expected 1 (offer), 2 (end) or 3 (ack)"),
        )),
    }
}

/// Reads and validates an offer header (see [`parse`]).
///
/// # Errors
///
/// As [`parse`].
pub fn parse_offer(
    header: &[u8],
    data_len: usize,
    payload_capacity: u64,
) -> Result<Offer, OfferError> {
    if header.len() < OFFER_FIXED {
        return Err(refuse(
            None,
            None,
            "header",
            format!(
                "an offer of {} bytes, at least {OFFER_FIXED} expected",
                header.len()
            ),
        ));
    }
    let seq = u64_at(header, PREFIX);
    let nbytes = u64_at(header, PREFIX + 8);
    let (code, ndim, id_len) = (
        header[PREFIX + 16],
        header[PREFIX + 17] as usize,
        header[PREFIX + 18] as usize,
    );
    if header[PREFIX + 19] != 0 {
        return Err(refuse(
            Some(seq),
            None,
            "header",
            format!("reserved byte {}, expected 0", header[PREFIX + 19]),
        ));
    }
    if ndim > MAX_DIMS {
        return Err(refuse(
            Some(seq),
            None,
            "shape",
            format!("{ndim} dimensions, the limit is {MAX_DIMS}"),
        ));
    }
    if id_len == 0 || id_len > MAX_ID_LEN {
        return Err(refuse(
            Some(seq),
            None,
            "id",
            format!("{id_len} bytes long, ids are 1 to {MAX_ID_LEN} bytes"),
        ));
    }
    let expected = OFFER_FIXED + 8 * ndim + id_len;
    if header.len() != expected {
        return Err(refuse(
            Some(seq),
            None,
            "header",
            format!(
                "{} bytes, but {ndim} dimensions and a {id_len}-byte id make {expected}",
                header.len()
            ),
        ));
    }
    let id_bytes = &header[OFFER_FIXED + 8 * ndim..];
    let id = std::str::from_utf8(id_bytes)
        .map_err(|_| refuse(Some(seq), None, "id", "not UTF-8".into()))?;
    let mut shape = [0u64; MAX_DIMS];
    for (i, d) in shape[..ndim].iter_mut().enumerate() {
        *d = u64_at(header, OFFER_FIXED + 8 * i);
    }
    let dtype = DType::from_code(code).ok_or_else(|| {
        refuse(
            Some(seq),
            Some(id),
            "dtype",
            format!("unknown dtype code {code}"),
        )
    })?;
    let meta = TensorMeta::new(dtype, &shape[..ndim])
        .map_err(|e| refuse(Some(seq), Some(id), "shape", e.to_string()))?;
    if meta.nbytes() != nbytes {
        return Err(refuse(
            Some(seq),
            Some(id),
            "nbytes",
            format!(
                "{nbytes}, but {dtype} x {:?} is {} bytes",
                meta.shape(),
                meta.nbytes()
            ),
        ));
    }
    if nbytes > payload_capacity {
        return Err(refuse(
            Some(seq),
            Some(id),
            "nbytes",
            format!("{nbytes} exceeds the stream's payload capacity of {payload_capacity} bytes"),
        ));
    }
    if data_len as u64 != nbytes {
        return Err(refuse(
            Some(seq),
            Some(id),
            "length",
            format!("the payload is {data_len} bytes, the offer says nbytes {nbytes}"),
        ));
    }
    Ok(Offer {
        seq,
        id: id.to_string(),
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(seq: u64, id: &str, shape: &[u64]) -> (Vec<u8>, TensorMeta) {
        let meta = TensorMeta::new(DType::F32, shape).unwrap();
        let mut h = Vec::new();
        encode_offer(&mut h, seq, id, &meta);
        (h, meta)
    }

    #[test]
    fn messages_round_trip() {
        let (h, meta) = offer(7, "t7", &[2, 3]);
        assert_eq!(
            parse(&h, 24, 1 << 20).unwrap(),
            Message::Offer(Offer {
                seq: 7,
                id: "t7".into(),
                meta
            })
        );
        assert_eq!(
            parse(&encode_end(9), 0, 0).unwrap(),
            Message::End { count: 9 }
        );
        assert_eq!(
            parse(&encode_ack(3, AckStatus::Failed, "link down"), 0, 0).unwrap(),
            Message::Ack {
                seq: 3,
                status: AckStatus::Failed,
                message: "link down".into()
            }
        );
    }

    #[test]
    fn each_bad_field_is_named_with_its_limit() {
        let (h, _) = offer(1, "x", &[4]);
        let field = |h: &[u8], len: usize, cap: u64| parse(h, len, cap).unwrap_err().field;
        assert_eq!(field(&h[..5], 16, 1 << 20), "header");
        let mut bad = h.clone();
        bad[0] = b'X';
        assert_eq!(field(&bad, 16, 1 << 20), "magic");
        let mut bad = h.clone();
        bad[4] = 2;
        assert_eq!(field(&bad, 16, 1 << 20), "version");
        let mut bad = h.clone();
        bad[5] = 9;
        assert_eq!(field(&bad, 16, 1 << 20), "kind");
        let mut bad = h.clone();
        bad[PREFIX + 16] = 200;
        assert_eq!(field(&bad, 16, 1 << 20), "dtype");
        let mut bad = h.clone();
        bad[PREFIX + 8] = 17; // nbytes 17 for f32 x [4]
        let e = parse(&bad, 17, 1 << 20).unwrap_err();
        assert_eq!(e.field, "nbytes");
        assert!(e.detail.contains("is 16 bytes"), "{e}");
        let e = parse(&h, 16, 8).unwrap_err();
        assert_eq!(e.field, "nbytes");
        assert!(e.detail.contains("capacity of 8 bytes"), "{e}");
        let e = parse(&h, 15, 1 << 20).unwrap_err();
        assert_eq!(e.field, "length");
        let mut bad = h.clone();
        bad[PREFIX + 17] = 9;
        assert_eq!(field(&bad, 16, 1 << 20), "shape");
        let mut bad = h.clone();
        bad[PREFIX + 18] = 0;
        assert_eq!(field(&bad, 16, 1 << 20), "id");
        let mut bad = h.clone();
        bad.push(b'z'); // a trailing byte
        assert_eq!(field(&bad, 16, 1 << 20), "header");
        let mut bad = h.clone();
        *bad.last_mut().unwrap() = 0xff;
        assert_eq!(field(&bad, 16, 1 << 20), "id");
        let e = parse(&h, 15, 1 << 20).unwrap_err();
        assert!(
            e.to_string()
                .contains("offer #1 of tensor \"x\" refused: field length"),
            "{e}"
        );
    }

    #[test]
    fn an_offer_exactly_at_the_capacity_is_accepted() {
        let (h, _) = offer(0, "x", &[4]);
        assert!(parse(&h, 16, 16).is_ok());
        assert!(parse(&h, 16, 15).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x9e3779b97f4a7c15u64;
        for n in 0..20_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut buf: Vec<u8> = (0..(n % 120)).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            if n % 2 == 0 && buf.len() >= 8 {
                buf[..8].copy_from_slice(&prefix(1 + (n as u8 % 3)));
            }
            let _ = parse(&buf, (x % 64) as usize, 1 << 20);
        }
    }

    #[test]
    fn a_long_ack_message_is_cut_at_a_char_boundary() {
        let text = "é".repeat(MAX_ACK_MESSAGE);
        match parse(&encode_ack(1, AckStatus::Refused, &text), 0, 0).unwrap() {
            Message::Ack { message, .. } => {
                assert!(message.len() <= MAX_ACK_MESSAGE && !message.is_empty())
            }
            m => panic!("{m:?}"),
        }
    }
}
