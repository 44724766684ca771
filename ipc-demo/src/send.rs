//! `ipc-demo send`: the sender of the network ingress. Connects over UCX
//! to `ipc-producer --source ucx --listen ADDR` and offers synthetic items
//! ([`crate::item`]; of one shape or of the sizes of `--sizes`), each
//! filled and stamped in a registered buffer just before it is offered;
//! the receiver lands each one straight in its slot
//! ([`shmstream_net::Sender`]). UCX picks the transport: `UCX_TLS`
//! (`tcp` without RDMA, `rc_x`/`dc_x` on InfiniBand or RoCE) and
//! `UCX_NET_DEVICES` choose.
//!
//! At the end it prints `sent N tensors, B bytes in S s: X GB/s` (the
//! receiver's acknowledgements included) on stdout.

use crate::args::{seconds, ItemArgs};
use crate::cli::Outcome;
use crate::clock::monotonic_ns;
use crate::item::{fill, seal, write_id};
use crate::pace::Pace;
use clap::{Args, ValueEnum};
use shmstream_net::{Sender, SenderOptions};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How tensors travel.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UCX active messages with a rendezvous payload (UCX_TLS picks tcp, rc, dc, ...)
    Ucx,
}

/// The sender's command line.
#[derive(Args, Clone, Debug)]
pub struct SendArgs {
    /// Address of `ipc-producer --source ucx --listen ADDR`
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// How tensors travel
    #[arg(long, value_enum, default_value_t = Transport::Ucx)]
    pub transport: Transport,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub items: ItemArgs,
    /// Offers out (not yet acknowledged by the receiver) at most
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub window: usize,
    /// Tensors of at least this many bytes go by rendezvous, straight into their slots; smaller ones eagerly with the offer, copied into the slot by the receiver (0: all by rendezvous)
    #[arg(long, value_name = "BYTES", default_value = "8K", value_parser = crate::sizes::parse_bytes)]
    pub rendezvous_from: u64,
    /// Seconds without an acknowledgement (or a connection) after which the sender gives up
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub stall_timeout: Duration,
}

impl SendArgs {
    /// These settings as arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec!["--to".to_string(), self.to.clone()];
        out.extend(["--transport".into(), "ucx".into()]);
        self.items.to_args(&mut out);
        out.extend(["--window".into(), self.window.to_string()]);
        out.extend(["--rendezvous-from".into(), self.rendezvous_from.to_string()]);
        out.push("--stall-timeout".into());
        out.push(self.stall_timeout.as_secs_f64().to_string());
        out
    }
}

/// Resolves `to` to its first address.
///
/// # Errors
///
/// An address that does not resolve, as a sentence.
pub fn resolve(to: &str) -> Result<SocketAddr, String> {
    to.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {to:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{to:?} resolves to no address"))
}

/// Offers the items, then the end, and waits for every acknowledgement.
///
/// # Errors
///
/// An address that does not resolve, no UCX, a receiver that refuses an
/// offer or fails, a connection that breaks or stalls.
pub fn run(args: &SendArgs) -> Outcome {
    let plan = args.items.plan()?;
    let addr = resolve(&args.to)?;
    let opts = SenderOptions {
        window: args.window.max(1),
        stall_timeout: args.stall_timeout,
        rendezvous_from: args.rendezvous_from,
        ..SenderOptions::default()
    };
    let broken = |e: shmstream_net::NetError| format!("sending to {}: {e}", args.to);
    let mut sender = Sender::connect(&addr, opts).map_err(broken)?;
    let pace = Pace::new(args.items.rate);
    let mut id = String::with_capacity(24);
    for seq in 0..args.items.items {
        if let Some(due) = pace.due(seq) {
            // Waits in UCX: the receiver fetches earlier tensors meanwhile
            // (a rendezvous needs the sender's progress on tcp).
            sender.progress_until(due).map_err(broken)?;
        }
        let meta = plan.meta(seq);
        write_id(&mut id, seq);
        sender
            .send(&id, &meta, |buf| {
                fill(buf, seq);
                seal(buf, monotonic_ns());
            })
            .map_err(broken)?;
    }
    let report = sender.finish().map_err(broken)?;
    println!(
        "sent {} tensors, {} bytes in {:.3} s: {:.3} GB/s ({} buffers registered)",
        report.committed,
        report.bytes,
        report.elapsed.as_secs_f64(),
        report.bandwidth() / 1e9,
        report.buffers_registered
    );
    Ok(())
}
