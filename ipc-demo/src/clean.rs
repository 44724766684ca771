//! `ipc-demo clean`: removes this user's segments whose producer died,
//! never a live one (the test is the producer's lock, which the kernel
//! drops when the process dies, so a reused pid cannot fool it).

use crate::cli::Outcome;
use clap::Args;
use shmstream::{
    inspect, inspect_hub, is_dead, list_segments, remove_if_dead, SetupError, DEFAULT_PREFIX,
};

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
        let owner = owner(&name);
        if args.dry_run {
            // The verdict is the removal's own test (the producer's lock),
            // so the dry run says what `clean` would do also for a segment
            // whose header this build cannot read (another layout version);
            // the header only names the owner.
            let who = match &owner {
                Ok((role, pid, _)) => format!("{role} {pid}"),
                Err(e) => format!("owner; header unreadable: {e}"),
            };
            match is_dead(&name) {
                Ok(true) => {
                    removed += 1;
                    println!("would remove {name} ({who} dead)");
                }
                Ok(false) => {
                    kept += 1;
                    println!("would keep {name} ({who} alive)");
                }
                Err(e) => println!("would skip {name}: {e}"),
            }
            continue;
        }
        let role = owner.map_or("owner", |(role, _, _)| role);
        match remove_if_dead(&name) {
            Ok(true) => {
                removed += 1;
                println!("removed {name} ({role} dead)");
            }
            Ok(false) => {
                kept += 1;
                println!("kept {name} ({role} alive)");
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

/// Who owns the segment `name` (a stream's producer, a worker hub's
/// worker), its pid, and whether it is alive.
fn owner(name: &str) -> Result<(&'static str, u32, bool), SetupError> {
    match inspect(name) {
        Ok(info) => Ok(("producer", info.producer_pid, info.producer_alive)),
        Err(e) => match inspect_hub(name) {
            Ok(hub) => Ok(("worker", hub.worker_pid, hub.worker_alive)),
            Err(_) => Err(e),
        },
    }
}
