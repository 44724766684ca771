//! `ipc-demo inspect`: this user's segments, or one segment's state, read
//! from outside without attaching to it.

use crate::cli::Outcome;
use crate::sizes::fmt_bytes;
use clap::Args;
use serde::Serialize;
use shmstream::{inspect, inspect_hub, list_segments, HubInfo, SegmentInfo, DEFAULT_PREFIX};

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
    /// Items the ring holds at most.
    pub capacity: u64,
    /// Bytes a registration without a size reserves.
    pub item_bytes: u64,
    /// Bytes of the payload ring.
    pub payload_bytes: u64,
    /// Ids registered.
    pub registered: u64,
    /// Positions released by the consumer.
    pub released: u64,
    /// Items in use: registered and not yet released (of `capacity`).
    pub items_in_use: u64,
    /// Payload bytes in use: from the end of the last released item to the
    /// end of the newest one, padding included (of `payload_bytes`).
    pub bytes_in_use: u64,
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
            item_bytes: i.item_bytes,
            payload_bytes: i.payload_bytes,
            registered: i.registered,
            released: i.released,
            items_in_use: i.registered.saturating_sub(i.released),
            bytes_in_use: i.bytes_in_use,
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
        let name = full_name(name);
        let info = match inspect(&name) {
            Ok(info) => info,
            // Not a stream: perhaps a worker hub (issue 12).
            Err(e) => match inspect_hub(&name) {
                Ok(hub) => return show_hub(&hub, args.json, true),
                Err(_) => return Err(e.into()),
            },
        };
        let s = SegmentState::from(info);
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
                        "{}  {}/{}/{}  registered {} released {}  items {}/{} bytes {}/{}  {}  producer {} {}",
                        s.name,
                        s.request_id,
                        s.edge_name,
                        s.from_partition,
                        s.registered,
                        s.released,
                        s.items_in_use,
                        s.capacity,
                        s.bytes_in_use,
                        s.payload_bytes,
                        if s.done { "done" } else { "streaming" },
                        s.producer_pid,
                        alive(s.producer_alive)
                    );
                }
            }
            // Not a stream: perhaps a worker hub (issue 12).
            Err(e) => match inspect_hub(&name) {
                Ok(hub) => show_hub(&hub, args.json, false)?,
                Err(_) if args.json => println!(
                    "{}",
                    serde_json::json!({ "name": name, "error": e.to_string() })
                ),
                Err(_) => println!("{name}  cannot be read: {e}"),
            },
        }
    }
    Ok(())
}

/// A worker hub: one line (a listing) or every stream it announces.
fn show_hub(hub: &HubInfo, json: bool, full: bool) -> Outcome {
    let streams: Vec<String> = hub
        .streams
        .iter()
        .map(|s| match &s.identity {
            Some(id) => format!("{id} (entry {}, producer {})", s.entry, s.producer_pid),
            None => format!("in-process stream (entry {})", s.entry),
        })
        .collect();
    if json {
        let value = serde_json::json!({
            "name": hub.name,
            "hub": true,
            "worker": hub.worker,
            "worker_pid": hub.worker_pid,
            "worker_alive": hub.worker_alive,
            "entries": hub.entries,
            "streams": streams,
            "claimed": hub.claimed,
            "producer_pids": hub.producer_pids,
        });
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    println!(
        "{}  worker hub of {:?}  streams {}/{} ({} being announced)  producers {:?}  worker {} {}",
        hub.name,
        hub.worker,
        hub.streams.len(),
        hub.entries,
        hub.claimed,
        hub.producer_pids,
        hub.worker_pid,
        alive(hub.worker_alive)
    );
    if full {
        for s in &streams {
            println!("  {s}");
        }
    }
    Ok(())
}

fn show(s: &SegmentState) {
    let percent = |part: u64, whole: u64| 100.0 * part as f64 / whole.max(1) as f64;
    println!("segment      {}", s.name);
    println!(
        "identity     request_id={} edge_name={} from_partition={}",
        s.request_id, s.edge_name, s.from_partition
    );
    println!(
        "layout       {} items, a payload ring of {} bytes ({}, mapped twice), {} bytes per registration without a size",
        s.capacity,
        s.payload_bytes,
        fmt_bytes(s.payload_bytes),
        s.item_bytes
    );
    println!("registered   {}", s.registered);
    println!("released     {}", s.released);
    println!(
        "items        {} of {} in use ({:.1} %)",
        s.items_in_use,
        s.capacity,
        percent(s.items_in_use, s.capacity)
    );
    println!(
        "bytes        {} of {} in use ({:.1} %)",
        s.bytes_in_use,
        s.payload_bytes,
        percent(s.bytes_in_use, s.payload_bytes)
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
