//! `ipc-demo wake`: the Rust peers of the drop-in benchmark's wake-up rows
//! (`shmstream-py/bench/dropin.py`, issue 26), so that Rust and Python
//! consumers and producers are compared in one run.
//!
//! Consumers (`--role set|buffer`) wait the way the Python consumer does:
//! `set` sleeps in `StreamSet::wait_any` and pops the ready chunk, `buffer`
//! in `StreamBuffer::next_chunk_timeout`. Each item's first i64 is its
//! index; when the consumer holds a chunk it notes CLOCK_MONOTONIC, and at
//! the end (`--items` chunks, or the producer's done) it prints
//! `index nanoseconds` a line.
//!
//! Producers (`--role hub|stream`) speak `dropin_peer.py`'s protocol:
//! `ready` once the stream exists (`hub`: announced in the hub of worker
//! `--name`; `stream`: created by name), then per `run N IDLE` line on stdin
//! N puts of a 56-byte item, IDLE seconds apart, and one line of
//! `index:ns` pairs (each put's start); `quit` signals done.

use crate::cli::Outcome;
use crate::clock::monotonic_ns;
use clap::{Args, ValueEnum};
use shmstream::policy::Policy;
use shmstream::{
    DType, Hub, Producer, StreamBuffer, StreamChunk, StreamConfig, StreamId, StreamSet, TensorMeta,
    DEFAULT_PREFIX,
};
use std::io::Write;
use std::time::Duration;

/// Which peer this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Consumer: creates the hub of `--name` (a worker), sleeps in `wait_any`
    Set,
    /// Consumer: opens the stream `--name`/e/p, sleeps in `next_chunk_timeout`
    Buffer,
    /// Producer: the stream `--name`/e/p, announced in the hub of worker `--name`
    Hub,
    /// Producer: creates the stream `--name`/e/p
    Stream,
}

/// The wake-up consumer's command line.
#[derive(Args, Clone, Debug)]
pub struct WakeArgs {
    /// Which peer
    #[arg(long, value_enum)]
    pub role: Role,
    /// The worker (`set`, `hub`) and the request id of the stream
    #[arg(long)]
    pub name: String,
    /// Segment prefix
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// A consumer stops after this many items
    #[arg(long, default_value_t = usize::MAX)]
    pub items: usize,
}

/// The stream `NAME/e/p` (a producer's: `capacity` items of 64 bytes).
fn config(args: &WakeArgs, capacity: u64) -> StreamConfig {
    let id = StreamId {
        request_id: args.name.clone(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    };
    StreamConfig::new(id)
        .with_prefix(&args.prefix)
        .with_capacity(capacity)
        .with_item_bytes(64)
}

/// The producer roles (see the module's documentation).
fn produce(args: &WakeArgs) -> Outcome {
    let cfg = config(args, 64);
    let producer = match args.role {
        Role::Hub => Hub::attach(&args.name, &args.prefix)?.create_stream(&cfg)?,
        _ => Producer::create(&cfg)?,
    };
    let meta = TensorMeta::new(DType::I64, &[7])?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut index = 0u64;
    for line in std::io::stdin().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let (n, idle) = match words.as_slice() {
            ["run", n, idle] => (n.parse::<u64>()?, idle.parse::<f64>()?),
            _ => break,
        };
        let mut starts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            std::thread::sleep(Duration::from_secs_f64(idle));
            let mut item = [0u8; 56];
            item[..8].copy_from_slice(&index.to_le_bytes());
            let start = monotonic_ns();
            producer
                .register(&format!("x{index}"))?
                .write(meta, &item)
                .map_err(|e| e.to_string())?;
            starts.push(format!("{index}:{start}"));
            index += 1;
        }
        writeln!(out, "{}", starts.join(" "))?;
        out.flush()?;
    }
    producer.signal_done();
    Ok(())
}

fn index_of(chunk: &StreamChunk<'_>) -> Option<u64> {
    let bytes = chunk.item(0)?.bytes();
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Prints `ready` once it can be fed (the hub exists, or the stream is
/// open), then the arrival times once the items are in.
///
/// # Errors
///
/// The hub cannot be created, the stream cannot be opened, or it fails.
pub fn run(args: &WakeArgs) -> Outcome {
    if matches!(args.role, Role::Hub | Role::Stream) {
        return produce(args);
    }
    let policy: Policy = "fixed:size=1".parse()?;
    let mut seen: Vec<(u64, u64)> = Vec::with_capacity(args.items);
    let ready = || -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()
    };
    match args.role {
        Role::Set => {
            let mut set: StreamSet =
                StreamSet::create(&args.name, &args.prefix)?.with_default_policy(policy);
            ready()?;
            let mut keys = Vec::new();
            'all: while seen.len() < args.items {
                set.wait_any_into(None, &mut keys);
                for &key in &keys {
                    let Some(buf) = set.get_mut(key) else {
                        continue;
                    };
                    loop {
                        match buf.next_chunk_timeout(Some(Duration::ZERO)) {
                            Ok(Some(chunk)) => {
                                let now = monotonic_ns();
                                seen.extend(index_of(&chunk).map(|i| (i, now)));
                            }
                            Ok(None) => break 'all,
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        _ => {
            let mut buf: StreamBuffer = StreamBuffer::open(&config(args, 64), policy)?;
            ready()?;
            while seen.len() < args.items {
                match buf.next_chunk_timeout(None)? {
                    Some(chunk) => {
                        let now = monotonic_ns();
                        seen.extend(index_of(&chunk).map(|i| (i, now)));
                    }
                    None => break,
                }
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (index, ns) in seen {
        writeln!(out, "{index} {ns}")?;
    }
    Ok(())
}
