//! `ipc-demo run` (what `ipc-demo` does without a subcommand): starts a
//! producer and a consumer as two processes (this executable again, with
//! the hidden subcommands `produce` and `consume`), shows a progress bar
//! read from the segment, and prints the consumer's report.
//!
//! The launcher owns its children: it forwards SIGINT, SIGTERM and SIGHUP
//! to them, waits for them, reports how far the stream got and exits with
//! 128 + the signal; each child ends when the launcher dies
//! ([`crate::child`]).
//!
//! With `--source ucx` the producer listens on 127.0.0.1 (a port the OS
//! picks) and a third process, `ipc-demo send --transport ucx`, offers it
//! the tensors over UCX (sender -> receiver -> consumer; `UCX_TLS` picks
//! the transport, tcp on loopback).
//!
//! Before anything starts the launcher checks that the ring can carry the
//! stream: the policy's largest window fits in `--capacity` items, and in
//! the payload (a window of the heaviest run of `--sizes`, padding
//! included); without `--payload-bytes` it picks a payload that does. The
//! report adds the producer's waits for a full ring (`backpressure`).
//!
//! With `--streams N` or `--producers P` above 1 (many-streams mode, issue
//! 12) it starts one consumer with a worker hub first (`consume --hub`,
//! [`crate::many`]), then P producers, each creating its share of the N
//! streams through that hub (`produce --hub --streams K --stream-offset
//! S`), and prints the consumer's per-stream summary and the producers'
//! waits summed. Signals and the end work as for one stream, over every
//! stream's segment and the hub.

use crate::args::{
    at_least_one, seconds, IdentityArgs, ItemArgs, ReorderArgs, RingArgs, Source, DEFAULT_POLICY,
};
use crate::child::{Line, Proc};
use crate::cli::{Interrupted, Outcome};
use crate::consume_args::ConsumeArgs;
use crate::produce::{stream_request, ProduceArgs};
use crate::progress::{bar_message, Progress};
use crate::report::{Report, Waits};
use crate::send::SendArgs;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmstream::policy::{ChunkPolicy, Policy};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// The launcher's command line.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub ring: RingArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub items: ItemArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub reorder: ReorderArgs,
    /// Chunk policy of the consumer, e.g. fixed:size=30, sliding:window=28,stride=7, left-context:chunk=10,context=2, ramp:first=4,size=8,growth=2,max=32, scheduled:schedule=4/8/16,chunk=25,context=25
    #[arg(long, value_name = "POLICY", default_value = DEFAULT_POLICY)]
    pub policy: Policy,
    /// Where the producer's tensors come from (ucx: a third process offers them over UCX on 127.0.0.1)
    #[arg(long, value_enum, default_value_t = Source::Synthetic)]
    pub source: Source,
    /// Seconds the consumer retries opening the stream
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub open_timeout: Duration,
    /// Print the consumer's report as one JSON line instead of a table
    #[arg(long)]
    pub json: bool,
    /// Do not show the progress bar (it is shown only on a terminal anyway)
    #[arg(long)]
    pub no_progress: bool,
    /// Instead of the bar, print its text as a line on stderr each time the consumer reports (about every 0.5 s), also when not on a terminal
    #[arg(long, hide = true, conflicts_with = "no_progress")]
    pub progress_lines: bool,
    /// Many-streams mode: this many streams through one worker hub, taken by one consumer with wait_any (--items is then per stream)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    pub streams: u64,
    /// Many-streams mode: producer processes sharing the streams
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = at_least_one)]
    pub producers: u64,
    /// Let the producer start before the consumer attached (the startup backlog then lands in the latency percentiles; by default the producer waits for the consumer and the report shows the steady state)
    #[arg(long)]
    pub cold_start: bool,
    /// Adaptive batching on the producer (issue 24): one-by-one commits staged into runs of at most this many items (default: off)
    #[arg(long, value_name = "ITEMS", value_parser = at_least_one)]
    pub batching: Option<u64>,
}

/// How long the children get to end after a forwarded signal before the
/// launcher kills them.
pub const STOP_GRACE: Duration = Duration::from_millis(1500);
/// How often the launcher looks at the segment, its children and signals.
const TICK: Duration = Duration::from_millis(50);

/// The running processes: the launcher owns them. Dropping it (any early
/// return) kills the children still running and removes the segments
/// (and the hub) whose owner is dead.
struct Launch {
    /// Every stream's segment.
    segments: Vec<String>,
    /// The worker hub (many-streams mode).
    hub: Option<String>,
    /// Items of each stream.
    per_stream: u64,
    /// Items the consumer released, per stream, as last seen in its segment.
    released: Vec<u64>,
    procs: Vec<Proc>,
    /// Which of `procs` is the consumer (the others produce or send).
    consumer: usize,
}

impl Launch {
    fn new(segments: Vec<String>, hub: Option<String>, per_stream: u64, consumer: usize) -> Self {
        Launch {
            released: vec![0; segments.len()],
            segments,
            hub,
            per_stream,
            procs: Vec::new(),
            consumer,
        }
    }

    /// Reads every segment's counters; the first one's info (`None` once
    /// it is gone).
    fn look(&mut self) -> Option<shmstream::SegmentInfo> {
        let mut first = None;
        for (segment, released) in self.segments.iter().zip(&mut self.released) {
            if let Ok(info) = shmstream::inspect(segment) {
                *released = (*released).max(info.released.min(self.per_stream));
                first.get_or_insert(info);
            }
        }
        first
    }

    fn total(&self) -> u64 {
        self.per_stream * self.segments.len() as u64
    }

    /// Removes every segment and the hub whose owner is dead.
    fn remove_dead(&self) {
        for name in self.segments.iter().chain(&self.hub) {
            let _ = shmstream::remove_if_dead(name);
        }
    }

    /// Waits for the line of child `at` that starts with `key`, watching
    /// for signals; a child that exits first fails the launch.
    fn line_of(
        &mut self,
        at: usize,
        key: &str,
        timeout: Duration,
    ) -> Result<String, Box<dyn std::error::Error>> {
        loop {
            self.check_signals()?;
            match self.procs[at].line_starting(key, TICK) {
                Line::Found(line) => return Ok(line),
                Line::Pending => continue,
                Line::Ended => {
                    // Its stdout closed: it is exiting.
                    let statuses = self.wait_all(timeout)?;
                    return Err(failed(&mut self.procs, &statuses));
                }
            }
        }
    }

    /// An error when SIGINT, SIGTERM or SIGHUP came: the children are
    /// stopped first.
    fn check_signals(&mut self) -> Outcome {
        match crate::signals::received() {
            Some(signal) => Err(self.stop(signal)),
            None => Ok(()),
        }
    }

    /// Forwards `signal` to every child, waits for them ([`STOP_GRACE`],
    /// then kills them), removes the segment if it is left, and says what
    /// was done.
    fn stop(&mut self, signal: libc::c_int) -> Box<dyn std::error::Error> {
        self.look();
        for p in &mut self.procs {
            let _ = p.signal(signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut killed = Vec::new();
        for p in &mut self.procs {
            if !matches!(p.wait_until(deadline), Ok(Some(_))) {
                let _ = p.kill();
                killed.push(p.role);
            }
        }
        // A producer killed before it could remove its segment: its lock
        // is gone with it, so the segment is dead and can go.
        self.remove_dead();
        for p in &mut self.procs {
            for line in p.stderr().lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("{line}");
            }
        }
        // Each role once, plural when several processes have it.
        let mut roles: Vec<String> = Vec::new();
        for p in &self.procs {
            match roles.iter_mut().find(|r| r.trim_end_matches('s') == p.role) {
                Some(role) if !role.ends_with('s') => role.push('s'),
                Some(_) => {}
                None => roles.push(p.role.to_string()),
            }
        }
        let mut message = format!(
            "interrupted by {} after {} of {} items; {} stopped",
            crate::signals::name(signal),
            self.released.iter().sum::<u64>(),
            self.total(),
            roles.join(" and ")
        );
        if !killed.is_empty() {
            message += &format!(" ({} killed after {STOP_GRACE:?})", killed.join(" and "));
        }
        Box::new(Interrupted { signal, message })
    }

    /// Waits up to `timeout` for every child to exit, watching for
    /// signals; kills those still running after it.
    fn wait_all(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<ExitStatus>, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_signals()?;
            let mut all = true;
            for p in &mut self.procs {
                all &= p.try_wait()?.is_some();
            }
            if all || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut statuses = Vec::new();
        for p in &mut self.procs {
            statuses.push(p.kill()?);
        }
        Ok(statuses)
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
        }
        self.remove_dead();
    }
}

/// Runs the pair and prints the report.
///
/// SIGINT, SIGTERM and SIGHUP are forwarded to the children; the launcher
/// waits for them (at most [`STOP_GRACE`]), says how many items were
/// done, and exits with 128 + the signal. The children end by themselves
/// when the launcher dies (see [`crate::child`]).
///
/// # Errors
///
/// Bad settings (before anything starts), a process that cannot start or
/// that fails (its own message is printed first), a signal
/// ([`Interrupted`]).
pub fn run(args: &RunArgs) -> Outcome {
    let request = args
        .identity
        .request_id
        .clone()
        .unwrap_or_else(|| format!("demo-{}", std::process::id()));
    let plan = args.items.plan()?;
    let window = args.policy.max_window() as u64;
    if window > args.ring.capacity {
        return Err(format!(
            "policy {} needs windows of up to {window} items, more than --capacity {}",
            args.policy, args.ring.capacity
        )
        .into());
    }
    if args.reorder.reorder > args.ring.capacity {
        return Err(format!(
            "--reorder {} exceeds --capacity {}",
            args.reorder.reorder, args.ring.capacity
        )
        .into());
    }
    // The consumer holds up to a window of items while it waits for the
    // rest of the next one: the payload must hold a window of the largest
    // run of sizes, or the stream stalls.
    let need = plan.window_bytes(window.max(1));
    let what = match window {
        0 | 1 => format!(
            "policy {} shows one item at a time, and one item of {} would",
            args.policy,
            args.items.describe()
        ),
        _ => format!(
            "policy {} shows up to {window} items at once, and {window} items of {}",
            args.policy,
            args.items.describe()
        ),
    };
    let ring = RingArgs {
        payload_bytes: Some(args.ring.payload_for(need, &what)?),
        ..args.ring.clone()
    };
    if args.streams > 1 || args.producers > 1 {
        return run_many(args, &request, ring, &plan);
    }
    let config = args.identity.config(&request, Some(&ring));
    let segment = config.segment_name()?;
    let exe = std::env::current_exe()?;
    let ucx = args.source == Source::Ucx;
    crate::signals::record_signals();
    let mut launch = Launch::new(vec![segment], None, args.items.items, 1);
    let produce = ProduceArgs {
        identity: args.identity.clone(),
        ring,
        items: args.items.clone(),
        reorder: args.reorder.clone(),
        source: args.source,
        listen: ucx.then(|| "127.0.0.1:0".to_string()),
        accept_timeout: args.identity.timeout,
        hub: None,
        streams: 1,
        stream_offset: 0,
        wait_consumer: !args.cold_start,
        batching: args.batching,
    };
    launch.procs.push(spawn(
        "producer",
        &exe,
        "produce",
        produce.to_args(&request),
    )?);
    let key = if ucx { "listening" } else { "segment" };
    let ready = launch.line_of(0, key, args.identity.timeout)?;
    let consume = ConsumeArgs {
        identity: args.identity.clone(),
        policy: args.policy.clone(),
        items: Some(args.items.items),
        sizes: Some(plan.as_mix().0),
        seed: plan.as_mix().1,
        open_timeout: args.open_timeout,
        json: true,
        hub: None,
        streams: 1,
        progress: true,
    };
    launch.procs.push(spawn(
        "consumer",
        &exe,
        "consume",
        consume.to_args(&request),
    )?);
    launch.check_signals()?;
    if ucx {
        let send = SendArgs {
            to: ready,
            transport: crate::send::Transport::Ucx,
            items: args.items.clone(),
            window: 64,
            rendezvous_from: 8 << 10,
            stall_timeout: args.identity.timeout,
        };
        launch
            .procs
            .push(spawn("sender", &exe, "send", send.to_args())?);
        launch.check_signals()?;
    }
    watch(&mut launch, args)?;
    let grace = args.identity.timeout + Duration::from_secs(5);
    let statuses = launch.wait_all(grace)?;
    if statuses.iter().any(|s| !s.success()) {
        return Err(failed(&mut launch.procs, &statuses));
    }
    // The report, after the progress lines the watch did not take.
    let out = launch.procs[1].stdout();
    let line = out
        .lines()
        .filter(|l| !l.starts_with("progress "))
        .collect::<Vec<_>>()
        .join("\n");
    let mut report: Report = serde_json::from_str(line.trim())
        .map_err(|e| format!("the consumer's report is not readable ({e}): {line:?}"))?;
    report.backpressure = launch.procs[0]
        .stdout()
        .lines()
        .find_map(|l| Waits::parse(l.strip_prefix("backpressure ")?));
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "ipc-demo: {} items of {}, {} source, producer and consumer in two processes",
            args.items.items,
            args.items.describe(),
            if ucx { "ucx" } else { "synthetic" }
        );
        println!("{report}");
    }
    Ok(())
}

/// Many-streams mode: one consumer with the hub, then the producers.
fn run_many(
    args: &RunArgs,
    request: &str,
    ring: RingArgs,
    plan: &crate::sizes::ItemPlan,
) -> Outcome {
    let (n, p) = (args.streams, args.producers);
    // Checked before anything is built per stream or producer.
    if n > u64::from(shmstream::MAX_HUB_ENTRIES) {
        let max = shmstream::MAX_HUB_ENTRIES;
        return Err(format!("--streams {n} exceeds a hub's {max} entries").into());
    }
    if p > shmstream::MAX_HUB_PRODUCERS as u64 {
        let max = shmstream::MAX_HUB_PRODUCERS;
        return Err(format!("--producers {p} exceeds a hub's {max} producers").into());
    }
    if p > n {
        return Err(
            format!("--producers {p} exceeds --streams {n}: each producer needs a stream").into(),
        );
    }
    if args.source == Source::Ucx {
        return Err("--streams and --producers work with --source synthetic only".into());
    }
    let segments = (0..n)
        .map(|i| {
            args.identity
                .config_of(&stream_request(request, i), Some(&ring))
                .segment_name()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hub = shmstream::hub_name(request, &args.identity.prefix)?;
    let exe = std::env::current_exe()?;
    crate::signals::record_signals();
    let mut launch = Launch::new(segments, Some(hub), args.items.items, 0);
    let consume = ConsumeArgs {
        identity: args.identity.clone(),
        policy: args.policy.clone(),
        items: Some(args.items.items),
        sizes: Some(plan.as_mix().0),
        seed: plan.as_mix().1,
        open_timeout: args.open_timeout,
        json: true,
        hub: Some(request.to_string()),
        streams: n,
        progress: false,
    };
    launch.procs.push(spawn(
        "consumer",
        &exe,
        "consume",
        consume.to_args(request),
    )?);
    launch.line_of(0, "hub", args.identity.timeout)?;
    let mut offset = 0;
    for j in 0..p {
        let streams = n / p + u64::from(j < n % p);
        let produce = ProduceArgs {
            identity: args.identity.clone(),
            ring: ring.clone(),
            items: args.items.clone(),
            reorder: args.reorder.clone(),
            source: Source::Synthetic,
            listen: None,
            accept_timeout: args.identity.timeout,
            hub: Some(request.to_string()),
            streams,
            stream_offset: offset,
            wait_consumer: false,
            batching: args.batching,
        };
        offset += streams;
        launch.procs.push(spawn(
            "producer",
            &exe,
            "produce",
            produce.to_args(request),
        )?);
        launch.check_signals()?;
    }
    watch(&mut launch, args)?;
    let grace = args.identity.timeout + Duration::from_secs(5);
    let statuses = launch.wait_all(grace)?;
    if statuses.iter().any(|s| !s.success()) {
        return Err(failed(&mut launch.procs, &statuses));
    }
    let line = launch.procs[0].stdout();
    let mut value: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("the consumer's summary is not readable ({e}): {line:?}"))?;
    let mut waits = Waits::default();
    for proc in &mut launch.procs[1..] {
        if let Some(w) = proc
            .stdout()
            .lines()
            .find_map(|l| Waits::parse(l.strip_prefix("backpressure ")?))
        {
            waits.items += w.items;
            waits.payload_bytes += w.payload_bytes;
        }
    }
    if args.json {
        value["backpressure"] = serde_json::to_value(waits)?;
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    println!(
        "ipc-demo: {n} streams of {} items of {} each, from {p} producer processes, one consumer process with wait_any",
        args.items.items,
        args.items.describe()
    );
    println!("hub            {}", value["hub"].as_str().unwrap_or("?"));
    println!("policy         {}", value["policy"].as_str().unwrap_or("?"));
    for s in value["streams"].as_array().into_iter().flatten() {
        println!(
            "stream {}  items {}  bytes {}  chunks {}",
            s["stream"].as_str().unwrap_or("?"),
            s["items"],
            s["bytes"],
            s["chunks"]
        );
    }
    let t = &value["total"];
    println!(
        "total          {} streams, {} items of {} expected, {} bytes, {} chunks, every item verified, in {:.3} s",
        t["streams"], t["items"], n * args.items.items, t["bytes"], t["chunks"],
        t["seconds"].as_f64().unwrap_or(0.0)
    );
    println!(
        "backpressure   the producers waited {} times for an item slot, {} times for payload bytes",
        waits.items, waits.payload_bytes
    );
    Ok(())
}

fn spawn(
    role: &'static str,
    exe: &Path,
    sub: &str,
    mut args: Vec<String>,
) -> std::io::Result<Proc> {
    args.insert(0, sub.to_string());
    Proc::spawn(role, exe, &args)
}

/// Shows progress until the consumer exits (or the producer fails, or a
/// signal comes).
fn watch(launch: &mut Launch, args: &RunArgs) -> Outcome {
    let bar = ProgressBar::with_draw_target(
        Some(args.items.items),
        if args.no_progress || args.progress_lines || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} items released, {msg}",
        )?
        .progress_chars("=> "),
    );
    let outcome = watch_with(launch, &bar, args.progress_lines);
    bar.finish_and_clear();
    outcome
}

fn watch_with(launch: &mut Launch, bar: &ProgressBar, lines: bool) -> Outcome {
    let consumer = launch.consumer;
    let mut progress: Option<Progress> = None;
    loop {
        launch.check_signals()?;
        // The consumer's latest running numbers (one stream only).
        let reported = launch.procs[consumer].take_lines_starting(Progress::KEY);
        let fresh = reported
            .iter()
            .filter_map(|l| Progress::parse(l))
            .next_back();
        let new = fresh.is_some();
        progress = fresh.or(progress);
        // Many streams: no bar (a look would open every segment each tick).
        let one = launch.segments.len() == 1;
        if let Some(info) = launch.look().filter(|_| one) {
            let released = info.released.min(launch.per_stream);
            let seconds = bar.elapsed().as_secs_f64().max(1e-3);
            bar.set_position(released);
            let message = bar_message(
                released as f64 / seconds,
                progress.as_ref(),
                info.registered.saturating_sub(info.released),
                info.bytes_in_use,
            );
            if lines && new {
                eprintln!(
                    "progress {released}/{} items released, {message}",
                    launch.per_stream
                );
            }
            bar.set_message(message);
        }
        if launch.procs[consumer].try_wait()?.is_some() {
            return Ok(());
        }
        let mut producer_failed = false;
        for (i, p) in launch.procs.iter_mut().enumerate() {
            if i != consumer && p.role == "producer" {
                producer_failed |= p.try_wait()?.is_some_and(|s| !s.success());
            }
        }
        if producer_failed {
            // The consumer notices a dead producer by itself; give it
            // a moment to say so before it is stopped.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && launch.procs[consumer].try_wait()?.is_none() {
                launch.check_signals()?;
                std::thread::sleep(Duration::from_millis(10));
            }
            return Ok(());
        }
        std::thread::sleep(TICK);
    }
}

/// Prints what the failed processes said; the error names them.
fn failed(procs: &mut [Proc], statuses: &[ExitStatus]) -> Box<dyn std::error::Error> {
    let mut names = Vec::new();
    for (p, status) in procs.iter_mut().zip(statuses) {
        let said = p.stderr();
        for line in said.lines().filter(|l| !l.trim().is_empty()) {
            eprintln!("{line}");
        }
        if !status.success() {
            names.push(format!("the {} ({status})", p.role));
        }
    }
    format!("{} failed", names.join(" and ")).into()
}
