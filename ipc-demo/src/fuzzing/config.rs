//! The `config` target: stream configurations and the tools' shape,
//! size and seconds parsers ([`stream_config`]; the invariants are in the
//! docs of `fuzzing`).

use super::text;
use crate::args::{seconds, ItemArgs, Shape, SizeArgs};
use crate::sizes::{fmt_bytes, parse_bytes, ItemPlan, SizeMix, MAX_ITEM_BYTES};
use arbitrary::{Arbitrary, Unstructured};
use shmstream::policy::Policy;
use shmstream::{
    DType, StreamConfig, StreamId, TensorMeta, MAX_CAPACITY, MAX_DIMS, MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES, MAX_PREFIX_LEN,
};
use std::time::Duration;

/// A structured configuration: the identity, prefix, sizes, and the
/// tools' own item arguments.
#[derive(Arbitrary, Debug)]
pub struct ConfigInput {
    request_id: NameInput,
    edge_name: NameInput,
    from_partition: NameInput,
    prefix: NameInput,
    capacity: SizeInput,
    item_bytes: SizeInput,
    payload_bytes: Option<SizeInput>,
    shape: String,
    sizes: String,
    dtype: u8,
    seconds: String,
}

#[derive(Arbitrary, Debug)]
enum NameInput {
    Typical(u8),
    Long(u8, char),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum SizeInput {
    Power(u8),
    Multiple(u8, u16),
    Any(u64),
}

impl NameInput {
    fn render(&self) -> String {
        match self {
            NameInput::Typical(n) => format!("n{}", n % 4),
            NameInput::Long(n, c) => std::iter::repeat_n(*c, *n as usize).collect(),
            NameInput::Any(s) => s.clone(),
        }
    }
}

impl SizeInput {
    fn render(&self) -> u64 {
        match self {
            SizeInput::Power(p) => 1u64 << (p % 64),
            SizeInput::Multiple(p, m) => (1u64 << (p % 32)) * u64::from(*m),
            SizeInput::Any(n) => *n,
        }
    }
}

/// The text form of a configuration.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TextConfig {
    request_id: String,
    edge_name: String,
    from_partition: String,
    #[serde(default = "default_prefix")]
    prefix: String,
    capacity: u64,
    item_bytes: u64,
    #[serde(default)]
    payload_bytes: Option<u64>,
    #[serde(default)]
    shape: String,
    #[serde(default)]
    sizes: String,
    #[serde(default)]
    dtype: u8,
    #[serde(default)]
    seconds: String,
}

fn default_prefix() -> String {
    shmstream::DEFAULT_PREFIX.to_string()
}

/// The payload size a configuration asks for: as given, or the
/// documented default (`capacity x item_bytes` rounded up to a power of
/// two, at least a page).
fn payload_of(capacity: u64, item_bytes: u64, payload_bytes: Option<u64>) -> u64 {
    payload_bytes.unwrap_or_else(|| {
        capacity
            .saturating_mul(item_bytes)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .max(4096)
    })
}

/// What the documentation promises: these configurations are accepted.
fn documented_valid(
    id: &StreamId,
    prefix: &str,
    capacity: u64,
    item_bytes: u64,
    payload: u64,
) -> bool {
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.contains('/') && !s.contains('\0');
    let prefix_ok = prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let ring_ok = capacity.is_power_of_two()
        && capacity <= MAX_CAPACITY
        && payload.is_power_of_two()
        && (4096..=MAX_PAYLOAD_BYTES).contains(&payload)
        && item_bytes <= payload;
    name_ok(&id.request_id)
        && name_ok(&id.edge_name)
        && name_ok(&id.from_partition)
        && prefix_ok
        && ring_ok
}

/// Validates a configuration (see the module docs).
///
/// # Panics
///
/// When validation disagrees with the documented rules, a segment name is
/// not a valid POSIX name, or an accepted stream does not work.
pub fn stream_config(data: &[u8]) {
    let input = match text(data) {
        Some(rest) => match serde_json::from_slice::<TextConfig>(rest) {
            Ok(c) => c,
            Err(_) => return,
        },
        None => match ConfigInput::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(c) => TextConfig {
                request_id: c.request_id.render(),
                edge_name: c.edge_name.render(),
                from_partition: c.from_partition.render(),
                prefix: match c.prefix {
                    NameInput::Typical(_) => default_prefix(),
                    other => other.render(),
                },
                capacity: c.capacity.render(),
                item_bytes: c.item_bytes.render(),
                payload_bytes: c.payload_bytes.map(|p| p.render()),
                shape: c.shape,
                sizes: c.sizes,
                dtype: c.dtype,
                seconds: c.seconds,
            },
            Err(_) => return,
        },
    };
    let id = StreamId {
        request_id: input.request_id.clone(),
        edge_name: input.edge_name.clone(),
        from_partition: input.from_partition.clone(),
    };
    let payload = payload_of(input.capacity, input.item_bytes, input.payload_bytes);
    let expected = documented_valid(
        &id,
        &input.prefix,
        input.capacity,
        input.item_bytes,
        payload,
    );
    let mut config = StreamConfig::new(id)
        .with_prefix(&input.prefix)
        .with_capacity(input.capacity)
        .with_item_bytes(input.item_bytes)
        .with_timeout(Some(Duration::ZERO));
    if let Some(p) = input.payload_bytes {
        config = config.with_payload_bytes(p);
    }
    assert_eq!(
        config.payload_bytes(),
        payload,
        "not the documented payload size"
    );
    match config.segment_name() {
        Ok(name) => {
            assert!(
                expected,
                "accepted against the documented rules: {config:?}"
            );
            assert!(name.len() <= 255, "segment name of {} bytes", name.len());
            assert!(name.starts_with(&format!("/{}", input.prefix)), "{name}");
            assert!(!name[1..].contains(['/', '\0']), "{name:?}");
            assert_eq!(config.segment_name().ok(), Some(name), "not deterministic");
            if payload <= 1 << 20 {
                small_stream(&config);
            }
        }
        Err(e) => {
            assert!(
                !expected,
                "refused ({e}) although documented valid: {config:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
    // The tools' own item arguments.
    if let Ok(shape) = input.shape.parse::<Shape>() {
        assert!(shape.0.len() <= MAX_DIMS && shape.0.iter().all(|&d| d >= 1));
        assert_eq!(shape.to_string().parse::<Shape>(), Ok(shape.clone()));
        let items = ItemArgs {
            items: 1,
            shape,
            dtype: DType::ALL[input.dtype as usize % DType::ALL.len()],
            sizes: SizeArgs {
                sizes: None,
                seed: 1,
            },
            rate: None,
        };
        if let Ok(ItemPlan::Shape(meta)) = items.plan() {
            assert!(meta.nbytes() <= MAX_ITEM_BYTES);
        }
    }
    size_mix(&input.sizes);
    let _ = seconds(&input.seconds);
}

/// The `--sizes` parser: a parsed mix prints back to itself, keeps every
/// size within the limit, gives each item a size of the mix, and asks
/// for at least its largest item's bytes.
fn size_mix(text: &str) {
    if let Ok(n) = parse_bytes(text) {
        assert_eq!(parse_bytes(&fmt_bytes(n)), Ok(n), "{text:?}");
    }
    let Ok(mix) = text.parse::<SizeMix>() else {
        return;
    };
    let printed = mix.to_string();
    assert_eq!(
        printed.parse::<SizeMix>().as_ref(),
        Ok(&mix),
        "{text:?} -> {printed:?}"
    );
    assert!(mix.largest() <= MAX_ITEM_BYTES);
    for seq in [0, 1, 2, 1000, u64::MAX] {
        let n = mix.size(seq, seq ^ 7);
        match &mix {
            SizeMix::Cycle(sizes) => assert!(sizes.contains(&n)),
            SizeMix::Random { min, max } => assert!((*min..=*max).contains(&n), "{n} of {printed}"),
        }
    }
    assert!(mix.window_bytes(1) >= mix.largest());
    assert!(mix.window_bytes(7) >= mix.window_bytes(6));
}

/// An accepted configuration makes a stream of exactly its size; an item
/// filling the whole payload, then one of the default size, then one
/// filling the payload again go through it. (The last one is the fuzz
/// finding fixed in e845b1c: after an item that left the head unaligned,
/// a payload-sized one never fit an empty ring; its regression test,
/// `a_payload_sized_item_fits_an_empty_ring_after_a_small_one` in
/// `tests/fuzz_corpus.rs`, runs.)
fn small_stream(config: &StreamConfig) {
    let policy: Policy = "fixed:size=1".parse().expect("a valid policy");
    let (producer, mut buffer) = shmstream::in_process_buffer::<()>(config, policy)
        .unwrap_or_else(|e| panic!("a valid configuration is refused: {e}"));
    assert_eq!(producer.capacity(), config.capacity());
    assert_eq!(producer.item_bytes(), config.item_bytes());
    assert_eq!(producer.payload_bytes(), config.payload_bytes());
    for (id, n) in [
        ("y", config.payload_bytes()),
        ("x", config.item_bytes()),
        ("z", config.payload_bytes()),
    ] {
        let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let meta = TensorMeta::new(DType::U8, &[n]).expect("a valid shape");
        producer
            .pre_read_register_sized(id, n)
            .unwrap_or_else(|e| panic!("an empty ring has room for {n} bytes: {e}"));
        producer
            .put(id, meta, &bytes)
            .expect("an item of its reserved size fits");
        let chunk = buffer
            .pop_chunk()
            .expect("one item of a fixed:size=1 stream");
        let item = chunk.items().next().expect("one item");
        assert_eq!(item.id(), id);
        assert_eq!(item.bytes(), &bytes[..]);
    }
}
