//! `ipc-demo clean`: removes this user's segments whose producer died,
//! never a live one (the test is the producer's lock, which the kernel
//! drops when the process dies, so a reused pid cannot fool it).

use crate::cli::Outcome;
use clap::Args;
use shmstream::{inspect, list_segments, remove_if_dead, DEFAULT_PREFIX};

/// The cleaner's command line.
#[derive(Args, Clone, Debug)]
pub struct CleanArgs {
    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Prefix of the segments to consider
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
}

/// Removes the dead segments; prints one line per segment.
///
/// # Errors
///
/// `/dev/shm` cannot be listed.
pub fn run(args: &CleanArgs) -> Outcome {
    let names = list_segments(&args.prefix).map_err(|e| format!("cannot list /dev/shm: {e}"))?;
    let (mut removed, mut kept) = (0, 0);
    for name in names {
        if args.dry_run {
            match inspect(&name) {
                Ok(info) if info.producer_alive => {
                    kept += 1;
                    println!("would keep {name} (producer {} alive)", info.producer_pid);
                }
                Ok(info) => {
                    removed += 1;
                    println!("would remove {name} (producer {} dead)", info.producer_pid);
                }
                Err(e) => println!("would skip {name}: {e}"),
            }
            continue;
        }
        match remove_if_dead(&name) {
            Ok(true) => {
                removed += 1;
                println!("removed {name} (producer dead)");
            }
            Ok(false) => {
                kept += 1;
                println!("kept {name} (producer alive)");
            }
            Err(e) => println!("skipped {name}: {e}"),
        }
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!("{verb} {removed}, kept {kept}");
    Ok(())
}
