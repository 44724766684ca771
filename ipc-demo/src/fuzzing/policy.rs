//! The `policy` target: policy names, structured or as text, through
//! `Policy::from_str` ([`policy_name`]; the invariants are in the docs of
//! `fuzzing`).

use super::text;
use arbitrary::{Arbitrary, Unstructured};
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::{DType, StreamConfig, StreamId, TensorMeta};
use std::str::FromStr;
use std::time::Duration;

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
    pub(super) fn render(&self) -> String {
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
