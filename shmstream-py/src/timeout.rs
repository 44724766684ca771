//! How long the binding waits: a Python timeout in seconds as a duration,
//! and the slices a blocking wait is cut into (Ctrl-C between them).

use crate::errors::{raise, stream_err};
use pyo3::prelude::*;
use shmstream::{StreamError, StreamId};
use std::time::{Duration, Instant};

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

/// Waits up to `timeout` (None: for ever) in slices of at most [`SLICE`]:
/// calls `f(slice)` without the GIL until it succeeds or fails otherwise
/// than by a timeout of its slice, checking Ctrl-C in between. The whole
/// wait running out is `StreamTimeout`, naming stream `id` and what `f`
/// waited for.
pub(crate) fn sliced<T: Send>(
    py: Python<'_>,
    id: &StreamId,
    timeout: Option<Duration>,
    mut f: impl FnMut(Duration) -> Result<T, StreamError> + Send,
) -> PyResult<T> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        match py.detach(|| f(slice)) {
            Err(StreamError::Timeout { .. }) if deadline.is_none_or(|d| Instant::now() < d) => {
                py.check_signals()?;
            }
            Err(StreamError::Timeout { what, .. }) => {
                return Err(raise(
                    py,
                    "StreamTimeout",
                    format!(
                        "stream {id}: waited {:.3} s for {what}",
                        timeout.unwrap_or_default().as_secs_f64()
                    ),
                ))
            }
            r => return r.map_err(|e| stream_err(py, id, &e)),
        }
    }
}
