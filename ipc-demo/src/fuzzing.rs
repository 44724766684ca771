//! In-process entry points for the fuzz targets (`fuzz/`) and for the test
//! that replays their corpora (`tests/fuzz_corpus.rs`): every input surface
//! a person or a peer hands the tools, run on arbitrary bytes.
//!
//! Each entry point takes raw bytes. Input that starts with [`TEXT`] is
//! read as text after it (the readable seeds: a trace, a policy name, a
//! JSON configuration); any other input is decoded with `arbitrary` into a
//! structured value (events with dtypes, shapes and data; policy kinds with
//! keys and values; names and sizes), which is then written out as the
//! text the tools read. Either way the text goes through the tools' own
//! code, and each entry point panics when an invariant breaks:
//!
//! - [`replay_trace`]: the trace interpreter of `ipc-demo replay` on an
//!   in-process stream. Any trace ends in `Ok` or an error naming its line
//!   (never a panic or an allocation past the stated limits); the printed
//!   chunks are consistent (indices 0, 1, 2..., offsets that never go
//!   back, context within the window, one list of values per item,
//!   nothing after the final chunk).
//! - [`policy_name`]: `Policy::from_str`. A parsed policy prints as a name
//!   that parses back to the same policy and prints the same; its windows
//!   stay within `max_window` as it advances; a stream cut by it ends.
//! - [`stream_config`]: `StreamConfig` names and sizes (item capacity,
//!   default item size, payload size or its default). `segment_name`
//!   accepts exactly the documented configurations and gives a valid POSIX
//!   name; an accepted small configuration makes a working in-process
//!   stream of exactly that size, through which an item of the default
//!   size and then one filling the whole payload pass. Also the tools' own
//!   `--shape`, `--sizes` (size suffixes, cycles, random ranges) and
//!   seconds parsers.
//! - [`wire_header`]: the offer header decoder of `--source ucx`
//!   ([`shmstream_net::wire::parse`]). A decoded offer is within the
//!   limits and encodes back to the same bytes; a refusal names a field.

use crate::args::{seconds, ItemArgs, Shape, SizeArgs};
use crate::replay::{replay_in_process, ReplaySetup};
use crate::sizes::{fmt_bytes, parse_bytes, ItemPlan, SizeMix, MAX_ITEM_BYTES};
use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Map, Value};
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::{
    DType, StreamConfig, StreamId, TensorMeta, MAX_CAPACITY, MAX_DIMS, MAX_ID_LEN, MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES, MAX_PREFIX_LEN,
};
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

/// The marker of a text input.
pub const TEXT: &[u8] = b"#text\n";

/// The largest payload ring a fuzz input may ask for (the stated limit of
/// a replay is larger; fuzzing keeps every run small and fast).
const FUZZ_RING_BYTES: u64 = 16 << 20;

/// The text after [`TEXT`], or `None` for a structured input.
fn text(data: &[u8]) -> Option<&[u8]> {
    data.strip_prefix(TEXT)
}

// ---------------------------------------------------------------------------
// Replay traces

/// A structured trace: settings and lines.
#[derive(Arbitrary, Debug)]
pub struct TraceInput {
    policy: PolicyInput,
    capacity_log2: u8,
    item_factor: u8,
    payload_log2: Option<u8>,
    values: bool,
    lines: Vec<LineInput>,
}

#[derive(Arbitrary, Debug)]
enum LineInput {
    Register {
        id: IdInput,
        nbytes: Option<NbytesInput>,
    },
    Put {
        id: IdInput,
        dtype: Option<DTypeInput>,
        shape: Option<Vec<DimInput>>,
        data: Option<Vec<NumInput>>,
    },
    Done,
    Pop,
    Poll {
        max: Option<MaxInput>,
    },
    Blank,
    Raw(String),
    UnknownKey {
        op: OpInput,
        key: String,
        value: NumInput,
    },
}

#[derive(Arbitrary, Debug)]
enum OpInput {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum IdInput {
    Small(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum NbytesInput {
    Small(u16),
    Power(u8),
    Any(u64),
}

impl NbytesInput {
    fn render(&self) -> u64 {
        match self {
            NbytesInput::Small(n) => u64::from(*n),
            NbytesInput::Power(p) => 1u64 << (p % 64),
            NbytesInput::Any(n) => *n,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum DTypeInput {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum DimInput {
    Small(u8),
    Power(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum NumInput {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Null,
}

#[derive(Arbitrary, Debug)]
enum MaxInput {
    Small(u8),
    Any(u64),
}

impl IdInput {
    fn render(&self) -> String {
        match self {
            IdInput::Small(n) => format!("t{}", n % 16),
            IdInput::Any(s) => s.clone(),
        }
    }
}

impl NumInput {
    fn render(&self) -> Value {
        match self {
            NumInput::Int(i) => json!(i),
            NumInput::UInt(u) => json!(u),
            NumInput::Float(f) => json!(f),
            NumInput::Bool(b) => json!(b),
            NumInput::Str(s) => json!(s),
            NumInput::Null => Value::Null,
        }
    }
}

const OPS: [&str; 5] = ["register", "put", "done", "pop", "poll"];

impl LineInput {
    fn render(&self) -> String {
        let mut m = Map::new();
        match self {
            LineInput::Register { id, nbytes } => {
                m.insert("op".into(), json!("register"));
                m.insert("id".into(), json!(id.render()));
                if let Some(n) = nbytes {
                    m.insert("nbytes".into(), json!(n.render()));
                }
            }
            LineInput::Put {
                id,
                dtype,
                shape,
                data,
            } => {
                m.insert("op".into(), json!("put"));
                m.insert("id".into(), json!(id.render()));
                if let Some(dtype) = dtype {
                    let name = match dtype {
                        DTypeInput::Known(k) => {
                            DType::ALL[*k as usize % DType::ALL.len()].to_string()
                        }
                        DTypeInput::Any(s) => s.clone(),
                    };
                    m.insert("dtype".into(), json!(name));
                }
                if let Some(shape) = shape {
                    let dims: Vec<u64> = shape
                        .iter()
                        .map(|d| match d {
                            DimInput::Small(n) => u64::from(n % 8),
                            DimInput::Power(p) => 1u64 << (p % 64),
                            DimInput::Any(n) => *n,
                        })
                        .collect();
                    m.insert("shape".into(), json!(dims));
                }
                if let Some(data) = data {
                    let values: Vec<Value> = data.iter().map(NumInput::render).collect();
                    m.insert("data".into(), Value::Array(values));
                }
            }
            LineInput::Done => {
                m.insert("op".into(), json!("done"));
            }
            LineInput::Pop => {
                m.insert("op".into(), json!("pop"));
            }
            LineInput::Poll { max } => {
                m.insert("op".into(), json!("poll"));
                match max {
                    Some(MaxInput::Small(n)) => {
                        m.insert("max".into(), json!(n));
                    }
                    Some(MaxInput::Any(n)) => {
                        m.insert("max".into(), json!(n));
                    }
                    None => {}
                }
            }
            LineInput::Blank => return String::new(),
            // A line break would split it: the raw text stays one line.
            LineInput::Raw(s) => return s.replace('\n', " "),
            LineInput::UnknownKey { op, key, value } => {
                let op = match op {
                    OpInput::Known(k) => OPS[*k as usize % OPS.len()].to_string(),
                    OpInput::Any(s) => s.clone(),
                };
                m.insert("op".into(), json!(op));
                m.insert(key.clone(), value.render());
            }
        }
        Value::Object(m).to_string()
    }
}

/// The settings line of a text trace.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TextSettings {
    policy: String,
    capacity: u64,
    item_bytes: u64,
    #[serde(default)]
    payload_bytes: Option<u64>,
    #[serde(default)]
    values: bool,
}

/// Runs a trace through the replay interpreter (see the module docs).
///
/// Text form: [`TEXT`], a settings line
/// `{"policy":"fixed:size=1","capacity":8,"item_bytes":512,"payload_bytes":8192,"values":true}`
/// (`payload_bytes` optional),
/// then the trace's lines.
///
/// # Panics
///
/// When the interpreter breaks an invariant.
pub fn replay_trace(data: &[u8]) {
    let (setup, trace) = match text(data) {
        Some(rest) => {
            let (first, trace) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
                None => (rest, Vec::new()),
            };
            let Ok(settings) = serde_json::from_slice::<TextSettings>(first) else {
                return;
            };
            let Ok(policy) = settings.policy.parse::<Policy>() else {
                return;
            };
            let setup = ReplaySetup {
                policy,
                capacity: settings.capacity,
                item_bytes: settings.item_bytes,
                payload_bytes: settings.payload_bytes,
                values: settings.values,
            };
            (setup, trace)
        }
        None => {
            let Ok(input) = TraceInput::arbitrary_take_rest(Unstructured::new(data)) else {
                return;
            };
            let Ok(policy) = input.policy.render().parse::<Policy>() else {
                return;
            };
            // Mostly valid rings: payloads of 4 KiB to 64 KiB.
            let capacity = 1u64 << (input.capacity_log2 % 8);
            let item_bytes = (4096 / capacity).max(8) * u64::from(input.item_factor % 8 + 1);
            let payload_bytes = input.payload_log2.map(|p| 1u64 << (12 + p % 5));
            let mut trace = String::new();
            for line in &input.lines {
                trace += &line.render();
                trace.push('\n');
            }
            let setup = ReplaySetup {
                policy,
                capacity,
                item_bytes,
                payload_bytes,
                values: input.values,
            };
            (setup, trace.into_bytes())
        }
    };
    if setup.payload_bytes() > FUZZ_RING_BYTES {
        return;
    }
    let mut out = ChunkChecker::new();
    match replay_in_process(&setup, &trace[..], &mut out) {
        Ok(()) => {}
        Err(e) => {
            // A bad setting is named by its flag (`--item-bytes ...`).
            assert!(
                e.starts_with("line ")
                    || e.starts_with("cannot create the stream")
                    || e.starts_with("--"),
                "an error that names neither a line nor the setup: {e}"
            );
            assert!(!e.contains('\n'), "an error of more than one line: {e:?}");
        }
    }
    out.finish();
}

/// Checks the replay's output as it is written.
struct ChunkChecker {
    partial: Vec<u8>,
    next_index: u64,
    last_start: u64,
    final_seen: bool,
}

impl ChunkChecker {
    fn new() -> Self {
        ChunkChecker {
            partial: Vec::new(),
            next_index: 0,
            last_start: 0,
            final_seen: false,
        }
    }

    fn line(&mut self, line: &[u8]) {
        let v: Value = serde_json::from_slice(line).expect("every output line is JSON");
        if v == json!({"ready": false}) {
            return;
        }
        assert!(!self.final_seen, "a chunk after the final chunk: {v}");
        let index = v["chunk_index"].as_u64().expect("chunk_index");
        assert_eq!(index, self.next_index, "chunk indices go 0, 1, 2...: {v}");
        let start = v["start_offset"].as_u64().expect("start_offset");
        assert!(start >= self.last_start, "a chunk went back: {v}");
        let ids = v["ids"].as_array().expect("ids");
        let context = v["context_items"].as_u64().expect("context_items");
        assert!(
            context as usize <= ids.len(),
            "more context than items: {v}"
        );
        assert!(ids.iter().all(Value::is_string), "ids are strings: {v}");
        if let Some(values) = v.get("values") {
            assert_eq!(
                values.as_array().map(Vec::len),
                Some(ids.len()),
                "one list of values per item: {v}"
            );
        }
        self.final_seen = v["is_final"].as_bool().expect("is_final");
        self.next_index += 1;
        self.last_start = start;
    }

    fn finish(&mut self) {
        assert!(
            self.partial.is_empty(),
            "output ends in the middle of a line"
        );
    }
}

impl Write for ChunkChecker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.line(&line[..line.len() - 1]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Policy names

/// A structured policy name: a kind and its parameters.
#[derive(Arbitrary, Debug)]
pub struct PolicyInput {
    kind: KindInput,
    params: Vec<(KeyInput, Option<ValueInput>)>,
    spaces: bool,
}

#[derive(Arbitrary, Debug)]
enum KindInput {
    Known(u8),
    Any(String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum KeyInput {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum ValueInput {
    Small(u8),
    Any(u64),
    Float(f64),
    List(Vec<u8>),
    Any2(String),
}

const KINDS: [&str; 5] = ["fixed", "sliding", "left-context", "ramp", "scheduled"];
const KEYS: [&str; 12] = [
    "size", "continue", "window", "stride", "chunk", "context", "first", "growth", "max",
    "schedule", "prime", "",
];

impl PolicyInput {
    fn render(&self) -> String {
        let kind = match &self.kind {
            KindInput::Known(k) => KINDS[*k as usize % KINDS.len()].to_string(),
            KindInput::Any(s) => s.clone(),
            KindInput::Raw(s) => return s.clone(),
        };
        let sep = if self.spaces { " , " } else { "," };
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    KeyInput::Known(k) => KEYS[*k as usize % KEYS.len()].to_string(),
                    KeyInput::Any(s) => s.clone(),
                };
                match v {
                    None => key,
                    Some(v) => {
                        let value = match v {
                            ValueInput::Small(n) => n.to_string(),
                            ValueInput::Any(n) => n.to_string(),
                            ValueInput::Float(f) => f.to_string(),
                            ValueInput::List(l) => {
                                l.iter().map(u8::to_string).collect::<Vec<_>>().join("/")
                            }
                            ValueInput::Any2(s) => s.clone(),
                        };
                        format!("{key}={value}")
                    }
                }
            })
            .collect();
        format!("{kind}:{}", params.join(sep))
    }
}

/// The largest window for which a fuzzed policy also cuts a real stream.
const FUZZ_STREAM_WINDOW: usize = 256;

/// Parses a policy name (see the module docs).
///
/// # Panics
///
/// When a parsed policy does not print back to itself, or breaks its
/// window bound, or a stream cut by it does not end properly.
pub fn policy_name(data: &[u8]) {
    let name = match text(data) {
        Some(rest) => String::from_utf8_lossy(rest).into_owned(),
        None => match PolicyInput::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input.render(),
            Err(_) => return,
        },
    };
    let policy = match Policy::from_str(&name) {
        Ok(policy) => policy,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error for {name:?}");
            return;
        }
    };
    let printed = policy.to_string();
    let again: Policy = printed
        .parse()
        .unwrap_or_else(|e| panic!("{name:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, policy, "{name:?} -> {printed:?} is another policy");
    assert_eq!(again.to_string(), printed, "printing is not a fixed point");
    // As it advances, every window stays within max_window.
    let max = policy.max_window();
    let mut model = policy.clone();
    for _ in 0..64 {
        let (window, stride) = (model.window(), model.stride());
        assert!(
            window <= max,
            "{printed}: window {window} > max_window {max}"
        );
        model.register_chunk(stride.min(window));
    }
    if max <= FUZZ_STREAM_WINDOW {
        cut_a_stream(policy);
    }
}

/// Streams a few items through an in-process buffer cut by `policy` and
/// checks that it ends: one final chunk (or, for a continue-after-done
/// policy, an empty chunk once everything was shown).
fn cut_a_stream(policy: Policy) {
    let capacity = (policy.max_window().max(1) as u64)
        .next_power_of_two()
        .max(8);
    let config = StreamConfig::new(StreamId {
        request_id: "fuzz".into(),
        edge_name: "policy".into(),
        from_partition: "fuzz".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(64)
    .with_timeout(Some(Duration::ZERO));
    let continues = policy.continue_after_done();
    let (producer, mut buffer) = shmstream::in_process_buffer::<()>(&config, policy)
        .unwrap_or_else(|e| panic!("a policy that fits the ring is refused: {e}"));
    let meta = TensorMeta::new(DType::U8, &[1]).expect("a valid shape");
    let items = capacity.min(40);
    let mut popped = 0u64;
    let mut next = 0u64;
    let mut done = false;
    for _ in 0..10_000 {
        if next < items && (next - popped) < capacity {
            if let Ok(mut slot) = producer.try_register(&format!("i{next}")) {
                slot.payload_mut()[0] = next as u8;
                slot.commit(meta).expect("a 1-byte item fits");
                next += 1;
                continue;
            }
        }
        if next == items && !done {
            producer.signal_done();
            done = true;
        }
        if !buffer.has_chunk_ready().expect("a healthy stream") {
            assert!(!done, "the stream is done but no final chunk is ready");
            continue;
        }
        let chunk = buffer.pop_chunk().expect("a ready chunk");
        popped = popped.max(chunk.start_offset() + chunk.len() as u64);
        if chunk.is_final() || (continues && done && chunk.is_empty()) {
            assert_eq!(popped, items, "the stream ended before its last item");
            return;
        }
    }
    panic!("the stream did not end within 10000 steps");
}

// ---------------------------------------------------------------------------
// Stream configurations

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

// ---------------------------------------------------------------------------
// Offer headers of the UCX ingress

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
