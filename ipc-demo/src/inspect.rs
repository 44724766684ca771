//! `ipc-demo inspect`: this user's segments, or one segment's state, read
//! from outside without attaching to it.

use crate::cli::Outcome;
use clap::Args;
use serde::Serialize;
use shmstream::{inspect, list_segments, SegmentInfo, DEFAULT_PREFIX};

/// The inspector's command line.
#[derive(Args, Clone, Debug)]
pub struct InspectArgs {
    /// One segment to show in full (with or without its leading '/') [default: list every segment with --prefix]
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Prefix of the segments to list
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Print one JSON object per segment
    #[arg(long)]
    pub json: bool,
}

/// A segment's state, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct SegmentState {
    /// The shared-memory name.
    pub name: String,
    /// The stream's request id.
    pub request_id: String,
    /// Its edge name.
    pub edge_name: String,
    /// Its source partition.
    pub from_partition: String,
    /// Slots.
    pub capacity: u64,
    /// Bytes per slot.
    pub slot_bytes: u64,
    /// Ids registered.
    pub registered: u64,
    /// Positions released by the consumer.
    pub released: u64,
    /// Slots in use: registered and not yet released.
    pub occupancy: u64,
    /// The producer signalled done.
    pub done: bool,
    /// The producer's process id.
    pub producer_pid: u32,
    /// The producer is alive.
    pub producer_alive: bool,
    /// The consumer's process id (0 before one attached).
    pub consumer_pid: u32,
    /// A consumer is attached and alive.
    pub consumer_alive: bool,
    /// A consumer attached at some point.
    pub consumer_attached: bool,
}

impl From<SegmentInfo> for SegmentState {
    fn from(i: SegmentInfo) -> Self {
        let shmstream::StreamId {
            request_id,
            edge_name,
            from_partition,
        } = i.identity;
        SegmentState {
            name: i.name,
            request_id,
            edge_name,
            from_partition,
            capacity: i.capacity,
            slot_bytes: i.slot_bytes,
            registered: i.registered,
            released: i.released,
            occupancy: i.registered.saturating_sub(i.released),
            done: i.done,
            producer_pid: i.producer_pid,
            producer_alive: i.producer_alive,
            consumer_pid: i.consumer_pid,
            consumer_alive: i.consumer_alive,
            consumer_attached: i.consumer_attached,
        }
    }
}

/// A segment name with its leading '/'.
pub fn full_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    }
}

fn alive(yes: bool) -> &'static str {
    if yes {
        "alive"
    } else {
        "dead"
    }
}

/// Lists the segments, or shows one.
///
/// # Errors
///
/// The named segment cannot be read, or `/dev/shm` cannot be listed.
pub fn run(args: &InspectArgs) -> Outcome {
    if let Some(name) = &args.name {
        let s = SegmentState::from(inspect(&full_name(name))?);
        if args.json {
            println!("{}", serde_json::to_string(&s)?);
        } else {
            show(&s);
        }
        return Ok(());
    }
    let names = list_segments(&args.prefix).map_err(|e| format!("cannot list /dev/shm: {e}"))?;
    if names.is_empty() && !args.json {
        println!("no segments whose name starts with {:?}", args.prefix);
    }
    for name in names {
        match inspect(&name) {
            Ok(info) => {
                let s = SegmentState::from(info);
                if args.json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!(
                        "{}  {}/{}/{}  registered {} released {}  {}  producer {} {}",
                        s.name,
                        s.request_id,
                        s.edge_name,
                        s.from_partition,
                        s.registered,
                        s.released,
                        if s.done { "done" } else { "streaming" },
                        s.producer_pid,
                        alive(s.producer_alive)
                    );
                }
            }
            Err(e) if args.json => println!(
                "{}",
                serde_json::json!({ "name": name, "error": e.to_string() })
            ),
            Err(e) => println!("{name}  cannot be read: {e}"),
        }
    }
    Ok(())
}

fn show(s: &SegmentState) {
    let payload = s.capacity * s.slot_bytes;
    println!("segment      {}", s.name);
    println!(
        "identity     request_id={} edge_name={} from_partition={}",
        s.request_id, s.edge_name, s.from_partition
    );
    println!(
        "layout       {} slots x {} bytes = {:.1} MiB of payload (mapped twice)",
        s.capacity,
        s.slot_bytes,
        payload as f64 / (1 << 20) as f64
    );
    println!("registered   {}", s.registered);
    println!("released     {}", s.released);
    println!(
        "occupancy    {} of {} slots ({:.1} %)",
        s.occupancy,
        s.capacity,
        100.0 * s.occupancy as f64 / s.capacity as f64
    );
    println!("done         {}", if s.done { "yes" } else { "no" });
    println!(
        "producer     pid {}, {}",
        s.producer_pid,
        alive(s.producer_alive)
    );
    if s.consumer_attached || s.consumer_pid != 0 {
        println!(
            "consumer     pid {}, {}",
            s.consumer_pid,
            alive(s.consumer_alive)
        );
    } else {
        println!("consumer     none attached yet");
    }
}
