//! `ipc-demo replay`: drives one stream through a real shared-memory
//! segment from a trace (SPEC section 6) and prints every chunk.
//!
//! The producer ([`Producer::create`]) and the consumer
//! ([`StreamBuffer::open`]) live in this one process, on one segment;
//! `register` is [`Producer::pre_read_register`] (with `nbytes`,
//! [`Producer::pre_read_register_sized`]), `put` is [`Producer::put`].
//! Waits never block: a full ring (its items or its payload bytes) is an
//! error that names the line.

use crate::args::{item_capacity, item_size, payload_size};
use crate::cli::Outcome;
use crate::trace::{
    self, decode, Event, DEFAULT_POLL_MAX, MAX_LINE_BYTES, MAX_POLL, MAX_TENSOR_BYTES,
};
use clap::Args;
use serde::ser::SerializeSeq;
use serde::Serialize;
use shmstream::policy::Policy;
use shmstream::{
    Producer, Resource, StreamBuffer, StreamChunk, StreamConfig, StreamError, StreamId, TensorMeta,
    DEFAULT_PREFIX,
};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The replay's command line.
#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    /// Chunk policy, e.g. sliding:window=4,stride=2
    #[arg(long, value_name = "POLICY")]
    pub policy: Policy,
    /// Items the ring holds (a power of two); registered items not yet popped must fit
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = item_capacity)]
    pub capacity: u64,
    /// Bytes a register without "nbytes" reserves: the largest tensor its put may carry (K, M, G: powers of 1024)
    #[arg(long, value_name = "BYTES", default_value = "4096", value_parser = item_size)]
    pub item_bytes: u64,
    /// Bytes of the payload ring, a power of two from 4K to 1G; the reservations not yet popped must fit [default: capacity x item-bytes rounded up to a power of two]
    #[arg(long, value_name = "BYTES", value_parser = payload_size)]
    pub payload_bytes: Option<u64>,
    /// Add each item's elements to the chunk lines, as a key "values" after "ids"
    #[arg(long)]
    pub values: bool,
    /// Prefix of the segment's name
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// The trace, one JSON event per line [default: standard input]
    #[arg(value_name = "TRACE")]
    pub trace: Option<PathBuf>,
}

/// The largest payload ring a replay makes, bytes (`--payload-bytes`, or
/// its default `--capacity` x `--item-bytes` rounded up).
pub const MAX_RING_BYTES: u64 = 1 << 30;

/// One printed chunk: exactly these keys, in this order.
#[derive(Serialize)]
struct ChunkLine<'a> {
    chunk_index: u64,
    start_offset: u64,
    is_final: bool,
    context_items: usize,
    ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<Values<'a, 'a>>,
}

/// The elements of every item of a chunk, decoded as they are written:
/// printing a large chunk allocates nothing per element.
struct Values<'c, 'b>(&'c StreamChunk<'b>);

impl Serialize for Values<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0.items() {
            seq.serialize_element(&Elements(item.dtype(), item.bytes()))?;
        }
        seq.end()
    }
}

struct Elements<'a>(shmstream::DType, &'a [u8]);

impl Serialize for Elements<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0.size();
        let mut seq = s.serialize_seq(Some(self.1.len() / n))?;
        for element in self.1.chunks_exact(n) {
            seq.serialize_element(&decode(self.0, element)[0])?;
        }
        seq.end()
    }
}

/// What the replay knows of each id: its registration index, the bytes
/// reserved for it, and whether it was put.
struct Ids {
    by_id: HashMap<String, Entry>,
    next: u64,
}

struct Entry {
    index: u64,
    reserved: u64,
    put: bool,
}

/// The settings of a replay, checked by [`ReplaySetup::check`].
#[derive(Clone, Debug)]
pub struct ReplaySetup {
    /// The chunk policy.
    pub policy: Policy,
    /// Items the ring holds.
    pub capacity: u64,
    /// Bytes a register without a size reserves.
    pub item_bytes: u64,
    /// Bytes of the payload ring (`None`: the library's default).
    pub payload_bytes: Option<u64>,
    /// Print each item's elements.
    pub values: bool,
}

impl ReplaySetup {
    /// Checks the payload ring against [`MAX_RING_BYTES`] and the default
    /// item size against it before anything is made (the library checks
    /// the rest of its layout).
    ///
    /// # Errors
    ///
    /// A sentence naming the arguments and the limit.
    pub fn check(&self) -> Result<(), String> {
        let payload = self.payload_bytes();
        if payload > MAX_RING_BYTES {
            return Err(match self.payload_bytes {
                Some(p) => format!(
                    "--payload-bytes {p} exceeds the replay's limit of {MAX_RING_BYTES} bytes for the payload ring"
                ),
                None => format!(
                    "--capacity {} x --item-bytes {} makes a payload ring past the replay's limit of {MAX_RING_BYTES} bytes; lower one, or give --payload-bytes",
                    self.capacity, self.item_bytes
                ),
            });
        }
        if self.item_bytes > payload {
            return Err(format!(
                "--item-bytes {} exceeds the payload ring of {payload} bytes (--payload-bytes)",
                self.item_bytes
            ));
        }
        Ok(())
    }

    /// The payload ring's size: `--payload-bytes`, or the library's
    /// default for `--capacity` and `--item-bytes`.
    pub fn payload_bytes(&self) -> u64 {
        self.config("size").payload_bytes()
    }

    fn config(&self, request: &str) -> StreamConfig {
        let config = StreamConfig::new(StreamId {
            request_id: String::from(request),
            edge_name: "trace".into(),
            from_partition: "replay".into(),
        })
        .with_capacity(self.capacity)
        .with_item_bytes(self.item_bytes)
        .with_timeout(Some(Duration::ZERO));
        match self.payload_bytes {
            Some(p) => config.with_payload_bytes(p),
            None => config,
        }
    }
}

/// Replays the trace, printing a line per popped chunk.
///
/// # Errors
///
/// A bad setting, a segment that cannot be made, or a bad line (named by
/// its number).
pub fn run(args: &ReplayArgs) -> Outcome {
    crate::signals::exit_on_signal("ipc-demo replay");
    let setup = ReplaySetup {
        policy: args.policy.clone(),
        capacity: args.capacity,
        item_bytes: args.item_bytes,
        payload_bytes: args.payload_bytes,
        values: args.values,
    };
    setup.check()?;
    let config = setup
        .config(&format!("replay-{}", std::process::id()))
        .with_prefix(&args.prefix);
    let input: Box<dyn BufRead> = match &args.trace {
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )),
        None => Box::new(io::stdin().lock()),
    };
    let name = config.segment_name()?;
    let producer = crate::signals::create_producer(&config, &name)
        .map_err(|e| format!("cannot create the stream: {e}"))?;
    let mut buffer: StreamBuffer = StreamBuffer::open(&config, args.policy.clone())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let result = replay(&producer, &mut buffer, setup.values, input, &mut out);
    out.flush()?;
    Ok(result?)
}

/// Replays a trace on an in-process stream (an anonymous memory file:
/// nothing appears in /dev/shm), writing the chunk lines to `out`. The
/// same interpreter as `ipc-demo replay`, for the fuzz targets and tests.
///
/// # Errors
///
/// As `ipc-demo replay`: a bad setting, or the first bad line.
#[cfg(feature = "fuzzing")]
pub fn replay_in_process(
    setup: &ReplaySetup,
    input: impl BufRead,
    out: &mut impl Write,
) -> Result<(), String> {
    setup.check()?;
    let config = setup.config("replay");
    let (producer, mut buffer) = shmstream::in_process_buffer::<()>(&config, setup.policy.clone())
        .map_err(|e| format!("cannot create the stream: {e}"))?;
    replay(&producer, &mut buffer, setup.values, input, out)
}

/// Runs every line of `input` through `producer` and `buffer`; stops at
/// the first bad line with `line N: ...`.
///
/// # Errors
///
/// The first bad line, by number.
pub fn replay(
    producer: &Producer,
    buffer: &mut StreamBuffer,
    values: bool,
    mut input: impl BufRead,
    out: &mut impl Write,
) -> Result<(), String> {
    let mut replay = Replay {
        producer,
        buffer,
        ids: Ids {
            by_id: HashMap::new(),
            next: 0,
        },
        done: false,
        values,
    };
    let mut raw = Vec::new();
    for number in 1.. {
        raw.clear();
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| format!("line {number}: cannot read it: {e}"))?;
        if read == 0 {
            break;
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        if raw.len() > MAX_LINE_BYTES {
            return Err(format!(
                "line {number}: longer than the limit of {MAX_LINE_BYTES} bytes"
            ));
        }
        let line =
            std::str::from_utf8(&raw).map_err(|_| format!("line {number}: not valid UTF-8"))?;
        if line.trim().is_empty() {
            continue;
        }
        replay
            .event(line, out)
            .map_err(|e| format!("line {number}: {}", printable(&e)))?;
    }
    Ok(())
}

/// `text` with control characters (a line break, an escape sequence from
/// the trace echoed in an error) written as escapes: an error stays one
/// line and cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            let plain = (!c.is_control()).then_some(c);
            escaped.into_iter().flatten().chain(plain)
        })
        .collect()
}

struct Replay<'p, 'b> {
    producer: &'p Producer,
    buffer: &'b mut StreamBuffer,
    ids: Ids,
    done: bool,
    values: bool,
}

impl Replay<'_, '_> {
    fn event(&mut self, line: &str, out: &mut impl Write) -> Result<(), String> {
        match trace::parse(line)? {
            Event::Register { id, nbytes } => self.register(id, nbytes),
            Event::Put {
                id,
                dtype,
                shape,
                data,
            } => self.put(&id, dtype.as_deref(), shape.as_deref(), data.as_deref()),
            Event::Done {} => {
                if self.done {
                    return Err("the stream is already done".to_string());
                }
                self.producer.signal_done();
                self.done = true;
                Ok(())
            }
            Event::Pop {} => {
                if !self.pop(out)? {
                    writeln!(out, "{{\"ready\":false}}").map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Event::Poll { max } => {
                let max = max.unwrap_or(DEFAULT_POLL_MAX);
                if max > MAX_POLL {
                    return Err(format!(
                        "poll max {max} exceeds the limit of {MAX_POLL} chunks"
                    ));
                }
                for _ in 0..max {
                    if !self.pop(out)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    fn register(&mut self, id: String, nbytes: Option<u64>) -> Result<(), String> {
        if self.done {
            return Err(format!("register {id:?} after done"));
        }
        if self.ids.by_id.contains_key(&id) {
            return Err(format!("tensor id {id:?} is registered twice"));
        }
        let reserved = nbytes.unwrap_or(self.producer.item_bytes());
        let payload = self.producer.payload_bytes();
        if reserved > payload {
            return Err(format!(
                "cannot register {id:?} with {reserved} bytes: more than the payload ring of {payload} bytes (raise --payload-bytes)"
            ));
        }
        let registered = match nbytes {
            None => self.producer.pre_read_register(&id),
            Some(n) => self.producer.pre_read_register_sized(&id, n),
        };
        match registered {
            Ok(_) => {}
            Err(StreamError::Full {
                resource: Resource::Items,
                ..
            }) => return Err(self.full_items(&id)),
            Err(StreamError::Full {
                resource: Resource::PayloadBytes,
                ..
            }) => return Err(self.full_bytes(&id, reserved)),
            // No wait in a replay: the zero timeout says what was short.
            Err(StreamError::Timeout { what, .. }) if what.contains("payload") => {
                return Err(self.full_bytes(&id, reserved))
            }
            Err(StreamError::Timeout { .. }) => return Err(self.full_items(&id)),
            Err(e) => return Err(format!("cannot register {id:?}: {e}")),
        }
        let entry = Entry {
            index: self.ids.next,
            reserved,
            put: false,
        };
        self.ids.by_id.insert(id, entry);
        self.ids.next += 1;
        Ok(())
    }

    fn full_items(&self, id: &str) -> String {
        format!(
            "cannot register {id:?}: the ring is full ({} items); pop chunks first or raise --capacity",
            self.producer.capacity()
        )
    }

    fn full_bytes(&self, id: &str, reserved: u64) -> String {
        format!(
            "cannot register {id:?}: its {reserved} bytes do not fit in the free part of the payload ring of {} bytes; pop chunks first or raise --payload-bytes",
            self.producer.payload_bytes()
        )
    }

    fn put(
        &mut self,
        id: &str,
        dtype: Option<&str>,
        shape: Option<&[u64]>,
        data: Option<&[serde_json::Value]>,
    ) -> Result<(), String> {
        let entry = match self.ids.by_id.get_mut(id) {
            None => return Err(format!("tensor id {id:?} was never registered")),
            Some(Entry { put: true, .. }) => return Err(format!("tensor id {id:?} is put twice")),
            Some(entry) => entry,
        };
        let reserved = entry.reserved;
        let fits = |meta: &TensorMeta| {
            let n = meta.nbytes();
            if n > reserved {
                Err(format!(
                    "tensor {id:?} of {n} bytes does not fit in the {reserved} bytes reserved for it (register it with \"nbytes\":{n}, or raise --item-bytes)"
                ))
            } else if n > MAX_TENSOR_BYTES {
                Err(format!(
                    "tensor {id:?} of {n} bytes exceeds the replay's limit of {MAX_TENSOR_BYTES} bytes per tensor"
                ))
            } else {
                Ok(())
            }
        };
        let (meta, bytes) = trace::tensor(entry.index, dtype, shape, data, fits).map_err(|e| {
            if e.starts_with("tensor ") {
                e
            } else {
                format!("put {id:?}: {e}")
            }
        })?;
        self.producer
            .put(id, meta, &bytes)
            .map_err(|e| format!("put {id:?}: {e}"))?;
        entry.put = true;
        Ok(())
    }

    /// Pops and prints a chunk if one is ready; whether it did.
    fn pop(&mut self, out: &mut impl Write) -> Result<bool, String> {
        if !self.buffer.has_chunk_ready().map_err(|e| e.to_string())? {
            return Ok(false);
        }
        let chunk = self.buffer.pop_chunk().map_err(|e| e.to_string())?;
        let line = ChunkLine {
            chunk_index: chunk.chunk_index(),
            start_offset: chunk.start_offset(),
            is_final: chunk.is_final(),
            context_items: chunk.context_items(),
            ids: chunk.ids().collect(),
            values: self.values.then_some(Values(&chunk)),
        };
        serde_json::to_writer(&mut *out, &line).map_err(|e| e.to_string())?;
        writeln!(out).map_err(|e| e.to_string())?;
        Ok(true)
    }
}
