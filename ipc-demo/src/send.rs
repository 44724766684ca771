//! `ipc-demo send`: the TCP sender. Connects to `ipc-producer --source tcp`
//! and sends synthetic items ([`crate::item`]; of one shape or of the
//! sizes of `--sizes`) in the framed format of [`crate::wire`], each
//! stamped just before it is written.

use crate::args::{seconds, ItemArgs};
use crate::cli::Outcome;
use crate::clock::monotonic_ns;
use crate::item::{fill, seal, write_id};
use crate::pace::Pace;
use crate::wire;
use clap::Args;
use std::io::{BufWriter, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The sender's command line.
#[derive(Args, Clone, Debug)]
pub struct SendArgs {
    /// Address of `ipc-producer --source tcp --listen ADDR`
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub items: ItemArgs,
    /// Seconds to wait for the connection
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds)]
    pub connect_timeout: Duration,
}

impl SendArgs {
    /// These settings as arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec!["--to".to_string(), self.to.clone()];
        self.items.to_args(&mut out);
        out.push("--connect-timeout".into());
        out.push(self.connect_timeout.as_secs_f64().to_string());
        out
    }
}

/// Sends the items and the end frame.
///
/// # Errors
///
/// An address that does not resolve or accept, a broken connection.
pub fn run(args: &SendArgs) -> Outcome {
    let plan = args.items.plan()?;
    let stream = connect(&args.to, args.connect_timeout)?;
    stream.set_nodelay(true)?;
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    // One buffer of the largest item (at most MAX_ITEM_BYTES), reused.
    let mut buf = vec![0u8; plan.largest() as usize];
    let pace = Pace::new(args.items.rate);
    let broken = |e: std::io::Error| format!("sending to {}: {e}", args.to);
    let mut id = String::with_capacity(24);
    for seq in 0..args.items.items {
        pace.wait(seq);
        let meta = plan.meta(seq);
        let buf = &mut buf[..meta.nbytes() as usize];
        fill(buf, seq);
        seal(buf, monotonic_ns());
        write_id(&mut id, seq);
        wire::write_header(&mut w, &id, &meta).map_err(broken)?;
        w.write_all(buf).map_err(broken)?;
        if args.items.rate.is_some() {
            w.flush().map_err(broken)?;
        }
    }
    wire::write_end(&mut w).map_err(broken)?;
    let stream = w.into_inner().map_err(|e| broken(e.into_error()))?;
    stream.shutdown(Shutdown::Write).map_err(broken)?;
    Ok(())
}

fn connect(to: &str, timeout: Duration) -> Result<TcpStream, String> {
    let addrs: Vec<_> = to
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {to:?}: {e}"))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => format!("cannot connect to {to}: {e}"),
        None => format!("{to:?} resolves to no address"),
    })
}
