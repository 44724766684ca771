//! `ipc-demo replay`: drives one stream through a real shared-memory
//! segment from a trace (SPEC section 6) and prints every chunk.
//!
//! The producer ([`Producer::create`]) and the consumer
//! ([`StreamBuffer::open`]) live in this one process, on one segment;
//! `register` is [`Producer::pre_read_register`], `put` is
//! [`Producer::put`]. Waits never block: a full ring is an error that
//! names the line.

use crate::cli::Outcome;
use crate::trace::{self, decode, Element, Event, DEFAULT_POLL_MAX};
use clap::Args;
use serde::Serialize;
use shmstream::policy::Policy;
use shmstream::{Producer, StreamBuffer, StreamConfig, StreamError, DEFAULT_PREFIX};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The replay's command line.
#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    /// Chunk policy, e.g. sliding:window=4,stride=2
    #[arg(long, value_name = "POLICY")]
    pub policy: Policy,
    /// Slots in the ring (a power of two); registered items not yet popped must fit
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub capacity: u64,
    /// Bytes per slot: the largest tensor a put may carry
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub slot_bytes: u64,
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

/// One printed chunk: exactly these keys, in this order.
#[derive(Serialize)]
struct ChunkLine<'a> {
    chunk_index: u64,
    start_offset: u64,
    is_final: bool,
    context_items: usize,
    ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<Vec<Vec<Element>>>,
}

/// What the replay knows of each id: its registration index, and whether
/// it was put.
struct Ids {
    by_id: HashMap<String, (u64, bool)>,
    next: u64,
}

/// Replays the trace, printing a line per popped chunk.
///
/// # Errors
///
/// A bad setting, a segment that cannot be made, or a bad line (named by
/// its number).
pub fn run(args: &ReplayArgs) -> Outcome {
    let config = StreamConfig::new(&format!("replay-{}", std::process::id()), "trace", "replay")
        .capacity(args.capacity)
        .slot_bytes(args.slot_bytes)
        .prefix(&args.prefix)
        .timeout(Some(Duration::ZERO));
    let producer =
        Producer::create(&config).map_err(|e| format!("cannot create the stream: {e}"))?;
    crate::signals::remove_on_signal(&config.segment_name()?);
    let mut buffer: StreamBuffer = StreamBuffer::open(&config, args.policy.clone())?;
    let input: Box<dyn BufRead> = match &args.trace {
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )),
        None => Box::new(io::stdin().lock()),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut replay = Replay {
        producer: &producer,
        buffer: &mut buffer,
        ids: Ids {
            by_id: HashMap::new(),
            next: 0,
        },
        done: false,
        values: args.values,
    };
    let mut result = Ok(());
    for (i, line) in input.lines().enumerate() {
        let number = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                result = Err(format!("line {number}: cannot read it: {e}"));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = replay.event(&line, &mut out) {
            result = Err(format!("line {number}: {e}"));
            break;
        }
    }
    out.flush()?;
    Ok(result?)
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
            Event::Register { id } => self.register(id),
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
                for _ in 0..max.unwrap_or(DEFAULT_POLL_MAX) {
                    if !self.pop(out)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    fn register(&mut self, id: String) -> Result<(), String> {
        if self.done {
            return Err(format!("register {id:?} after done"));
        }
        if self.ids.by_id.contains_key(&id) {
            return Err(format!("tensor id {id:?} is registered twice"));
        }
        match self.producer.pre_read_register(&id) {
            Ok(_) => {}
            Err(StreamError::Timeout { .. } | StreamError::Full { .. }) => {
                return Err(format!(
                    "cannot register {id:?}: the ring is full ({} slots); pop chunks first or raise --capacity",
                    self.producer.capacity()
                ))
            }
            Err(e) => return Err(format!("cannot register {id:?}: {e}")),
        }
        self.ids.by_id.insert(id, (self.ids.next, false));
        self.ids.next += 1;
        Ok(())
    }

    fn put(
        &mut self,
        id: &str,
        dtype: Option<&str>,
        shape: Option<&[u64]>,
        data: Option<&[serde_json::Value]>,
    ) -> Result<(), String> {
        let (index, put) = match self.ids.by_id.get_mut(id) {
            None => return Err(format!("tensor id {id:?} was never registered")),
            Some((_, true)) => return Err(format!("tensor id {id:?} is put twice")),
            Some(entry) => entry,
        };
        let (meta, bytes) =
            trace::tensor(*index, dtype, shape, data).map_err(|e| format!("put {id:?}: {e}"))?;
        let slot_bytes = self.producer.slot_bytes();
        if meta.nbytes() > slot_bytes {
            return Err(format!(
                "tensor {id:?} of {} bytes does not fit a slot of {slot_bytes} bytes (raise --slot-bytes)",
                meta.nbytes()
            ));
        }
        self.producer
            .put(id, meta, &bytes)
            .map_err(|e| format!("put {id:?}: {e}"))?;
        *put = true;
        Ok(())
    }

    /// Pops and prints a chunk if one is ready; whether it did.
    fn pop(&mut self, out: &mut impl Write) -> Result<bool, String> {
        if !self.buffer.has_chunk_ready().map_err(|e| e.to_string())? {
            return Ok(false);
        }
        let values = self.values;
        let chunk = self.buffer.pop_chunk().map_err(|e| e.to_string())?;
        let line = ChunkLine {
            chunk_index: chunk.chunk_index(),
            start_offset: chunk.start_offset(),
            is_final: chunk.is_final(),
            context_items: chunk.context_items(),
            ids: chunk.ids().collect(),
            values: values.then(|| {
                chunk
                    .items()
                    .map(|item| decode(item.dtype(), item.bytes()))
                    .collect()
            }),
        };
        let text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
        writeln!(out, "{text}").map_err(|e| e.to_string())?;
        Ok(true)
    }
}
