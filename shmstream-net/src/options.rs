//! The receiver's settings, its report, and the bounds they carry.

use crate::refusals::Refusals;
use std::time::Duration;

/// Offers further ahead of the next expected one than this are refused
/// (`seq`). A distance, not a memory bound: the bytes the reorder buffer
/// holds are bounded by [`ReceiverOptions::max_reorder_bytes`].
pub const MAX_REORDER: u64 = 1 << 16;

/// The default of [`ReceiverOptions::max_reorder_bytes`]: 16 MiB per
/// stream. An honest sender never comes near it: with its default window
/// (64 offers) and eager tensors below 8 KiB it keeps at most
/// 64 x (8 KiB + 2 KiB) = 640 KiB waiting, and 64 x 130 KiB = 8.1 MiB
/// with `rendezvous_from` raised to 128 KiB.
pub const DEFAULT_MAX_REORDER_BYTES: u64 = 16 << 20;

/// Bytes of acknowledgements the receiver lets wait for a sender that
/// does not read them, each charged its header (at most 1044 bytes) plus
/// [`ACK_ENTRY_BYTES`]. An honest sender has at most its window of offers
/// (64 by default) unacknowledged: 64 x 1.3 KiB at the very most. Past it
/// the stream is ended with [`NetError::AcksUnread`](crate::NetError::AcksUnread).
pub const MAX_UNSENT_ACK_BYTES: u64 = 1 << 20;

/// What an unsent acknowledgement costs beyond its header: UCX's request
/// and the receiver's map entry.
pub const ACK_ENTRY_BYTES: u64 = 256;

/// The receiver's settings.
#[derive(Clone, Debug)]
pub struct ReceiverOptions {
    /// How long to wait for the sender to connect.
    pub accept_timeout: Duration,
    /// How long nothing may arrive or complete, while transfers are in
    /// flight or the sender has not ended, before the receiver gives up
    /// (a link that went down without a reset is only noticed this way).
    pub stall_timeout: Duration,
    /// Transfers in flight at most (the ring's room bounds them too).
    pub max_in_flight: usize,
    /// Bytes the receiver holds at most for offers that arrived before
    /// their turn (ahead of a missing `seq`, or while the ring has no
    /// room): each is charged its eager payload plus
    /// [`REORDER_ENTRY_BYTES`](crate::REORDER_ENTRY_BYTES). An offer that would
    /// take it past this ends the stream with [`NetError::ReorderFull`](crate::NetError::ReorderFull);
    /// the process and its other streams go on. Default
    /// [`DEFAULT_MAX_REORDER_BYTES`].
    pub max_reorder_bytes: u64,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            accept_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            max_reorder_bytes: DEFAULT_MAX_REORDER_BYTES,
        }
    }
}

/// What a receiver did, for its report.
#[derive(Clone, Debug, Default)]
pub struct ReceiveReport {
    /// Tensors landed and committed.
    pub committed: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Offers refused, counted by the field at fault, the first and last
    /// few kept whole ([`REFUSAL_SAMPLE`](crate::REFUSAL_SAMPLE) each); the
    /// stream never saw them.
    pub refused: Refusals,
    /// Transfers started straight into a slot (rendezvous receives).
    pub zero_copy: u64,
    /// Offers whose bytes came with the message (eager) and were copied in.
    pub copied: u64,
    /// The lowest offset, in the payload region, any transfer landed at.
    pub lowest_offset: u64,
    /// The highest end offset (offset + length) of any transfer.
    pub highest_end: u64,
    /// The payload region's mapped length: every transfer landed inside
    /// `0 .. region_len`.
    pub region_len: u64,
    /// Times an offer waited for room in the ring.
    pub ring_full_waits: u64,
    /// The most bytes the reorder buffer held at once (at most
    /// [`ReceiverOptions::max_reorder_bytes`]).
    pub reorder_peak_bytes: u64,
    /// The most bytes of acknowledgements waiting to be sent at once (at
    /// most [`MAX_UNSENT_ACK_BYTES`]).
    pub ack_peak_bytes: u64,
    /// From the sender's connection to its end.
    pub elapsed: Duration,
}

impl ReceiveReport {
    /// Bytes per second landed.
    pub fn bandwidth(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}
