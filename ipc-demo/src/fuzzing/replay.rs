//! The `replay` target: traces, structured or as text, through the
//! replay interpreter ([`replay_trace`]; the invariants are in the docs
//! of `fuzzing`).

use super::policy::PolicyInput;
use super::text;
use crate::replay::{replay_in_process, ReplaySetup};
use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Map, Value};
use shmstream::policy::Policy;
use shmstream::DType;
use std::io::Write;

/// The largest payload ring a fuzz input may ask for (the stated limit of
/// a replay is larger; fuzzing keeps every run small and fast).
const FUZZ_RING_BYTES: u64 = 16 << 20;

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
/// Text form: [`TEXT`](super::TEXT), a settings line
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
