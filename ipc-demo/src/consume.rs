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

use crate::args::{at_least_one, seconds, IdentityArgs, DEFAULT_POLICY, DEFAULT_REQUEST_ID};
use crate::cli::Outcome;
use crate::clock::{coarse_ns, monotonic_ns, voluntary_switches};
use crate::launch::{Progress, PROGRESS_EVERY};
use crate::report::{Latency, Report};
use crate::sizes::SizeMix;
use crate::verify::Verifier;
use clap::Args;
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::{SetupError, StreamBuffer, StreamConfig, StreamError};
use std::time::{Duration, Instant};

/// The consumer's command line.
#[derive(Args, Clone, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArgs,
    /// Chunk policy, e.g. fixed:size=30, sliding:window=28,stride=7, left-context:chunk=10,context=2, ramp:first=4,size=8,growth=2,max=32, scheduled:schedule=4/8/16,chunk=25,context=25
    #[arg(long, value_name = "POLICY", default_value = DEFAULT_POLICY)]
    pub policy: Policy,
    /// Items the stream must carry; fewer or more is an error [default: not checked]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub items: Option<u64>,
    /// Byte size of every item, checked: the producer's --sizes (a list cycled through, or random:MIN..MAX with --seed), or one size [default: not checked]
    #[arg(long, value_name = "SIZES")]
    pub sizes: Option<SizeMix>,
    /// Seed of random --sizes (as the producer's)
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// Seconds to keep retrying to open the stream while its segment does not exist yet
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub open_timeout: Duration,
    /// Print the report as one JSON line
    #[arg(long)]
    pub json: bool,
    /// Many-streams mode: create the hub of this worker and take every stream announced there, waiting for all at once
    #[arg(long, value_name = "WORKER")]
    pub hub: Option<String>,
    /// With --hub: the streams to take (REQUEST-s0, REQUEST-s1, ...); --items is then per stream
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    pub streams: u64,
    /// Print `progress items=N p50_ns=X p99_ns=Y` on stdout about every 0.5 s (the running latency percentiles; for the launcher's bar; one stream only)
    #[arg(long, hide = true)]
    pub progress: bool,
}

impl ConsumeArgs {
    /// These settings as arguments, with `request` as the request id.
    pub fn to_args(&self, request: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.identity.to_args(request, &mut out);
        out.push("--policy".into());
        out.push(self.policy.to_string());
        if let Some(items) = self.items {
            out.push("--items".into());
            out.push(items.to_string());
        }
        if let Some(sizes) = &self.sizes {
            out.push("--sizes".into());
            out.push(sizes.to_string());
        }
        out.push("--seed".into());
        out.push(self.seed.to_string());
        out.push("--open-timeout".into());
        out.push(self.open_timeout.as_secs_f64().to_string());
        if self.json {
            out.push("--json".into());
        }
        if let Some(hub) = &self.hub {
            out.extend(["--hub".into(), hub.clone()]);
            out.extend(["--streams".into(), self.streams.to_string()]);
        }
        if self.progress {
            out.push("--progress".into());
        }
        out
    }
}

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

/// A verifier for one stream of these settings.
pub(crate) fn verifier(args: &ConsumeArgs) -> Verifier {
    let verifier = Verifier::new(&args.policy);
    match &args.sizes {
        Some(sizes) => verifier.with_sizes(sizes.clone(), args.seed),
        None => verifier,
    }
}

/// What [`take`] found.
pub(crate) enum Next {
    /// A chunk, verified.
    Chunk,
    /// The end of the stream (a final chunk was taken before, or a
    /// `continue` policy's first empty chunk after the end).
    End,
    /// No chunk ready yet (only when `now`).
    NotYet,
}

/// Takes the next chunk of `buffer` and verifies it: waiting for it
/// (the stream's timeout), or only when one is ready (`now`).
pub(crate) fn take(
    buffer: &mut StreamBuffer,
    verifier: &mut Verifier,
    first_pop_ns: &mut Option<u64>,
    now: bool,
) -> Result<Next, String> {
    let next = if now {
        buffer.next_chunk_timeout(Some(Duration::ZERO))
    } else {
        buffer.next_chunk()
    };
    let Some(chunk) = (match next {
        Err(StreamError::Timeout { .. }) if now => return Ok(Next::NotYet),
        other => other.map_err(|e| after(verifier, e))?,
    }) else {
        return Ok(Next::End);
    };
    let visible = monotonic_ns();
    first_pop_ns.get_or_insert(visible);
    verifier.check(&chunk, visible)?;
    // Under continue-after-done the stream offers empty chunks for
    // ever once everything was shown: the first one ends it here.
    let endless = chunk.is_empty() && !chunk.is_final();
    drop(chunk);
    if endless {
        if !buffer.consumer().is_all_in() {
            return Err("an empty chunk came before the stream was all in".into());
        }
        return Ok(Next::End);
    }
    Ok(Next::Chunk)
}

fn after(verifier: &Verifier, e: shmstream::StreamError) -> String {
    format!(
        "after {} items in {} chunks: {e}",
        verifier.items(),
        verifier.chunks
    )
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
