//! How long the binding waits: a Python timeout in seconds as a duration,
//! and the slices a blocking wait is cut into (Ctrl-C between them).

use crate::errors::raise;
use pyo3::prelude::*;
use std::time::Duration;

/// A blocking wait is cut into slices this long, so that Ctrl-C is noticed
/// (`check_signals`) and queued leases are handed back in between. A
/// SIGINT that lands in a slice waits out the rest of it (it goes to any
/// thread, so it need not interrupt the waiting one's futex): 20 ms, one
/// sleep of the core's wait (its `SLEEP_SLICE`, so no extra wake-ups), keeps
/// Ctrl-C within 100 ms with room for scheduling; 50 ms left only half.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// Seconds (None: for ever) as a duration; negative or NaN is refused,
/// and past `shmstream::binding::MAX_TIMEOUT_SECS` (10^9 s) is for ever
/// (`shmstream::binding::timeout`).
pub(crate) fn seconds(py: Python<'_>, t: Option<f64>) -> PyResult<Option<Duration>> {
    shmstream::binding::timeout(t).map_err(|e| raise(py, "BadConfig", e.to_string()))
}

/// The longest single wait of a call that waits up to `timeout`: at most
/// [`SLICE`], and a whole fraction of `timeout`, so that whole slices add
/// up to it (0.05 s is three of 16.7 ms with the 20 ms [`SLICE`]).
/// `None` (for ever): [`SLICE`].
pub(crate) fn slice_of(timeout: Option<Duration>) -> Duration {
    shmstream::binding::wait_slice(timeout, SLICE)
}
