//! The consumer's many-streams mode (`ipc-consumer --hub WORKER --streams
//! N`, issue 12): one worker hub, one `StreamSet`, one `wait_any` for all
//! the streams.
//!
//! The consumer creates the hub (registered for removal on SIGINT, SIGTERM
//! and SIGHUP like a producer's segment), prints `hub NAME`, adopts every
//! stream the producers announce there, and takes the chunks of the
//! streams `wait_any` returns as ready, verifying each stream on its own
//! (`take`, the single stream's step too). A stream that
//! ended is checked (its final chunk, `--items`) and removed from the set,
//! which gives its hub entry back. It ends when streams `REQUEST-s0` to
//! `REQUEST-s<N-1>` have all ended, and prints one line per stream
//! (`stream ID items N bytes B chunks C`) and a total, or with `--json`
//! one JSON object.

use crate::args::DEFAULT_REQUEST_ID;
use crate::cli::Outcome;
use crate::consume_args::ConsumeArgs;
use crate::produce::stream_request;
use crate::take::{take, verifier, Next};
use crate::verify::Verifier;
use shmstream::policy::ChunkPolicy;
use shmstream::{hub_name, StreamKey, StreamSet, MAX_HUB_ENTRIES, MIN_HUB_ENTRIES};
use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

/// A stream being taken.
struct Taking {
    number: u64,
    verifier: Verifier,
    first_pop_ns: Option<u64>,
}

/// What one stream carried.
#[derive(Debug, serde::Serialize)]
struct Summary {
    stream: String,
    items: u64,
    bytes: u64,
    chunks: u64,
}

/// Runs the worker until all `--streams` streams ended, and prints the
/// summary.
///
/// # Errors
///
/// A hub that cannot be created, a stream that cannot be opened, fails
/// its checks or is not one of ours, no news for `--timeout`; each as one
/// sentence.
pub fn consume(args: &ConsumeArgs, worker: &str) -> Outcome {
    let n = args.streams;
    if n > u64::from(MAX_HUB_ENTRIES) {
        return Err(format!("--streams {n} exceeds a hub's {MAX_HUB_ENTRIES} entries").into());
    }
    let entries = (n.div_ceil(64) * 64).max(u64::from(MIN_HUB_ENTRIES)) as u32;
    let prefix = &args.identity.prefix;
    let timeout = args.identity.timeout;
    let request = args
        .identity
        .request_id
        .as_deref()
        .unwrap_or(DEFAULT_REQUEST_ID);
    let name = hub_name(worker, prefix)?;
    let set: StreamSet = crate::signals::create_registered(&name, || {
        StreamSet::create_with_entries(worker, prefix, entries)
    })
    .map_err(|e| format!("cannot create the hub: {e}"))?;
    let mut set = set
        .with_default_policy(args.policy.clone())
        .with_stream_timeout(Some(timeout));
    let mut out = std::io::stdout().lock();
    writeln!(out, "hub {name}")?;
    out.flush()?;
    drop(out);
    let numbers: HashMap<String, u64> = (0..n).map(|i| (stream_request(request, i), i)).collect();
    let mut seen = vec![false; n as usize];
    let mut taking: HashMap<StreamKey, Taking> = HashMap::new();
    let mut done: Vec<Summary> = Vec::new();
    let mut items = 0u64;
    let mut ready = Vec::new();
    let start = Instant::now();
    while (done.len() as u64) < n {
        set.wait_any_into(Some(timeout), &mut ready);
        if let Some((id, e)) = set.take_adopt_errors().into_iter().next() {
            return Err(format!("cannot open the announced stream {id}: {e}").into());
        }
        if ready.is_empty() {
            return Err(format!(
                "no stream had news for {timeout:?}; {} of {n} streams ended",
                done.len()
            )
            .into());
        }
        for &key in &ready {
            let buffer = set
                .get_mut(key)
                .expect("wait_any returns streams of the set");
            if let std::collections::hash_map::Entry::Vacant(vacant) = taking.entry(key) {
                let id = buffer.id();
                let number = numbers
                    .get(&id.request_id)
                    .copied()
                    .filter(|_| id.edge_name == args.identity.edge)
                    .filter(|_| id.from_partition == args.identity.partition)
                    .ok_or_else(|| format!("stream {id} was announced, not one of ours"))?;
                if std::mem::replace(&mut seen[number as usize], true) {
                    return Err(format!("stream {id} was announced twice").into());
                }
                vacant.insert(Taking {
                    number,
                    // No latency report here: 250 KiB of histogram per
                    // stream would be 64 MiB for 256 streams.
                    verifier: verifier(args).without_latencies(),
                    first_pop_ns: None,
                });
            }
            let stream = taking.get_mut(&key).expect("inserted above");
            let before = stream.verifier.items();
            let ended = loop {
                let next = take(buffer, &mut stream.verifier, &mut stream.first_pop_ns, true)
                    .map_err(|e| format!("stream {}: {e}", buffer.id()))?;
                match next {
                    Next::Chunk => continue,
                    Next::End => break true,
                    Next::NotYet => break false,
                }
            };
            items += stream.verifier.items() - before;
            crate::signals::count(items);
            if ended {
                let stream = taking.remove(&key).expect("taken above");
                let id = stream_request(request, stream.number);
                let v = &stream.verifier;
                v.finish(args.policy.continue_after_done())
                    .map_err(|e| format!("stream {id}: {e}"))?;
                if let Some(want) = args.items.filter(|&want| want != v.items()) {
                    return Err(format!(
                        "stream {id} carried {} items, expected {want}",
                        v.items()
                    )
                    .into());
                }
                done.push(Summary {
                    stream: id,
                    items: v.items(),
                    bytes: v.bytes,
                    chunks: v.chunks,
                });
                drop(set.remove(key));
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    done.sort_by_key(|s| numbers[&s.stream]);
    let total = |f: fn(&Summary) -> u64| done.iter().map(f).sum::<u64>();
    let (items, bytes, chunks) = (total(|s| s.items), total(|s| s.bytes), total(|s| s.chunks));
    if args.json {
        let value = serde_json::json!({
            "hub": name,
            "policy": args.policy.to_string(),
            "streams": done,
            "total": {
                "streams": done.len(),
                "items": items,
                "bytes": bytes,
                "chunks": chunks,
                "seconds": seconds,
            },
        });
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print!(
            "{}",
            summary(&name, &args.policy.to_string(), &done, seconds)
        );
    }
    Ok(())
}

/// The text summary: the hub, one line per stream, the total.
fn summary(hub: &str, policy: &str, streams: &[Summary], seconds: f64) -> String {
    let mut out = format!("hub            {hub}\npolicy         {policy}\n");
    let (mut items, mut bytes, mut chunks) = (0, 0, 0);
    for s in streams {
        out += &format!(
            "stream {}  items {}  bytes {}  chunks {}\n",
            s.stream, s.items, s.bytes, s.chunks
        );
        items += s.items;
        bytes += s.bytes;
        chunks += s.chunks;
    }
    let rate = if seconds > 0.0 {
        items as f64 / seconds
    } else {
        0.0
    };
    out += &format!(
        "total          {} streams, {items} items, {bytes} bytes, {chunks} chunks, every item verified, in {seconds:.3} s ({rate:.0} items/s)\n",
        streams.len()
    );
    out
}
