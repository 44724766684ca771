//! The Python binding's argument conversion (`shmstream::binding`, which
//! `shmstream-py` calls on every timeout, dtype name, shape and size a
//! Python caller passes), then those arguments on a small in-process
//! stream the way the binding uses them: `register(id, nbytes)` +
//! `commit(dtype, shape)`, `put` of an array of `nbytes` bytes (its size
//! checked against the dtype and shape first), a wait of `timeout` cut in
//! slices; after every refusal the stream still carries an item.
//!
//! An input is decoded with `arbitrary` into [`Args`]; an input that
//! starts with `#text\n` is `key=value` lines instead (the readable seeds,
//! see [`Args::parse`]). [`check`] panics when an invariant breaks.
//!
//! This file is also compiled as a module of the stable test that replays
//! the corpora (`ipc-demo/tests/fuzz_corpus.rs`): the libFuzzer parts are
//! left out under `cfg(test)`.
#![cfg_attr(not(test), no_main)]

use arbitrary::{Arbitrary, Unstructured};
use shmstream::binding::{check_nbytes, tensor_meta, timeout, wait_slice, MAX_TIMEOUT_SECS};
use shmstream::policy::Fixed;
use shmstream::{DType, StreamConfig, StreamError, StreamId, TensorMeta, MAX_DIMS, MAX_ID_LEN};
use std::time::{Duration, Instant};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

/// The marker of a text input.
const TEXT: &[u8] = b"#text\n";

/// A timeout in seconds as Python may pass it.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Secs {
    Nan,
    Inf,
    NegInf,
    NegZero,
    /// Around the limit: `MAX_TIMEOUT_SECS * (1 + k / 2^20)`, k signed.
    NearMax(i16),
    /// 10^e for e in -30..=300 (huge, tiny).
    Power(i16),
    /// Milliseconds.
    Millis(u16),
    Any(f64),
}

impl Secs {
    fn value(self) -> f64 {
        match self {
            Secs::Nan => f64::NAN,
            Secs::Inf => f64::INFINITY,
            Secs::NegInf => f64::NEG_INFINITY,
            Secs::NegZero => -0.0,
            Secs::NearMax(k) => MAX_TIMEOUT_SECS * (1.0 + f64::from(k) / f64::from(1 << 20)),
            Secs::Power(e) => 10f64.powi(i32::from(e).rem_euclid(331) - 30),
            Secs::Millis(ms) => f64::from(ms) / 1000.0,
            Secs::Any(t) => t,
        }
    }
}

/// A dimension: small, a power of two, or any u64.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dim {
    Small(u8),
    Pow2(u8),
    Any(u64),
}

impl Dim {
    fn value(self) -> u64 {
        match self {
            Dim::Small(d) => u64::from(d % 9),
            Dim::Pow2(e) => 1u64 << (e % 64),
            Dim::Any(d) => d,
        }
    }
}

/// A dtype name: one of the list, or any string.
#[derive(Arbitrary, Debug, Clone)]
enum DTypeName {
    Known(u8),
    Any(String),
}

/// A tensor id: empty, long (past the limit or not), or any string.
#[derive(Arbitrary, Debug, Clone)]
enum Id {
    Empty,
    Repeat(u8),
    Any(String),
}

/// Everything a Python call of the binding may hand it.
#[derive(Arbitrary, Debug, Clone)]
pub struct Args {
    timeout: Option<Secs>,
    /// The slice of a sliced wait, in ns (the binding's is 50 ms).
    slice_nanos: Option<u64>,
    dtype: DTypeName,
    shape: Vec<Dim>,
    /// `register`'s `nbytes` (None: the stream's item size), and the size
    /// of the array handed to `put`.
    nbytes: Option<u64>,
    id: Id,
    /// The small in-process stream: 2^(k % 5) items, item size.
    capacity_log2: u8,
    item_bytes: u16,
}

/// The parsed arguments, as plain values.
#[derive(Debug, Clone)]
pub struct Plain {
    timeout: Option<f64>,
    slice: Duration,
    dtype: String,
    shape: Vec<u64>,
    nbytes: Option<u64>,
    id: String,
    capacity: u64,
    item_bytes: u64,
}

impl Args {
    fn plain(&self) -> Plain {
        Plain {
            timeout: self.timeout.map(Secs::value),
            slice: Duration::from_nanos(self.slice_nanos.unwrap_or(50_000_000)),
            dtype: match &self.dtype {
                DTypeName::Known(k) => DType::ALL[usize::from(*k) % DType::ALL.len()]
                    .name()
                    .to_string(),
                DTypeName::Any(s) => s.clone(),
            },
            shape: self.shape.iter().map(|d| d.value()).collect(),
            nbytes: self.nbytes,
            id: match &self.id {
                Id::Empty => String::new(),
                Id::Repeat(n) => "x".repeat(usize::from(*n)),
                Id::Any(s) => s.clone(),
            },
            capacity: 1 << (self.capacity_log2 % 5),
            item_bytes: u64::from(self.item_bytes),
        }
    }

    /// The text form: `key=value` lines, any of `timeout` (a float, `nan`,
    /// `inf`, `-inf`; absent: None), `slice_ns`, `dtype`, `shape`
    /// (comma-separated u64s, empty for a scalar), `nbytes`, `id`,
    /// `capacity` (a power of two up to 16), `item_bytes`.
    fn parse(text: &str) -> Option<Plain> {
        let mut p = Plain {
            timeout: None,
            slice: Duration::from_millis(50),
            dtype: "u8".into(),
            shape: Vec::new(),
            nbytes: None,
            id: "t".into(),
            capacity: 4,
            item_bytes: 64,
        };
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=')?;
            match key {
                "timeout" => p.timeout = Some(value.parse().ok()?),
                "slice_ns" => p.slice = Duration::from_nanos(value.parse().ok()?),
                "dtype" => p.dtype = value.into(),
                "shape" if value.is_empty() => p.shape.clear(),
                "shape" => {
                    p.shape = value
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .ok()?
                }
                "nbytes" => p.nbytes = Some(value.parse().ok()?),
                "id" => p.id = value.into(),
                "capacity" => p.capacity = value.parse::<u64>().ok()?.clamp(1, 16),
                "item_bytes" => p.item_bytes = value.parse::<u64>().ok()?.min(u64::from(u16::MAX)),
                _ => return None,
            }
        }
        Some(p)
    }
}

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let plain = match data.strip_prefix(TEXT) {
        Some(text) => match std::str::from_utf8(text).ok().and_then(Args::parse) {
            Some(p) => p,
            None => return,
        },
        None => match Args::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(a) => a.plain(),
            Err(_) => return,
        },
    };
    check_plain(&plain);
}

fn check_plain(p: &Plain) {
    // The timeout: refused exactly when NaN or negative; for ever when
    // None or past the limit; else that long (within a nanosecond), and a
    // deadline from now is representable.
    let t = timeout(p.timeout);
    match p.timeout {
        None => assert_eq!(t, Ok(None)),
        Some(s) if s.is_nan() || s < 0.0 => {
            let e = t.expect_err("NaN or negative timeout accepted");
            assert!(e.to_string().starts_with("timeout "), "{e}");
        }
        Some(s) if s > MAX_TIMEOUT_SECS => assert_eq!(t, Ok(None), "{s}"),
        Some(s) => {
            let d = t.unwrap().expect("a finite timeout waits for ever");
            assert!(
                (d.as_secs_f64() - s).abs() <= 1e-9 * s.max(1.0),
                "{s} -> {d:?}"
            );
            assert!(Instant::now().checked_add(d).is_some(), "{d:?}");
        }
    }
    // The slice of a sliced wait: within the slice and the timeout, not
    // zero unless the timeout is, and whole slices add up to the timeout
    // (to a nanosecond per slice).
    let t = t.unwrap_or(None);
    let slice = wait_slice(t, p.slice);
    let floor = p.slice.max(Duration::from_nanos(1));
    assert!(slice <= floor, "{t:?} in {:?}: {slice:?}", p.slice);
    match t {
        None => assert_eq!(slice, floor),
        Some(t) => {
            assert!(slice <= t && (slice > Duration::ZERO || t.is_zero()));
            if t > floor {
                let n = t.as_nanos().div_ceil(floor.as_nanos());
                let total = slice.as_nanos() * n;
                assert!(
                    total <= t.as_nanos() && t.as_nanos() - total < n,
                    "{t:?}: {n} x {slice:?}"
                );
            }
        }
    }

    // The dtype and shape: accepted exactly when the name is a dtype's,
    // the dimensions at most MAX_DIMS, and every partial byte count fits.
    let meta = tensor_meta(&p.dtype, &p.shape);
    let known = DType::ALL.iter().find(|d| d.name() == p.dtype);
    match (&meta, known) {
        (Err(StreamError::UnknownDType { .. }), None) => {}
        (_, None) => panic!("dtype {:?} accepted: {meta:?}", p.dtype),
        (Ok(m), Some(d)) => {
            assert_eq!((m.dtype(), m.shape()), (*d, &p.shape[..]));
            let exact = p
                .shape
                .iter()
                .fold(d.size() as u128, |a, &x| a * u128::from(x));
            assert_eq!(u128::from(m.nbytes()), exact);
        }
        (Err(StreamError::TooManyDims { ndim, max }), Some(_)) => {
            assert!(*ndim == p.shape.len() && *max == MAX_DIMS && *ndim > MAX_DIMS)
        }
        (Err(StreamError::ShapeOverflow), Some(d)) => {
            assert!(p.shape.len() <= MAX_DIMS);
            // Some partial product overflows (a later 0 does not save it).
            let mut acc = Some(d.size() as u64);
            for &x in &p.shape {
                acc = acc.and_then(|a| a.checked_mul(x));
            }
            assert!(acc.is_none(), "{:?} {:?} refused", p.dtype, p.shape);
        }
        (Err(e), Some(_)) => panic!("{:?} {:?}: {e}", p.dtype, p.shape),
    }
    // An array's byte count against the metadata.
    if let (Ok(m), Some(n)) = (&meta, p.nbytes) {
        match check_nbytes(m, n) {
            Ok(given) => assert!(given == n && n == m.nbytes()),
            Err(StreamError::SizeMismatch { given, expected }) => {
                assert!(given == n && expected == m.nbytes() && n != expected)
            }
            Err(e) => panic!("{e}"),
        }
    }

    on_a_stream(p, meta.ok());
}

/// The arguments on a small in-process stream, the way the binding uses
/// them (no waits: a full ring is an error at once); the stream carries
/// an item afterwards.
fn on_a_stream(p: &Plain, meta: Option<TensorMeta>) {
    let cfg = StreamConfig::new(StreamId {
        request_id: "py-args".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(p.capacity)
    .with_item_bytes(p.item_bytes)
    .with_timeout(Some(Duration::ZERO));
    let Ok((producer, mut buffer)) =
        shmstream::in_process_buffer::<()>(&cfg, Fixed::new(1).unwrap())
    else {
        // Item size 0 (or past the payload): refused as a configuration.
        return;
    };
    let id_ok = !p.id.is_empty() && p.id.len() <= MAX_ID_LEN;
    let (mut published, mut drained) = (0usize, 0usize);

    // `Producer.register(id, nbytes)` then `slot.commit(dtype, shape)`.
    let reserve = p.nbytes.unwrap_or(producer.item_bytes());
    match producer.register_sized_timeout(&p.id, reserve, Some(Duration::ZERO)) {
        Ok(slot) => {
            assert!(id_ok, "id {:?} accepted", p.id);
            assert!(slot.len() >= reserve && reserve <= producer.payload_bytes());
            // A refused commit hands the slot back (the binding keeps it
            // for another try), as does a dtype or shape refused before
            // it: committed then as the bytes reserved (an abandoned slot
            // would end the stream for the consumer).
            let slot = match meta {
                Some(m) if m.nbytes() <= slot.len() => {
                    slot.commit(m).unwrap();
                    None
                }
                Some(m) => match slot.commit(m) {
                    Err(refused) => {
                        assert!(matches!(refused.error, StreamError::TooLarge { .. }));
                        Some(refused.slot)
                    }
                    Ok(()) => panic!("{m:?} committed into {reserve} bytes"),
                },
                None => Some(slot),
            };
            if let Some(slot) = slot {
                let len = slot.len();
                slot.commit(TensorMeta::new(DType::U8, &[len]).unwrap())
                    .unwrap_or_else(|r| panic!("{}", r.error));
            }
            published += 1;
        }
        Err(StreamError::BadId { .. }) => assert!(!id_ok, "id {:?} refused", p.id),
        // The ring is empty: only a reservation past the payload fails.
        Err(StreamError::ExceedsPayload {
            nbytes,
            payload_bytes,
        }) => assert!(nbytes == reserve && reserve > payload_bytes && id_ok),
        Err(e) => panic!("register {:?} of {reserve} bytes: {e}", p.id),
    }
    drained += drain(&mut buffer);

    // `Producer.put(id, array)` of `nbytes` bytes (the `_send_raw` path):
    // sized first, registered with exactly that many bytes.
    if let (Some(m), Some(n)) = (meta, p.nbytes) {
        if check_nbytes(&m, n).is_ok() && n <= 1 << 20 {
            let id = format!("{}-put", p.id.chars().take(8).collect::<String>());
            match producer.register_sized_timeout(&id, n, Some(Duration::ZERO)) {
                Ok(slot) => {
                    slot.write(m, &vec![0x5a; n as usize]).unwrap();
                    published += 1;
                }
                Err(StreamError::BadId { .. }) => assert!(id.len() > MAX_ID_LEN),
                Err(StreamError::ExceedsPayload { payload_bytes, .. }) => {
                    assert!(n > payload_bytes)
                }
                Err(e) => panic!("put of {n} bytes: {e}"),
            }
        }
    }
    drained += drain(&mut buffer);

    // Still usable: an item of the default size passes.
    let last = TensorMeta::new(DType::U8, &[producer.item_bytes()]).unwrap();
    let bytes = vec![7u8; producer.item_bytes() as usize];
    producer
        .register("after")
        .unwrap_or_else(|e| panic!("the stream refuses a plain item after {p:?}: {e}"))
        .write(last, &bytes)
        .unwrap();
    producer.signal_done();
    let mut seen = 0;
    loop {
        match buffer.next_chunk() {
            Ok(Some(chunk)) => seen += chunk.len(),
            Ok(None) => break,
            Err(e) => panic!("after {p:?}: {e}"),
        }
    }
    assert_eq!(seen, 1 + published - drained, "{p:?}");
}

/// Pops (and releases) whatever chunks are ready; how many items.
fn drain(buffer: &mut shmstream::StreamBuffer) -> usize {
    let mut n = 0;
    loop {
        match buffer.pop_chunk() {
            Ok(chunk) => n += chunk.len(),
            Err(StreamError::NotReady) => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_py_args_text_seed_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/py_args");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Some(text) = data.strip_prefix(TEXT) {
                let text = std::str::from_utf8(text).unwrap();
                assert!(
                    Args::parse(text).is_some(),
                    "{} does not parse",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn a_huge_python_timeout_waits_for_ever_and_a_deadline_is_representable() {
        // Found while writing the target: `Duration::from_secs_f64(1e30)`
        // panicked in the binding (a PanicException in Python), and a
        // timeout of 1e19 s overflowed `Instant::now() + t`.
        for s in [1e30, 1e19, f64::MAX, MAX_TIMEOUT_SECS * 1.000_001] {
            assert_eq!(timeout(Some(s)), Ok(None), "{s}");
        }
        let d = timeout(Some(MAX_TIMEOUT_SECS)).unwrap().unwrap();
        assert_eq!(d, Duration::from_secs(1_000_000_000));
        assert!(Instant::now().checked_add(d).is_some());
        check(b"#text\ntimeout=1e30\n");
    }
}
