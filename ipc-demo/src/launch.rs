//! `ipc-demo run` (what `ipc-demo` does without a subcommand): starts a
//! producer and a consumer as two processes (this executable again, with
//! the hidden subcommands `produce` and `consume`), shows a progress bar
//! read from the segment, and prints the consumer's report.
//!
//! With `--source tcp` the producer listens on 127.0.0.1 (a port the OS
//! picks) and a third process, `ipc-demo send`, feeds it.

use crate::args::{seconds, IdentityArgs, ItemArgs, ReorderArgs, RingArgs, Source, DEFAULT_POLICY};
use crate::child::Proc;
use crate::cli::Outcome;
use crate::consume::ConsumeArgs;
use crate::produce::ProduceArgs;
use crate::report::Report;
use crate::send::SendArgs;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmstream::policy::{ChunkPolicy, Policy};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

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
    /// Where the producer's tensors come from (tcp: a third process sends them over 127.0.0.1)
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
}

/// Runs the pair and prints the report.
///
/// # Errors
///
/// Bad settings (before anything starts), a process that cannot start or
/// that fails (its own message is printed first).
pub fn run(args: &RunArgs) -> Outcome {
    let request = args
        .identity
        .request_id
        .clone()
        .unwrap_or_else(|| format!("demo-{}", std::process::id()));
    let config = args.identity.config(&request, Some(&args.ring));
    let segment = config.segment_name()?;
    args.items.meta_fitting(args.ring.slot_bytes)?;
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
    let exe = std::env::current_exe()?;
    let tcp = args.source == Source::Tcp;
    let produce = ProduceArgs {
        identity: args.identity.clone(),
        ring: args.ring.clone(),
        items: args.items.clone(),
        reorder: args.reorder.clone(),
        source: args.source,
        listen: tcp.then(|| "127.0.0.1:0".to_string()),
        accept_timeout: args.identity.timeout,
    };
    let mut producer = spawn("producer", &exe, "produce", produce.to_args(&request))?;
    let ready = producer.read_line_starting(if tcp { "listening" } else { "segment" });
    let Some(ready) = ready else {
        let status = producer.wait_or_kill(args.identity.timeout)?;
        return Err(failed(&mut [&mut producer], &[status]));
    };
    let consume = ConsumeArgs {
        identity: args.identity.clone(),
        policy: args.policy.clone(),
        items: Some(args.items.items),
        open_timeout: args.open_timeout,
        json: true,
    };
    let mut consumer = spawn("consumer", &exe, "consume", consume.to_args(&request))?;
    consumer.capture_stdout();
    let mut sender = match tcp {
        true => {
            let send = SendArgs {
                to: ready,
                items: args.items.clone(),
                connect_timeout: Duration::from_secs(5),
            };
            Some(spawn("sender", &exe, "send", send.to_args())?)
        }
        false => None,
    };
    watch(&segment, args, &mut producer, &mut consumer)?;
    let grace = args.identity.timeout + Duration::from_secs(5);
    let consumer_status = consumer.wait_or_kill(grace)?;
    let producer_status = producer.wait_or_kill(grace)?;
    let sender_status = match &mut sender {
        Some(s) => Some(s.wait_or_kill(grace)?),
        None => None,
    };
    let mut procs: Vec<&mut Proc> = vec![&mut producer, &mut consumer];
    let mut statuses = vec![producer_status, consumer_status];
    if let (Some(s), Some(status)) = (sender.as_mut(), sender_status) {
        procs.push(s);
        statuses.push(status);
    }
    if statuses.iter().any(|s| !s.success()) {
        return Err(failed(&mut procs, &statuses));
    }
    let line = consumer.stdout();
    let report: Report = serde_json::from_str(line.trim())
        .map_err(|e| format!("the consumer's report is not readable ({e}): {line:?}"))?;
    if args.json {
        println!("{}", line.trim());
    } else {
        let meta = args.items.meta()?;
        println!(
            "ipc-demo: {} items of {}[{}] ({} bytes each), {} source, producer and consumer in two processes",
            args.items.items,
            args.items.dtype,
            args.items.shape,
            meta.nbytes(),
            if tcp { "tcp" } else { "synthetic" }
        );
        println!("{report}");
    }
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

/// Shows progress until the consumer exits (or the producer fails).
fn watch(segment: &str, args: &RunArgs, producer: &mut Proc, consumer: &mut Proc) -> Outcome {
    let bar = ProgressBar::with_draw_target(
        Some(args.items.items),
        if args.no_progress || !std::io::stderr().is_terminal() {
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
    loop {
        if let Ok(info) = shmstream::inspect(segment) {
            let released = info.released.min(args.items.items);
            let seconds = bar.elapsed().as_secs_f64().max(1e-3);
            bar.set_position(released);
            bar.set_message(format!(
                "{:.0} items/s, {} in the ring",
                released as f64 / seconds,
                info.registered.saturating_sub(info.released)
            ));
        }
        if consumer.try_wait()?.is_some() {
            break;
        }
        if let Some(status) = producer.try_wait()? {
            if !status.success() {
                // The consumer notices a dead producer by itself; give it
                // a moment to say so before it is stopped.
                consumer.wait_or_kill(Duration::from_secs(2))?;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    Ok(())
}

/// Prints what the failed processes said; the error names them.
fn failed(procs: &mut [&mut Proc], statuses: &[ExitStatus]) -> Box<dyn std::error::Error> {
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
