//! Layer 3 of 8, **protocol**: the bytes of a segment and the rules for
//! changing them, over raw memory: the layout and its checks, tensor
//! metadata, the SPSC ring, the worker hub's raw protocol, the hand-over
//! word, and the heap backing that loom and Miri run it on. No OS calls
//! (beyond the clock and `sched_yield` of a wait loop), so loom and Miri
//! run exactly this code. Uses only `error` and `sync`.

pub(crate) mod carry;
pub(crate) mod descriptor;
#[cfg(not(loom))]
pub(crate) mod fingerprint;
#[cfg(not(loom))]
pub(crate) mod handover;
pub(crate) mod hub;
pub(crate) mod hub_heap;
pub(crate) mod hub_layout;
pub(crate) mod layout;
pub(crate) mod reason;
pub(crate) mod ring;
pub(crate) mod ring_consumer;
pub(crate) mod ring_producer;
pub(crate) mod run;
pub(crate) mod staged;
pub(crate) mod tensor;
pub(crate) mod wait;
pub(crate) mod wake;
// The loom models run the hand-over decision itself (not part of the API).
#[cfg(loom)]
pub mod handover;
#[cfg(any(loom, miri))]
pub(crate) mod heap;
