//! The one place that picks the atomics: std's in production, loom's when
//! the crate is built with `--cfg loom`, so the model checker runs the real
//! protocol code. Nothing else in the crate names `std::sync::atomic`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

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

/// Held while a slot's bytes are being written.
#[derive(Debug)]
pub(crate) struct WriteGuard {
    #[cfg(loom)]
    _ptr: loom::cell::MutPtr<()>,
}

/// Held while a slot's bytes may be read.
#[derive(Debug)]
#[cfg_attr(not(loom), allow(dead_code))]
pub(crate) struct ReadGuard {
    #[cfg(loom)]
    _ptr: loom::cell::ConstPtr<()>,
}

#[cfg_attr(not(loom), allow(dead_code))]
impl AccessTracker {
    pub(crate) fn write(&self) -> WriteGuard {
        WriteGuard {
            #[cfg(loom)]
            _ptr: self.cell.get_mut(),
        }
    }

    pub(crate) fn read(&self) -> ReadGuard {
        ReadGuard {
            #[cfg(loom)]
            _ptr: self.cell.get(),
        }
    }
}
