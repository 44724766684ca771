//! The wire fuzz target's seeds (`fuzz/seeds/wire`), written by this
//! test so that they follow the format of `shmstream_net::wire`: offers of
//! several dtypes, a 0-d and an 8-d one, the longest id, one at the
//! capacity, an end, an acknowledgement, and one refusal per field. Each
//! decodes as its name says; the directory holds exactly these seeds.
//! After a change of the format, write them anew with
//! `SHMSTREAM_WRITE_WIRE_SEEDS=1 cargo test -p ipc-demo --test wire_seeds`.

use ipc_demo::fuzzing;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/wire")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// What a wire seed must decode as.
#[derive(Debug, PartialEq)]
enum Wire {
    Offer,
    End,
    Ack,
    Refused(&'static str),
}

fn decode_wire(data: &[u8]) -> Wire {
    use shmstream_net::wire::{parse, Message};
    let (len, capacity, header) = fuzzing::wire_frame(data);
    match parse(header, len, capacity) {
        Ok(Message::Offer(_)) => Wire::Offer,
        Ok(Message::End { .. }) => Wire::End,
        Ok(Message::Ack { .. }) => Wire::Ack,
        Err(e) => Wire::Refused(e.field),
    }
}

/// The wire seeds, in the current offer format: each is the two bytes of
/// [`fuzzing::wire_frame`] (payload length / 8, log2 of the capacity) and
/// one message header, with what it must decode as.
fn wire_seeds() -> Vec<(&'static str, Vec<u8>, Wire)> {
    use shmstream::{DType, TensorMeta};
    use shmstream_net::wire::{encode_ack, encode_end, encode_offer, AckStatus};
    let offer = |seq: u64, id: &str, dtype: DType, shape: &[u64], cap_log2: u8| {
        let meta = TensorMeta::new(dtype, shape).unwrap();
        let mut h = Vec::new();
        encode_offer(&mut h, seq, id, &meta);
        let len = meta.nbytes();
        assert!(
            len.is_multiple_of(8) && len / 8 <= 255,
            "{len} bytes cannot be framed"
        );
        let mut frame = vec![(len / 8) as u8, cap_log2];
        frame.extend_from_slice(&h);
        frame
    };
    let framed = |len8: u8, header: Vec<u8>| {
        let mut frame = vec![len8, 20];
        frame.extend_from_slice(&header);
        frame
    };
    let u8x16 = || offer(1, "x", DType::U8, &[16], 20);
    // Byte offsets in a frame: 2 for the frame, then the 8-byte prefix,
    // seq, nbytes, dtype, ndim, id length, reserved.
    const H: usize = 2;
    const NBYTES: usize = H + 16;
    const DTYPE: usize = H + 24;
    let patched = |at: usize, bytes: &[u8]| {
        let mut f = u8x16();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    let mut not_utf8 = u8x16();
    *not_utf8.last_mut().unwrap() = 0xff;
    let mut trailing = u8x16();
    trailing.push(b'z');
    let mut short_frame = u8x16();
    short_frame[0] = 1; // a payload of 8 bytes for an offer of 16
    let mut bad_status = encode_ack(2, AckStatus::Refused, "no");
    bad_status[16] = 7;
    let mut long_end = encode_end(3);
    long_end.push(0);
    vec![
        (
            "offer-f32-2x3",
            offer(0, "t0", DType::F32, &[2, 3], 20),
            Wire::Offer,
        ),
        ("offer-u8-16", u8x16(), Wire::Offer),
        (
            "offer-f64-scalar",
            offer(2, "s", DType::F64, &[], 20),
            Wire::Offer,
        ),
        (
            "offer-bool-8",
            offer(3, "b", DType::Bool, &[8], 20),
            Wire::Offer,
        ),
        (
            "offer-bf16-2x2",
            offer(4, "h", DType::BF16, &[2, 2], 20),
            Wire::Offer,
        ),
        (
            "offer-i64-3",
            offer(5, "i", DType::I64, &[3], 20),
            Wire::Offer,
        ),
        (
            "offer-u32-zero-elements",
            offer(6, "z", DType::U32, &[0, 5], 20),
            Wire::Offer,
        ),
        (
            "offer-u8-8d",
            offer(7, "d8", DType::U8, &[1, 2, 1, 2, 1, 2, 1, 1], 20),
            Wire::Offer,
        ),
        (
            "offer-longest-id",
            offer(8, &"é".repeat(32), DType::U16, &[4], 20),
            Wire::Offer,
        ),
        (
            "offer-at-capacity",
            offer(u64::MAX, "cap", DType::U8, &[1024], 10),
            Wire::Offer,
        ),
        ("end", framed(0, encode_end(42)), Wire::End),
        (
            "ack",
            framed(
                0,
                encode_ack(3, AckStatus::Refused, "field id: a duplicate"),
            ),
            Wire::Ack,
        ),
        (
            "refused-header-short",
            framed(2, b"SHMN\x01".to_vec()),
            Wire::Refused("header"),
        ),
        ("refused-magic", patched(H, b"SHMF"), Wire::Refused("magic")),
        (
            "refused-version",
            patched(H + 4, &[2]),
            Wire::Refused("version"),
        ),
        ("refused-kind", patched(H + 5, &[9]), Wire::Refused("kind")),
        (
            "refused-reserved-prefix",
            patched(H + 6, &[1]),
            Wire::Refused("header"),
        ),
        (
            "refused-reserved-offer",
            patched(H + 27, &[1]),
            Wire::Refused("header"),
        ),
        (
            "refused-dtype",
            patched(DTYPE, &[200]),
            Wire::Refused("dtype"),
        ),
        (
            "refused-shape-9d",
            patched(DTYPE + 1, &[9]),
            Wire::Refused("shape"),
        ),
        (
            "refused-id-empty",
            patched(DTYPE + 2, &[0]),
            Wire::Refused("id"),
        ),
        (
            "refused-id-65-bytes",
            patched(DTYPE + 2, &[65]),
            Wire::Refused("id"),
        ),
        ("refused-id-not-utf8", not_utf8, Wire::Refused("id")),
        (
            "refused-nbytes-mismatch",
            patched(NBYTES, &[17]),
            Wire::Refused("nbytes"),
        ),
        (
            "refused-nbytes-over-capacity",
            offer(9, "big", DType::U8, &[2040], 10),
            Wire::Refused("nbytes"),
        ),
        (
            "refused-shape-overflow",
            offer_overflow(),
            Wire::Refused("shape"),
        ),
        ("refused-length", short_frame, Wire::Refused("length")),
        ("refused-trailing-byte", trailing, Wire::Refused("header")),
        (
            "refused-ack-status",
            framed(0, bad_status),
            Wire::Refused("status"),
        ),
        (
            "refused-end-length",
            framed(0, long_end),
            Wire::Refused("header"),
        ),
    ]
}

/// An f32 offer of shape [2^62, 4]: its byte count overflows.
fn offer_overflow() -> Vec<u8> {
    let meta = shmstream::TensorMeta::new(shmstream::DType::U8, &[16, 1]).unwrap();
    let mut h = Vec::new();
    shmstream_net::wire::encode_offer(&mut h, 10, "o", &meta);
    h[24] = shmstream::DType::F32.code();
    h[28..36].copy_from_slice(&(1u64 << 62).to_le_bytes());
    h[36..44].copy_from_slice(&4u64.to_le_bytes());
    let mut frame = vec![2u8, 20];
    frame.extend_from_slice(&h);
    frame
}

#[test]
fn the_wire_seeds_are_offers_of_this_format_and_refusals_by_field() {
    // Run with SHMSTREAM_WRITE_WIRE_SEEDS=1 to write fuzz/seeds/wire anew
    // (after a change of the format in shmstream_net::wire).
    let dir = dir();
    let seeds = wire_seeds();
    for (name, data, want) in &seeds {
        assert_eq!(&decode_wire(data), want, "wire seed {name}");
    }
    if std::env::var_os("SHMSTREAM_WRITE_WIRE_SEEDS").is_some() {
        for file in files(&dir) {
            std::fs::remove_file(file).unwrap();
        }
        for (name, data, _) in &seeds {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    let on_disk: Vec<(String, Vec<u8>)> = files(&dir)
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(f).unwrap())
        })
        .collect();
    let mut want: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .map(|(n, d, _)| (n.to_string(), d))
        .collect();
    want.sort();
    assert!(
        on_disk == want,
        "fuzz/seeds/wire is not what this test writes: run it with SHMSTREAM_WRITE_WIRE_SEEDS=1"
    );
}
