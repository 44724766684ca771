//! `ipc-demo`: runs a producer/consumer pair over a shared-memory stream
//! (the default), and the tools around a segment.

use clap::{Parser, Subcommand};
use ipc_demo::clean::CleanArgs;
use ipc_demo::cli::{finish, parse_or_exit, Outcome};
use ipc_demo::consume_args::ConsumeArgs;
use ipc_demo::inspect::InspectArgs;
use ipc_demo::launch::RunArgs;
use ipc_demo::produce::ProduceArgs;
use ipc_demo::replay::ReplayArgs;
use ipc_demo::send::SendArgs;
use ipc_demo::wake::WakeArgs;
use std::process::ExitCode;

/// Zero-copy tensor streaming between two processes through shared memory.
///
/// Without a subcommand, runs a producer and a consumer process over one
/// stream (as `ipc-demo run`) and prints the consumer's report.
#[derive(Parser, Debug)]
#[command(name = "ipc-demo", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a producer and a consumer process over one stream and report (the default)
    Run(RunArgs),
    /// List this user's segments, or show one segment's state
    Inspect(InspectArgs),
    /// Remove segments whose producer is dead (never a live one)
    Clean(CleanArgs),
    /// Offer synthetic tensors over UCX to `ipc-producer --source ucx`
    Send(SendArgs),
    /// Run a JSON-lines trace through a real segment and print every chunk
    Replay(ReplayArgs),
    /// The producer process (as ipc-producer)
    #[command(hide = true)]
    Produce(ProduceArgs),
    /// The consumer process (as ipc-consumer)
    #[command(hide = true)]
    Consume(ConsumeArgs),
    /// The Rust consumer of the Python drop-in benchmark's wake-up rows
    #[command(hide = true)]
    Wake(WakeArgs),
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit("ipc-demo");
    let (prog, outcome): (&str, Outcome) = match &cli.command {
        None => ("ipc-demo", ipc_demo::launch::run(&cli.run)),
        Some(Command::Run(args)) => ("ipc-demo", ipc_demo::launch::run(args)),
        Some(Command::Inspect(args)) => ("ipc-demo inspect", ipc_demo::inspect::run(args)),
        Some(Command::Clean(args)) => ("ipc-demo clean", ipc_demo::clean::run(args)),
        Some(Command::Send(args)) => ("ipc-demo send", ipc_demo::send::run(args)),
        Some(Command::Replay(args)) => ("ipc-demo replay", ipc_demo::replay::run(args)),
        Some(Command::Produce(args)) => ("ipc-demo produce", ipc_demo::produce::run(args)),
        Some(Command::Consume(args)) => ("ipc-demo consume", ipc_demo::consume::run(args)),
        Some(Command::Wake(args)) => ("ipc-demo wake", ipc_demo::wake::run(args)),
    };
    finish(prog, outcome)
}
