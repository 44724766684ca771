//! `ipc-demo wake`: the Rust consumer of the drop-in benchmark's wake-up
//! rows (`shmstream-py/bench/dropin.py`, issue 26). It waits the way the
//! Python consumer does, on a stream of the same producer process, so the
//! two are compared in one run: `set` sleeps in `StreamSet::wait_any`
//! and pops the ready chunk, `buffer` in `StreamBuffer::next_chunk_timeout`.
//!
//! Each item's first i64 is its index. When the consumer holds a chunk it
//! notes CLOCK_MONOTONIC; at the end (the producer's done, or `--items`
//! chunks) it prints `index nanoseconds` a line, and the benchmark subtracts
//! the producer's stamp of that index.

use crate::cli::Outcome;
use crate::clock::monotonic_ns;
use clap::{Args, ValueEnum};
use shmstream::policy::Policy;
use shmstream::{StreamBuffer, StreamChunk, StreamConfig, StreamId, StreamSet, DEFAULT_PREFIX};
use std::io::Write;
use std::time::Duration;

/// How the consumer waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaitIn {
    /// Creates the hub of `--name` (a worker) and sleeps in `wait_any`
    Set,
    /// Opens the stream `--name`/e/p and sleeps in `next_chunk_timeout`
    Buffer,
}

/// The wake-up consumer's command line.
#[derive(Args, Clone, Debug)]
pub struct WakeArgs {
    /// Where the consumer sleeps
    #[arg(long, value_enum)]
    pub wait: WaitIn,
    /// The worker (`set`) or the request id of the stream (`buffer`)
    #[arg(long)]
    pub name: String,
    /// Segment prefix
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Stop after this many items
    #[arg(long)]
    pub items: usize,
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
    let policy: Policy = "fixed:size=1".parse()?;
    let mut seen: Vec<(u64, u64)> = Vec::with_capacity(args.items);
    let ready = || -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()
    };
    match args.wait {
        WaitIn::Set => {
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
        WaitIn::Buffer => {
            let id = StreamId {
                request_id: args.name.clone(),
                edge_name: "e".into(),
                from_partition: "p".into(),
            };
            let cfg = StreamConfig::new(id).with_prefix(&args.prefix);
            let mut buf: StreamBuffer = StreamBuffer::open(&cfg, policy)?;
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
