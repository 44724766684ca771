//! Looking at a segment from outside: `inspect`, what a segment holds and
//! whether its processes live.

use crate::config::StreamId;
use crate::error::SetupError;
use crate::os::header::open_checked;
use crate::os::mapping::peer_holds_lock;
use crate::protocol::descriptor::Descriptor;
use crate::protocol::handover::{HANDED_OVER, WORKER_CLOSED};
use crate::protocol::layout::{DESCRIPTOR_BYTES, FLAG_CONSUMER_ATTACHED, FLAG_DONE};
use crate::protocol::ring::Side;
use crate::sync::Ordering;
/// A segment's state as seen from outside, for tools: identity, layout,
/// cursors and whether each peer lives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The shared-memory name.
    pub name: String,
    /// The stream's identity as stored in the segment.
    pub identity: StreamId,
    /// Items the ring holds at most.
    pub capacity: u64,
    /// Bytes a registration without a size reserves.
    pub item_bytes: u64,
    /// Bytes of the payload ring.
    pub payload_bytes: u64,
    /// Payload bytes from the start of the oldest unreleased reservation to
    /// the end of the newest (as the descriptors say; 0 when none waits).
    pub bytes_in_use: u64,
    /// Process id recorded by the producer.
    pub producer_pid: u32,
    /// Process id recorded by the consumer (0 before one attached, also
    /// for a hub stream whose producer went first and left it to the
    /// worker, or whose worker went first without adopting it).
    pub consumer_pid: u32,
    /// Ids registered so far.
    pub registered: u64,
    /// Positions the consumer released.
    pub released: u64,
    /// The producer signalled done.
    pub done: bool,
    /// The producer holds its lock (is alive).
    pub producer_alive: bool,
    /// A consumer holds its lock.
    pub consumer_alive: bool,
    /// A consumer attached at some point.
    pub consumer_attached: bool,
}

/// Reads a segment's state without attaching to it.
///
/// # Errors
///
/// As opening a segment: not found, foreign, not initialised, bad layout.
pub fn inspect(name: &str) -> Result<SegmentInfo, SetupError> {
    let (fd, header, page) = open_checked(name)?;
    let g = header.geometry;
    let control = page.control();
    let flags = control.flags.load(Ordering::Acquire);
    let registered = control.registered.load(Ordering::Acquire);
    let released = control.released.load(Ordering::Acquire);
    // The reservation (offset, len) of `position`, read from its descriptor
    // (a plain read of the file: the values are only reported).
    let reservation = |position: u64| -> (u64, u64) {
        let at = g.descriptors_offset
            + (position & (g.capacity - 1)) * DESCRIPTOR_BYTES as u64
            + std::mem::offset_of!(Descriptor, offset) as u64;
        let mut words = [0u8; 16];
        match nix::sys::uio::pread(&fd, &mut words, at as libc::off_t) {
            Ok(16) => {
                let word = |i: usize| u64::from_ne_bytes(words[i..i + 8].try_into().unwrap());
                (word(0), word(8))
            }
            _ => (0, 0),
        }
    };
    // From the start of the oldest unreleased reservation to the end of
    // the newest.
    let bytes_in_use = if released < registered {
        let (newest, len) = reservation(registered - 1);
        newest
            .saturating_add(len)
            .saturating_sub(reservation(released).0)
    } else {
        0
    };
    Ok(SegmentInfo {
        name: name.to_string(),
        identity: {
            let [request_id, edge_name, from_partition] = header.names;
            StreamId {
                request_id,
                edge_name,
                from_partition,
            }
        },
        capacity: g.capacity,
        item_bytes: g.item_bytes,
        payload_bytes: g.payload_bytes,
        bytes_in_use,
        producer_pid: header.producer_pid,
        // A hand-over mark is not a pid: no consumer attached yet.
        consumer_pid: match page.consumer_pid().load(Ordering::Relaxed) {
            HANDED_OVER | WORKER_CLOSED => 0,
            pid => pid,
        },
        registered,
        released,
        done: flags & FLAG_DONE != 0,
        producer_alive: peer_holds_lock(&fd, Side::Producer),
        consumer_alive: peer_holds_lock(&fd, Side::Consumer),
        consumer_attached: flags & FLAG_CONSUMER_ATTACHED != 0,
    })
}
