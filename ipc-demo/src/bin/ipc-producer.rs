//! `ipc-producer`: creates a stream's segment and fills it (see
//! `ipc_demo::produce`).

use clap::Parser;
use ipc_demo::cli::{finish, parse_or_exit};
use ipc_demo::produce::ProduceArgs;
use std::process::ExitCode;

/// Creates a shmstream segment and streams tensors into it, standing in for
/// the process that receives them over RDMA.
///
/// Prints "segment NAME" (and with --source ucx "listening ADDR") on stdout,
/// signals done after the last item, and waits for the consumer to release
/// every item before it removes the segment.
#[derive(Parser, Debug)]
#[command(name = "ipc-producer", version)]
struct Cli {
    #[command(flatten)]
    args: ProduceArgs,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit("ipc-producer");
    finish("ipc-producer", ipc_demo::produce::run(&cli.args))
}
