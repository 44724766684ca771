//! `ipc-producer`: creates the stream's segment and fills it, standing in
//! for the process that receives tensors over RDMA.
//!
//! - `--source synthetic`: registers items in order, each with its own
//!   size (`--shape`, or the size mix of `--sizes`), and commits them out
//!   of order within groups of `--reorder`, as RDMA completions arrive
//!   (with `--commit-many`, each group by one `commit_many`);
//!   each item's bytes are written straight into its reservation
//!   ([`crate::item`]).
//! - `--source ucx`: accepts one `ipc-demo send --transport ucx` on
//!   `--listen ADDR` and lands each tensor it offers straight in a
//!   reservation of its size, committing as transfers complete (in any
//!   order; [`shmstream_net::Receiver`]). It prints `ucx landed ...` (the
//!   transfers and the offsets they landed at in the payload mapping) and
//!   one `ucx refused ...` line per refused offer (the first and last 16;
//!   past 32, a line with the count in all). A transfer or link that
//!   fails (or stalls for `--timeout`) abandons the slots in flight and
//!   ends the producer with an error: no half-written slot is published.
//!
//! A registration that finds the ring full (every item slot, or the
//! payload bytes, waiting for the consumer) waits; the producer counts
//! those waits by resource and prints them at the end as
//! `backpressure items=N payload_bytes=M` ([`Waits`]).
//!
//! On SIGINT, SIGTERM or SIGHUP it removes the segment, says how many
//! items it committed, and exits with 128 + the signal
//! ([`crate::signals`]).
//!
//! It prints `segment NAME` (and, for UCX, `listening ADDR`) on stdout,
//! signals done at the end, and waits for the consumer to release every
//! item before it removes the segment.
//!
//! With `--hub WORKER` (many-streams mode, issue 12) it attaches to the
//! worker hub of `ipc-consumer --hub WORKER` and creates `--streams K`
//! streams through it, `REQUEST-s<S>` to `REQUEST-s<S+K-1>` (`S`:
//! `--stream-offset`), one after the other while the earlier ones already
//! run, each streamed by its own thread as above; it prints `hub NAME`
//! first, and one `backpressure` line summed over its streams.
//!
//! The payload ring is `--payload-bytes`, by default `--capacity` x
//! `--item-bytes` raised to hold the largest item, rounded up to a power
//! of two ([`RingArgs::payload_for`]); `ipc-demo run` passes one that
//! holds the policy's largest window of items.

use crate::args::{
    at_least_one, IdentityArgs, ItemArgs, ReorderArgs, RingArgs, Source, DEFAULT_REQUEST_ID,
};
use crate::cli::Outcome;
use crate::clock::monotonic_ns;
use crate::item::{fill, seal, write_id, SplitMix};
use crate::pace::Pace;
use crate::report::Waits;
use crate::sizes::footprint;
use clap::Args;
use shmstream::{Hub, Producer, Resource, SetupError, Slot, StreamError};
use shmstream_net::{Receiver, ReceiverOptions};
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// The producer's command line.
#[derive(Args, Clone, Debug)]
pub struct ProduceArgs {
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
    /// Where the tensors come from
    #[arg(long, value_enum, default_value_t = Source::Synthetic)]
    pub source: Source,
    /// Address to accept one `ipc-demo send --transport ucx` on (--source ucx); port 0 picks a free port, printed as "listening ADDR"
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Seconds to wait for the sender to connect (--source ucx)
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::args::seconds)]
    pub accept_timeout: Duration,
    /// Many-streams mode: create the streams through the hub of this worker (made by `ipc-consumer --hub WORKER`; waits up to --timeout for it)
    #[arg(long, value_name = "WORKER")]
    pub hub: Option<String>,
    /// With --hub: streams to create, each named REQUEST-sK (K its number) and streamed by its own thread
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = at_least_one)]
    pub streams: u64,
    /// With --hub: the number of this producer's first stream
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub stream_offset: u64,
    /// Wait (up to --timeout) for a consumer to attach before producing (--source synthetic, one stream), so the ring does not fill before the consumer runs and that startup backlog stays out of the consumer's latency percentiles (`ipc-demo run` passes it unless --cold-start)
    #[arg(long)]
    pub wait_consumer: bool,
    /// Adaptive batching (issue 24): stage one-by-one commits into runs of at most this many items, which the consumer takes as one when it looks (every commit still wakes a sleeping consumer)
    #[arg(long, value_name = "ITEMS", value_parser = at_least_one)]
    pub batching: Option<u64>,
}

impl ProduceArgs {
    /// These settings as arguments, with `request` as the request id.
    pub fn to_args(&self, request: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.identity.to_args(request, &mut out);
        self.ring.to_args(&mut out);
        self.items.to_args(&mut out);
        self.reorder.to_args(&mut out);
        out.push("--source".into());
        out.push(match self.source {
            Source::Synthetic => "synthetic".into(),
            Source::Ucx => "ucx".into(),
        });
        if let Some(listen) = &self.listen {
            out.push("--listen".into());
            out.push(listen.clone());
        }
        out.push("--accept-timeout".into());
        out.push(self.accept_timeout.as_secs_f64().to_string());
        if let Some(hub) = &self.hub {
            out.extend(["--hub".into(), hub.clone()]);
            out.extend(["--streams".into(), self.streams.to_string()]);
            out.extend(["--stream-offset".into(), self.stream_offset.to_string()]);
        }
        if self.wait_consumer {
            out.push("--wait-consumer".into());
        }
        if let Some(n) = self.batching {
            out.extend(["--batching".into(), n.to_string()]);
        }
        out
    }
}

/// Runs the producer to the end.
///
/// # Errors
///
/// Bad settings, a segment that cannot be created, a consumer that stops
/// releasing or dies, a bad TCP frame; each as one sentence.
pub fn run(args: &ProduceArgs) -> Outcome {
    crate::signals::exit_on_signal("ipc-producer");
    if args.reorder.reorder > args.ring.capacity {
        return Err(format!(
            "--reorder {} exceeds --capacity {}: a group of registered items must fit in the ring",
            args.reorder.reorder, args.ring.capacity
        )
        .into());
    }
    let listen = match (args.source, &args.listen) {
        (Source::Synthetic, None) => None,
        (Source::Synthetic, Some(_)) => return Err("--listen is only for --source ucx".into()),
        (Source::Ucx, _) if args.hub.is_some() => {
            return Err("--hub works with --source synthetic only".into())
        }
        (Source::Ucx, None) => return Err("--source ucx needs --listen ADDR".into()),
        (Source::Ucx, Some(addr)) => Some(crate::send::resolve(addr)?),
    };
    // Over UCX the sizes come with the offers: each is checked on arrival.
    let need = match listen {
        None => footprint(args.items.plan()?.largest()),
        Some(_) => 0,
    };
    let ring = RingArgs {
        payload_bytes: Some(args.ring.payload_for(need, "the largest item would")?),
        ..args.ring.clone()
    };
    if let Some(worker) = &args.hub {
        return many_streams(args, worker, &ring);
    }
    let config = args.identity.config(DEFAULT_REQUEST_ID, Some(&ring));
    let name = config.segment_name()?;
    let producer = crate::signals::create_producer(&config, &name)
        .map_err(|e| format!("cannot create the stream: {e}"))?;
    producer.set_batching(args.batching);
    let mut out = io::stdout().lock();
    writeln!(out, "segment {name}")?;
    out.flush()?;
    drop(out);
    let mut waits = Waits::default();
    if listen.is_none() && args.wait_consumer {
        wait_attached(&name, args.identity.timeout)?;
    }
    match listen {
        None => synthetic(&producer, args, &mut waits)?,
        Some(addr) => receive(&producer, &addr, args)?,
    }
    // Whoever reads stdout may have stopped after the segment line: a
    // closed pipe is not the producer's failure.
    let _ = writeln!(io::stdout(), "{}", waits.line());
    end(&producer, &name, args.identity.timeout)
}

/// Waits up to `timeout` for a consumer to attach to the segment `name`,
/// so that the latency the consumer reports is the stream's steady state,
/// not a ring filled before the consumer ran (`ipc-demo run --cold-start`
/// keeps that view). Sleeps between looks: the consumer needs the other core.
fn wait_attached(name: &str, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    loop {
        match shmstream::inspect(name) {
            Ok(info) if info.consumer_attached => return Ok(()),
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Ok(_) => {
                return Err(format!(
                    "no consumer attached to {name} within {timeout:?} (without --wait-consumer it produces at once)"
                )
                .into())
            }
            Err(e) => return Err(format!("cannot look at {name}: {e}").into()),
        }
    }
}

/// Signals done and waits up to `timeout` for the consumer to release
/// every item of the segment `name`.
fn end(producer: &Producer, name: &str, timeout: Duration) -> Outcome {
    producer.signal_done();
    match producer.wait_drained(Some(timeout)) {
        Ok(()) => Ok(()),
        // The library reports a consumer that released everything and then
        // left as gone (see the README); the segment's counters tell.
        Err(StreamError::ConsumerGone) if drained(name) => Ok(()),
        Err(e) => Err(format!("after the last item: {e}").into()),
    }
}

/// The request id of stream `number` of a many-streams run.
pub fn stream_request(request: &str, number: u64) -> String {
    format!("{request}-s{number}")
}

/// `--hub`: creates the streams through the worker's hub, one after the
/// other, each streamed (and ended) by its own thread.
fn many_streams(args: &ProduceArgs, worker: &str, ring: &RingArgs) -> Outcome {
    let timeout = args.identity.timeout;
    let hub = attach(worker, &args.identity.prefix, timeout)?;
    let request = args
        .identity
        .request_id
        .as_deref()
        .unwrap_or(DEFAULT_REQUEST_ID);
    let mut out = io::stdout().lock();
    writeln!(out, "hub {}", hub.name())?;
    out.flush()?;
    drop(out);
    let waits = std::thread::scope(|scope| {
        let mut failed = None;
        let mut threads = Vec::new();
        for number in args.stream_offset..args.stream_offset.saturating_add(args.streams) {
            let config = args
                .identity
                .config_of(&stream_request(request, number), Some(ring));
            let made = config.segment_name().and_then(|name| {
                crate::signals::create_registered(&name, || hub.create_stream(&config))
                    .map(|producer| (name, producer))
            });
            let (name, producer) = match made {
                Ok(made) => made,
                Err(e) => {
                    failed = Some(format!("cannot create stream {number}: {e}"));
                    break;
                }
            };
            producer.set_batching(args.batching);
            threads.push(scope.spawn(move || -> Result<Waits, String> {
                let mut waits = Waits::default();
                synthetic(&producer, args, &mut waits)
                    .and_then(|()| end(&producer, &name, timeout))
                    .map_err(|e| format!("stream {number}: {e}"))?;
                Ok(waits)
            }));
        }
        let mut total = Waits::default();
        for thread in threads {
            match thread.join() {
                Ok(Ok(waits)) => {
                    total.items += waits.items;
                    total.payload_bytes += waits.payload_bytes;
                }
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(_) => {
                    failed.get_or_insert_with(|| "a stream's thread panicked".into());
                }
            }
        }
        failed.map_or(Ok(total), Err)
    })?;
    let _ = writeln!(io::stdout(), "{}", waits.line());
    Ok(())
}

/// Attaches to `worker`'s hub, retrying while it does not exist yet.
fn attach(worker: &str, prefix: &str, timeout: Duration) -> Result<Hub, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match Hub::attach(worker, prefix) {
            Ok(hub) => return Ok(hub),
            Err(SetupError::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                return Err(format!(
                    "cannot attach to the hub of worker {worker:?}: {e}"
                ))
            }
        }
    }
}

/// Whether the consumer released every registered item.
fn drained(name: &str) -> bool {
    shmstream::inspect(name).is_ok_and(|info| info.released >= info.registered)
}

/// Reserves `nbytes` for `id`, waiting while the ring is full; each wait
/// is counted in `waits` by the resource that ran out.
fn register<'p>(
    producer: &'p Producer,
    id: &str,
    nbytes: u64,
    waits: &mut Waits,
) -> Result<Slot<'p>, StreamError> {
    match producer.try_register_sized(id, nbytes) {
        Err(StreamError::Full { resource, .. }) => {
            match resource {
                Resource::Items => waits.items += 1,
                Resource::PayloadBytes => waits.payload_bytes += 1,
            }
            producer.register_sized(id, nbytes)
        }
        other => other,
    }
}

/// Registers the items in order, each with its size; commits each group
/// in a shuffled order.
fn synthetic(producer: &Producer, args: &ProduceArgs, waits: &mut Waits) -> Outcome {
    let plan = args.items.plan()?;
    let total = args.items.items;
    let mut rng = SplitMix::new(args.items.sizes.seed);
    let pace = Pace::new(args.items.rate);
    let mut group: Vec<(Slot<'_>, u64)> = Vec::with_capacity(args.reorder.reorder as usize);
    let mut landed = Vec::with_capacity(args.reorder.reorder as usize);
    let mut id = String::with_capacity(24);
    let mut seq = 0u64;
    while seq < total {
        pace.wait(seq);
        let want = args.reorder.reorder.min(total - seq);
        for k in 0..want {
            write_id(&mut id, seq + k);
            let n = plan.nbytes(seq + k);
            // Only the first of a group waits for space: with slots of the
            // group still uncommitted the consumer might need them to make
            // its next chunk, so a full ring ends the group instead.
            let slot = if k == 0 {
                register(producer, &id, n, waits)
            } else {
                match producer.try_register_sized(&id, n) {
                    Err(StreamError::Full { .. }) => break,
                    other => other,
                }
            };
            let mut slot = slot.map_err(|e| format!("registering item {}: {e}", seq + k))?;
            fill(&mut slot.payload_mut()[..n as usize], seq + k);
            group.push((slot, seq + k));
        }
        rng.shuffle(&mut group);
        let registered = group.len() as u64;
        seq += registered;
        // One stamp for the group: its commits follow within nanoseconds.
        let now = monotonic_ns();
        if args.reorder.commit_many {
            landed.extend(group.drain(..).map(|(mut slot, at)| {
                let meta = plan.meta(at);
                seal(&mut slot.payload_mut()[..meta.nbytes() as usize], now);
                (slot, meta)
            }));
            producer.commit_many(&mut landed).map_err(|e| e.error)?;
        }
        for (mut slot, at) in group.drain(..) {
            let meta = plan.meta(at);
            seal(&mut slot.payload_mut()[..meta.nbytes() as usize], now);
            slot.commit(meta).map_err(|e| e.error)?;
        }
        crate::signals::add(registered);
    }
    Ok(())
}

/// `--source ucx`: listens on `addr`, prints `listening ADDR`, and lands
/// the sender's stream in the ring.
fn receive(producer: &Producer, addr: &std::net::SocketAddr, args: &ProduceArgs) -> Outcome {
    let opts = ReceiverOptions {
        accept_timeout: args.accept_timeout,
        stall_timeout: args.identity.timeout,
        ..ReceiverOptions::default()
    };
    let mut receiver = Receiver::bind(producer, addr, opts)
        .map_err(|e| format!("cannot listen on {addr} over UCX: {e}"))?;
    // Live: a signal during the run reports the commits so far.
    receiver.count_commits_in(crate::signals::items_counter());
    let bound = receiver
        .local_addr()
        .ok_or("UCX does not say which address it listens on")?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening {bound}")?;
    out.flush()?;
    drop(out);
    let result = receiver.run();
    let report = receiver.report().clone();
    let mut out = io::stdout().lock();
    for refused in report.refused.sample() {
        let _ = writeln!(out, "ucx refused {refused}");
    }
    if report.refused.omitted() > 0 {
        let _ = writeln!(
            out,
            "ucx refused {} offers in all; {} more not shown",
            report.refused.total(),
            report.refused.omitted()
        );
    }
    let _ = writeln!(
        out,
        "ucx landed {} transfers ({} zero-copy, {} copied), {} bytes at offsets {}..{} of the {}-byte payload mapping, {:.3} GB/s, {} waits for room",
        report.committed,
        report.zero_copy,
        report.copied,
        report.bytes,
        if report.committed == 0 { 0 } else { report.lowest_offset },
        report.highest_end,
        report.region_len,
        report.bandwidth() / 1e9,
        report.ring_full_waits
    );
    drop(out);
    result.map_err(|e| format!("receiving over UCX: {e}"))?;
    Ok(())
}
