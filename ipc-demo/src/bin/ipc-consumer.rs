//! `ipc-consumer`: opens a stream, verifies every chunk in place and
//! reports (see `ipc_demo::consume`).

use clap::Parser;
use ipc_demo::cli::{finish, parse_or_exit};
use ipc_demo::consume_args::ConsumeArgs;
use std::process::ExitCode;

/// Opens a shmstream stream by its identity, cuts it into chunks by a
/// policy, reads every window in place and verifies it, then reports items,
/// chunks, throughput, commit-to-chunk latency and bytes copied (0).
#[derive(Parser, Debug)]
#[command(name = "ipc-consumer", version)]
struct Cli {
    #[command(flatten)]
    args: ConsumeArgs,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit("ipc-consumer");
    finish("ipc-consumer", ipc_demo::consume::run(&cli.args))
}
