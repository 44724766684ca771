//! Layer 2 of 8, **sync**: the primitives the protocol is built from, and
//! the one place that switches them for the model checker: the atomics
//! (std's, or loom's under `--cfg loom`) and the [`doorbell`] (a futex
//! and `membarrier` on Linux, a loom model under `cfg(loom)`, a stand-in
//! under Miri). The only OS calls below `os`, each behind that switch.
//! Uses nothing else in the crate.
//!
//! The one place that picks the atomics: std's in production, loom's when
//! the crate is built with `--cfg loom`, so the model checker runs the real
//! protocol code. Nothing else in the crate names `std::sync::atomic`.

pub(crate) mod doorbell;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Bytes of payload one tracker covers under loom. The models' reservations
/// are multiples of it, so two items never share a tracker.
#[cfg_attr(not(loom), allow(dead_code))]
pub(crate) const TRACK_GRANULE: u64 = 64;

/// Tracks who touches a slot's payload, so loom reports a write to a slot
/// that a held chunk still shows as a data race. The payload bytes themselves
/// live in plain (mapped or heap) memory; every access to them is bracketed by
/// a guard of this tracker. In production the tracker is zero-sized.
#[derive(Debug, Default)]
#[cfg_attr(not(loom), allow(dead_code))]
pub(crate) struct AccessTracker {
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<()>,
}

/// Held while a reservation's bytes are being written (every tracker the
/// range covers).
#[derive(Debug)]
pub(crate) struct WriteGuard {
    #[cfg(loom)]
    pub(crate) _ptrs: Vec<loom::cell::MutPtr<()>>,
}

/// Held while an item's bytes may be read.
#[derive(Debug)]
#[cfg_attr(not(loom), allow(dead_code))]
pub(crate) struct ReadGuard {
    #[cfg(loom)]
    pub(crate) _ptrs: Vec<loom::cell::ConstPtr<()>>,
}

#[cfg(loom)]
impl AccessTracker {
    pub(crate) fn write(&self) -> loom::cell::MutPtr<()> {
        self.cell.get_mut()
    }

    pub(crate) fn read(&self) -> loom::cell::ConstPtr<()> {
        self.cell.get()
    }
}
