//! `ipc-consumer`: opens a stream by its identity, cuts it into chunks by a
//! policy, reads every window in place (`chunk.stacked()` for a window of
//! same-shaped items, item by item otherwise; no copy), verifies it
//! ([`crate::verify`]: with `--sizes`, also every item's size) and reports
//! ([`crate::report`]).
//! On SIGINT, SIGTERM or SIGHUP it says how many items it received and
//! exits with 128 + the signal ([`crate::signals`]).
//!
//! With `--hub WORKER` (many-streams mode, issue 12) it creates the worker
//! hub (printing `hub NAME`), takes every stream announced there into one
//! `StreamSet` and waits for all of them at once (`wait_any`), verifying
//! each stream as above; it ends when `--streams N` streams
//! `REQUEST-s0..REQUEST-s<N-1>` have ended, and prints one line per stream
//! and a total ([`crate::many`]).

use crate::args::DEFAULT_REQUEST_ID;
use crate::cli::Outcome;
use crate::clock::{coarse_ns, monotonic_ns, voluntary_switches};
use crate::consume_args::ConsumeArgs;
use crate::progress::{Progress, PROGRESS_EVERY};
use crate::report::{Latency, Report};
use crate::take::{take, verifier, Next};
use crate::verify::Verifier;
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::{SetupError, StreamBuffer, StreamConfig};
use std::time::{Duration, Instant};

/// Runs the consumer to the end of the stream and prints its report.
///
/// # Errors
///
/// A stream that cannot be opened, a dead producer, a failed check; each
/// as one sentence.
pub fn run(args: &ConsumeArgs) -> Outcome {
    crate::signals::exit_on_signal("ipc-consumer");
    if let Some(worker) = &args.hub {
        return crate::many::consume(args, worker);
    }
    let config = args.identity.config(DEFAULT_REQUEST_ID, None);
    let segment = config.segment_name()?;
    let mut buffer = open(&config, &args.policy, args.open_timeout)?;
    let sleeps_before = voluntary_switches();
    let mut verifier = verifier(args);
    let mut first_pop_ns = None;
    let mut progress = args.progress.then(|| Ticker::new(PROGRESS_EVERY));
    loop {
        match take(&mut buffer, &mut verifier, &mut first_pop_ns, false)? {
            Next::Chunk => crate::signals::count(verifier.items()),
            Next::End => break,
            Next::NotYet => unreachable!("next_chunk waits"),
        }
        if progress.as_mut().is_some_and(Ticker::due) {
            println!("{}", running(&verifier).line());
        }
    }
    let end = monotonic_ns();
    let sleeps = voluntary_switches().saturating_sub(sleeps_before);
    verifier.finish(args.policy.continue_after_done())?;
    let report = report(&segment, args, &verifier, end, first_pop_ns, sleeps);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    match report.expected_items {
        Some(n) if n != report.items => {
            Err(format!("the stream carried {} items, expected {n}", report.items).into())
        }
        _ => Ok(()),
    }
}

/// The verifier's running numbers for the launcher's bar.
fn running(verifier: &Verifier) -> Progress {
    let h = &verifier.latencies;
    Progress {
        items: verifier.items(),
        latency: (!h.is_empty()).then(|| (h.value_at_quantile(0.5), h.value_at_quantile(0.99))),
    }
}

/// Says when `every` has passed since it last said so, reading the
/// coarse clock (a few ns, ticking every few ms) once per chunk.
struct Ticker {
    every_ns: u64,
    next_ns: u64,
}

impl Ticker {
    fn new(every: Duration) -> Ticker {
        let every_ns = every.as_nanos() as u64;
        Ticker {
            every_ns,
            next_ns: coarse_ns() + every_ns,
        }
    }

    fn due(&mut self) -> bool {
        let now = coarse_ns();
        if now < self.next_ns {
            return false;
        }
        self.next_ns = now + self.every_ns;
        true
    }
}

/// Opens the stream, retrying while its producer has not created it yet.
fn open(config: &StreamConfig, policy: &Policy, timeout: Duration) -> Result<StreamBuffer, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match StreamBuffer::open(config, policy.clone()) {
            Ok(buffer) => return Ok(buffer),
            Err(SetupError::NotFound { .. } | SetupError::NotInitialized { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e @ (SetupError::NotFound { .. } | SetupError::NotInitialized { .. })) => {
                return Err(format!("cannot open the stream within {timeout:?}: {e}"))
            }
            Err(e) => return Err(format!("cannot open the stream: {e}")),
        }
    }
}

fn report(
    segment: &str,
    args: &ConsumeArgs,
    verifier: &Verifier,
    end_ns: u64,
    first_pop_ns: Option<u64>,
    sleeps: u64,
) -> Report {
    let start = verifier.first_commit_ns.or(first_pop_ns).unwrap_or(end_ns);
    let seconds = end_ns.saturating_sub(start) as f64 / 1e9;
    let per_s = |x: u64| {
        if seconds > 0.0 {
            x as f64 / seconds
        } else {
            0.0
        }
    };
    let items = verifier.items();
    Report {
        segment: segment.to_string(),
        policy: args.policy.to_string(),
        items,
        expected_items: args.items,
        lost: args.items.map_or(0, |n| n.saturating_sub(items)),
        chunks: verifier.chunks,
        final_chunks: verifier.final_chunks,
        empty_chunks: verifier.empty_chunks,
        context_items: verifier.context_items,
        stacked_windows: verifier.stacked_windows,
        unstacked_windows: verifier.unstacked_windows,
        bytes: verifier.bytes,
        seconds,
        items_per_s: per_s(items),
        gb_per_s: per_s(verifier.bytes) / 1e9,
        latency: Latency::of(&verifier.latencies),
        bytes_copied: 0,
        bytes_verified: verifier.bytes_verified,
        consumer_sleeps: sleeps,
        backpressure: None,
    }
}
