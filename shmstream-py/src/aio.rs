//! What `shmstream._aio` (asyncio, issue 25) needs from the native side
//! besides `_SetUring` (`aio_uring.rs`, a set's await without a thread):
//! `_SetWatch`, its fallback where io_uring is not available, a thread of
//! its own that waits in a set while armed and then makes a socket
//! readable (the event loop watches it with `add_reader`: no GIL on the
//! way). It registers the other waits' classes too (`_SetUring`,
//! `_StreamWait`).
//!
//! Both only *wait*: the event loop's thread then looks (and pops) itself.
//! Readiness is level-triggered, so a wait given up (a cancelled `await`)
//! takes nothing with it.

use crate::locks::{lock, wait_ready};
use crate::policy::raise_policy_error;
use crate::shared::SetCore;
use crate::stream_set::{closed, PyStreamKey, PyStreamSet, BACKSTOP};
use pyo3::prelude::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the waiter stays off the set's lock after a wake that was not
/// for it (a lease handed back, another thread that needs the set): longer
/// than the 1 ms between the tries of `SetCore::state`, so that thread gets
/// the lock instead of finding it taken again at once.
const STEP_ASIDE: Duration = Duration::from_micros(1500);

/// The longest step aside: each wake in a row that was not for the waiter
/// doubles it (a thread that still wants the lock rings again; on a loaded
/// machine its 1 ms retry may oversleep the first windows).
const MAX_STEP_ASIDE: Duration = Duration::from_millis(24);

/// The step aside after `n` wakes in a row not for the waiter.
fn step_aside(n: u32) -> Duration {
    STEP_ASIDE.saturating_mul(1 << n.min(4)).min(MAX_STEP_ASIDE)
}

/// How long a `_SetWatch` thread that found something waits to be armed
/// again before it ends (a loop that streams arms it again within
/// microseconds).
const LINGER: Duration = Duration::from_millis(500);

/// What the set's watch thread found: keys, or that the set is closed.
type Found = Option<Vec<shmstream::StreamKey>>;

#[derive(Debug, Default)]
struct Watch {
    /// Someone awaits: the thread waits in the set.
    armed: bool,
    /// The thread runs (it ends after `LINGER` unarmed).
    running: bool,
    /// What the last armed wait found, until `take`n.
    found: Option<Found>,
}

#[derive(Debug)]
struct WatchShared {
    core: Arc<SetCore>,
    watch: Mutex<Watch>,
    armed: Condvar,
    /// Ends the thread's current wait in the set (`disarm`).
    interrupted: AtomicBool,
    /// The end the thread writes a byte to when it found something.
    bell: UnixStream,
}

/// A `StreamSet` watched for an event loop: `arm()` makes a thread of its
/// own (started on demand, ended after `LINGER` unarmed) wait in the set
/// without the GIL; when a stream has news it keeps the keys and makes
/// `fileno()` readable; the loop's reader calls `take()`. `disarm()` ends
/// the wait at once (nothing is taken: readiness is level-triggered).
#[pyclass(module = "shmstream._shmstream", name = "_SetWatch", frozen)]
#[derive(Debug)]
pub(crate) struct SetWatch {
    shared: Arc<WatchShared>,
    /// The end the loop watches.
    reader: UnixStream,
}

impl WatchShared {
    fn run(self: Arc<Self>) {
        // After a find, stay for the next await of a loop that streams;
        // after a disarm (a cancel), end at once unless armed again.
        let mut linger = Duration::ZERO;
        loop {
            {
                let (mut w, armed) = wait_ready(&self.watch, &self.armed, linger, |w| w.armed);
                if !armed {
                    w.running = false;
                    return;
                }
            }
            linger = Duration::ZERO;
            if let Some(found) = self.wait() {
                linger = LINGER;
                let mut w = lock(&self.watch);
                if w.armed {
                    w.armed = false;
                    w.found = Some(found);
                    drop(w);
                    // Full (a byte is there already) is as good as written.
                    let _ = (&self.bell).write(&[1]);
                }
            }
        }
    }

    /// Waits in the set until a stream has news (Some), the set is closed
    /// (Some(None)) or the wait is interrupted (None).
    fn wait(&self) -> Option<Found> {
        let mut early = 0;
        loop {
            if self.interrupted.swap(false, Ordering::AcqRel) {
                return None;
            }
            let waited = {
                // A plain lock: `state()` would ring the waker, and so end
                // this very wait.
                let mut st = lock(&self.core.state);
                self.core.drain(&mut st);
                let start = Instant::now();
                st.set
                    .as_mut()
                    .map(|set| (set.wait_any(Some(BACKSTOP)), start.elapsed() < BACKSTOP))
            };
            match waited {
                None => return Some(None),
                Some((keys, _)) if !keys.is_empty() => return Some(Some(keys)),
                Some((_, true)) if !self.interrupted.load(Ordering::Acquire) => {
                    std::thread::sleep(step_aside(early));
                    early += 1;
                }
                Some(_) => early = 0,
            }
        }
    }
}

#[pymethods]
impl SetWatch {
    #[new]
    fn new(set: &Bound<'_, PyStreamSet>) -> PyResult<Self> {
        let (reader, bell) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        bell.set_nonblocking(true)?;
        Ok(SetWatch {
            shared: Arc::new(WatchShared {
                core: set.get().core.clone(),
                watch: Mutex::new(Watch::default()),
                armed: Condvar::new(),
                interrupted: AtomicBool::new(false),
                bell,
            }),
            reader,
        })
    }

    /// The descriptor that turns readable when `take()` has something.
    fn fileno(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Starts a wait in the set (the thread too, if it is not running).
    fn arm(&self) -> PyResult<()> {
        let mut w = lock(&self.shared.watch);
        w.armed = true;
        if !w.running {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("shmstream-aio".into())
                .spawn(move || shared.run())?;
            w.running = true;
        }
        self.shared.armed.notify_one();
        Ok(())
    }

    /// Ends the current wait at once, keeping nothing.
    fn disarm(&self) {
        let mut w = lock(&self.shared.watch);
        if w.armed {
            w.armed = false;
            drop(w);
            self.shared.interrupted.store(true, Ordering::Release);
            (self.shared.core.waker.0)();
        }
    }

    /// Whether the watch thread runs (armed, or waiting to be).
    #[getter]
    fn running(&self) -> bool {
        lock(&self.shared.watch).running
    }

    /// What the last wait found: the keys, None (nothing yet), or the
    /// set's closed error. Empties the socket.
    fn take(&self, py: Python<'_>) -> PyResult<Option<Vec<PyStreamKey>>> {
        let mut sink = [0u8; 64];
        while matches!((&self.reader).read(&mut sink), Ok(n) if n > 0) {}
        raise_policy_error(Some(&self.shared.core.policy_error))?;
        match lock(&self.shared.watch).found.take() {
            None => Ok(None),
            Some(None) => Err(closed(py, &self.shared.core.name)),
            Some(Some(keys)) => Ok(Some(keys.into_iter().map(PyStreamKey).collect())),
        }
    }
}

impl Drop for SetWatch {
    /// A watch dropped while armed (its awaiting task collected, not
    /// cancelled): the thread lets the set go at once.
    fn drop(&mut self) {
        self.disarm();
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SetWatch>()?;
    m.add_class::<crate::aio_uring::SetUring>()?;
    m.add_class::<crate::aio_wait::StreamWait>()?;
    m.add_function(wrap_pyfunction!(crate::aio_uring::_uring_available, m)?)?;
    Ok(())
}
