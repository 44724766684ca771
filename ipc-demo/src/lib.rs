//! # ipc-demo
//!
//! The two processes of a shmstream stream and the tools around a segment,
//! as a library so that the three binaries share one implementation:
//!
//! - `ipc-producer` ([`produce`]) stands in for the process that receives
//!   tensors over RDMA: it creates the segment and streams synthetic items
//!   (committed out of order), or tensors a sender offers over UCX,
//!   landed by the network straight in their slots ([`shmstream_net`]).
//! - `ipc-consumer` ([`consume`]) opens the stream, cuts it into chunks by a
//!   policy, verifies every item and window in place, and reports
//!   throughput and latency.
//! - `ipc-demo` ([`launch`]) runs the pair with a progress bar, and offers
//!   `inspect`, `clean`, `send` and `replay` ([`inspect`], [`clean`],
//!   [`send`], [`replay`]).
//!
//! Every item of a synthetic stream carries its sequence number, a
//! CLOCK_MONOTONIC timestamp and a checksum ([`item`]), so a lost,
//! duplicated, reordered or corrupted item is detected; items are of one
//! shape or of a size mix ([`sizes`]: `56,64K,2M` cycling, or seeded
//! random sizes), each registered with its own size.

#![deny(missing_docs, missing_debug_implementations)]

pub mod args;
pub mod child;
pub mod clean;
pub mod cli;
pub mod clock;
pub mod consume;
pub mod consume_args;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod inspect;
pub mod item;
pub mod launch;
pub mod many;
pub mod pace;
pub mod produce;
pub mod progress;
pub mod replay;
pub mod report;
pub mod send;
pub mod signals;
pub mod sizes;
mod take;
pub mod trace;
pub mod verify;
pub mod wake;
