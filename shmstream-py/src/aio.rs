//! What `shmstream._aio` (asyncio, issue 25) needs from the native side:
//! `_SetWaiter`, a set's wait that another thread can end at once, and
//! `_wait_chunk_ready`, a stream's wait that pops nothing.
//!
//! Both only *wait*: the event loop's thread then looks (and pops) itself.
//! Readiness is level-triggered, so a wait given up (a cancelled `await`)
//! takes nothing with it.

use crate::buffer::PyStreamBuffer;
use crate::locks::lock;
use crate::policy::raise_policy_error;
use crate::shared::SetCore;
use crate::stream_set::{closed, PyStreamKey, PyStreamSet, BACKSTOP};
use crate::timeout::seconds;
use pyo3::prelude::*;
use shmstream::StreamError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the waiter stays off the set's lock after a wake that was not
/// for it (a lease handed back, another thread that needs the set): longer
/// than the 1 ms between the tries of `SetCore::state`, so that thread gets
/// the lock instead of finding it taken again at once.
const STEP_ASIDE: Duration = Duration::from_micros(1500);

/// A `StreamSet`'s wait for an event loop's helper thread: `wait()` sleeps
/// without the GIL until a stream has news; `interrupt()` (from any thread)
/// makes it return `[]` at once.
#[pyclass(module = "shmstream._shmstream", name = "_SetWaiter", frozen)]
#[derive(Debug)]
pub(crate) struct SetWaiter {
    core: Arc<SetCore>,
    interrupted: AtomicBool,
}

#[pymethods]
impl SetWaiter {
    #[new]
    fn new(set: &Bound<'_, PyStreamSet>) -> Self {
        SetWaiter {
            core: set.get().core.clone(),
            interrupted: AtomicBool::new(false),
        }
    }

    /// The keys of the streams with news (as `_StreamSet.wait_any`), or
    /// `[]` after an `interrupt()` (one made before the call counts too).
    /// The set's closed error once it is closed.
    fn wait(&self, py: Python<'_>) -> PyResult<Vec<PyStreamKey>> {
        loop {
            if self.interrupted.swap(false, Ordering::AcqRel) {
                return Ok(Vec::new());
            }
            let waited = py.detach(|| {
                // A plain lock: `state()` would ring the waker, and so end
                // this very wait.
                let mut st = lock(&self.core.state);
                self.core.drain(&mut st);
                let start = Instant::now();
                let keys = st.set.as_mut()?.wait_any(Some(BACKSTOP));
                Some((keys, start.elapsed() < BACKSTOP))
            });
            raise_policy_error(Some(&self.core.policy_error))?;
            let Some((keys, early)) = waited else {
                return Err(closed(py, &self.core.name));
            };
            if !keys.is_empty() {
                return Ok(keys.into_iter().map(PyStreamKey).collect());
            }
            if early && !self.interrupted.load(Ordering::Acquire) {
                py.detach(|| std::thread::sleep(STEP_ASIDE));
            }
        }
    }

    /// Ends the current `wait()` (or the next one) at once with `[]`.
    fn interrupt(&self) {
        // Flag first: the woken waiter must see it on its re-check.
        self.interrupted.store(true, Ordering::Release);
        (self.core.waker.0)();
    }
}

/// Waits (GIL released) at most `timeout` seconds until `buffer` has a
/// chunk ready (or its end, or an error to raise), popping nothing: True
/// then, False when the time passed. The caller pops (and so sees the
/// error) itself.
#[pyfunction]
fn _wait_chunk_ready(
    py: Python<'_>,
    buffer: &Bound<'_, PyStreamBuffer>,
    timeout: f64,
) -> PyResult<bool> {
    let timeout = seconds(py, Some(timeout))?.unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let shared = &buffer.get().shared;
    // Slices of the binding's usual length (Ctrl-C, the lock let go
    // between them), the last one ending at or just after `deadline`.
    shared.wait(py, None, |b, slice| match b.wait_chunk(Some(slice)) {
        Err(StreamError::Timeout { .. }) if Instant::now() >= deadline => Ok(false),
        Err(e @ StreamError::Timeout { .. }) => Err(e),
        Ok(_) | Err(_) => Ok(true),
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SetWaiter>()?;
    m.add_function(wrap_pyfunction!(_wait_chunk_ready, m)?)?;
    Ok(())
}
