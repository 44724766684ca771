//! `_StreamWait`: a standalone stream's await (issue 25), a buffer's chunk
//! or a producer's room or drain, as `_SetUring` awaits a set: the event
//! loop's own thread looks (the core's `StreamBuffer::look_or_arm`,
//! `Producer::room_or_arm`, `Producer::drained_or_arm`: they take
//! nothing) and, when nothing is there, arms an io_uring `FUTEX_WAIT` on
//! the bell the other side already rings (the ring's data bell for a
//! chunk, its space bell for room and the drain); the completion signals
//! the eventfd the loop watches. No thread. Where io_uring's `FUTEX_WAIT`
//! is not available, a native thread of its own waits in the sync wait in
//! slices while armed and makes a socket readable instead (the fallback,
//! as `_SetWatch` is a set's).

use crate::aio_uring::{reap, submit, Inner, Uring};
use crate::buffer::PyStreamBuffer;
use crate::errors::stream_err;
use crate::locks::{lock, wait_ready};
use crate::policy::{raise_policy_error, PolicyError};
use crate::producer::PyProducer;
use crate::producer_state::{with_state, SharedProducer};
use crate::shared::Shared;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmstream::{BellWait, StreamError, StreamId};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The fallback thread's longest wait between two looks at whether anyone
/// still awaits (how late a cancel ends it; the sync wait's slice).
const SLICE: Duration = Duration::from_millis(20);

/// How long a fallback thread that found something waits to be armed
/// again before it ends (a loop that streams arms it within microseconds).
const LINGER: Duration = Duration::from_millis(500);

/// What is awaited.
#[derive(Debug)]
enum Target {
    Chunk(Arc<Shared>, Option<PolicyError>),
    /// Room for a registration of `nbytes` (0: the default item size).
    Room(SharedProducer, AtomicU64),
    Drained(SharedProducer),
}

impl Target {
    fn nbytes(&self, p: &shmstream::Producer, n: &AtomicU64) -> u64 {
        match n.load(Ordering::Relaxed) {
            0 => p.item_bytes(),
            n => n,
        }
    }

    /// The loop's look: `Ok(None)` when what is awaited is there (the
    /// caller looks, pops or registers itself), else the wait to arm.
    fn look(&self, py: Python<'_>) -> Result<Option<BellWait>, StreamError> {
        match self {
            Target::Chunk(shared, _) => shared.with(py, |b| b.look_or_arm()),
            Target::Room(p, n) => with_state(py, p, |s| {
                let p = s.producer();
                p.room_or_arm(self.nbytes(p, n))
            }),
            Target::Drained(p) => with_state(py, p, |s| s.producer().drained_or_arm()),
        }
    }

    /// The fallback thread's wait (no GIL): `Ok(true)` when what is
    /// awaited is there, `Ok(false)` when the slice passed.
    fn wait(&self, slice: Duration) -> Result<bool, StreamError> {
        let r = match self {
            Target::Chunk(shared, _) => {
                shared.with_detached(|b| b.wait_chunk(Some(slice)).map(drop))
            }
            Target::Room(p, n) => {
                let s = lock(p);
                let p = s.producer();
                p.wait_room(self.nbytes(p, n), Some(slice))
            }
            Target::Drained(p) => lock(p).producer().wait_drained(Some(slice)),
        };
        match r {
            Ok(()) => Ok(true),
            Err(StreamError::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The fallback: a thread of its own, armed while someone awaits.
#[derive(Debug, Default)]
struct Watch {
    armed: bool,
    running: bool,
    /// What the last armed wait found, until `take`n.
    found: Option<Result<(), StreamError>>,
}

#[derive(Debug)]
struct ThreadShared {
    target: Arc<Target>,
    watch: Mutex<Watch>,
    armed: Condvar,
    /// The end the thread writes a byte to when it found something.
    bell: UnixStream,
}

impl ThreadShared {
    fn run(self: Arc<Self>) {
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
            let found = match self.target.wait(SLICE) {
                Ok(false) => continue,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            };
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

#[derive(Debug)]
enum Mode {
    /// Boxed: the ring is large, the thread's handles small.
    Uring(Box<Uring>),
    Thread(Arc<ThreadShared>, UnixStream),
}

/// A standalone buffer's or a producer's awaits: `arm()` looks and, when
/// nothing is there, waits (an io_uring `FUTEX_WAIT`, or the fallback's
/// thread); `fileno()` turns readable when the wait ended, and `take()`
/// says whether what is awaited is there now. `disarm()` gives the wait
/// up, taking nothing. Used from one thread (the event loop's).
#[pyclass(module = "shmstream._shmstream", name = "_StreamWait", frozen)]
#[derive(Debug)]
pub(crate) struct StreamWait {
    target: Arc<Target>,
    id: StreamId,
    mode: Mode,
}

impl StreamWait {
    /// Looks; arms the `FUTEX_WAIT` when nothing is there. True: there.
    fn look(&self, py: Python<'_>, inner: &mut Inner) -> PyResult<bool> {
        let looked = self.target.look(py);
        if let Target::Chunk(_, policy) = &*self.target {
            raise_policy_error(policy.as_ref())?;
        }
        match looked {
            Ok(None) => {
                inner.armed = false;
                Ok(true)
            }
            Ok(Some(wait)) => {
                submit(inner, wait)?;
                Ok(false)
            }
            Err(e) => {
                inner.armed = false;
                Err(self.raise(py, &e))
            }
        }
    }

    /// The stream's error (a Python policy's own first).
    fn raise(&self, py: Python<'_>, e: &StreamError) -> PyErr {
        if let Target::Chunk(_, policy) = &*self.target {
            if let Err(pe) = raise_policy_error(policy.as_ref()) {
                return pe;
            }
        }
        stream_err(py, &self.id, e)
    }
}

#[pymethods]
impl StreamWait {
    /// `target`: a `_Buffer` (kind "chunk") or a `_Producer` (kind "room"
    /// or "drained"); `uring`: wait through io_uring (OSError where it is
    /// not available), else the fallback's thread.
    #[new]
    fn new(target: &Bound<'_, PyAny>, kind: &str, uring: bool) -> PyResult<Self> {
        let producer = || -> PyResult<(SharedProducer, StreamId)> {
            let p = target.cast::<PyProducer>()?.get();
            Ok((p.state.clone(), p.id.clone()))
        };
        let (target, id) = match kind {
            "chunk" => {
                let b = target.cast::<PyStreamBuffer>()?.get();
                (
                    Target::Chunk(b.shared.clone(), b.policy_error.clone()),
                    b.shared.id.clone(),
                )
            }
            "room" => {
                let (p, id) = producer()?;
                (Target::Room(p, AtomicU64::new(0)), id)
            }
            "drained" => {
                let (p, id) = producer()?;
                (Target::Drained(p), id)
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "a stream's await is for \"chunk\", \"room\" or \"drained\", not {other:?}"
                )))
            }
        };
        let target = Arc::new(target);
        let mode = if uring {
            Mode::Uring(Box::new(Uring::new()?))
        } else {
            let (reader, bell) = UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            bell.set_nonblocking(true)?;
            Mode::Thread(
                Arc::new(ThreadShared {
                    target: target.clone(),
                    watch: Mutex::new(Watch::default()),
                    armed: Condvar::new(),
                    bell,
                }),
                reader,
            )
        };
        Ok(StreamWait { target, id, mode })
    }

    /// The descriptor that turns readable when the wait ended.
    fn fileno(&self) -> i32 {
        match &self.mode {
            Mode::Uring(u) => u.fileno(),
            Mode::Thread(_, reader) => reader.as_raw_fd(),
        }
    }

    /// `"uring"` or `"thread"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.mode {
            Mode::Uring(_) => "uring",
            Mode::Thread(..) => "thread",
        }
    }

    /// Someone awaits (room for `nbytes`, None: the default item size):
    /// True when what is awaited is there now (the io_uring waiter looks;
    /// the fallback always waits: False), else False: armed.
    #[pyo3(signature = (nbytes=None))]
    fn arm(&self, py: Python<'_>, nbytes: Option<u64>) -> PyResult<bool> {
        if let Target::Room(_, n) = &*self.target {
            n.store(nbytes.unwrap_or(0), Ordering::Relaxed);
        }
        match &self.mode {
            Mode::Uring(u) => {
                let mut inner = u.inner()?;
                inner.armed = true;
                if inner.wait.is_some() {
                    return Ok(false);
                }
                self.look(py, &mut inner)
            }
            Mode::Thread(t, _) => {
                let mut w = lock(&t.watch);
                w.armed = true;
                if !w.running {
                    let shared = t.clone();
                    std::thread::Builder::new()
                        .name("shmstream-aio".into())
                        .spawn(move || shared.run())?;
                    w.running = true;
                }
                t.armed.notify_one();
                Ok(false)
            }
        }
    }

    /// Nobody awaits any more: the io_uring wait is cancelled at once; the
    /// fallback's thread ends within its slice. Nothing is taken.
    fn disarm(&self) -> PyResult<()> {
        match &self.mode {
            Mode::Uring(u) => u.disarm(),
            Mode::Thread(t, _) => {
                lock(&t.watch).armed = false;
                Ok(())
            }
        }
    }

    /// Whether a wait is in flight (a `FUTEX_WAIT`, or the thread runs).
    #[getter]
    fn waiting(&self) -> bool {
        match &self.mode {
            Mode::Uring(u) => u.waiting(),
            Mode::Thread(t, _) => lock(&t.watch).running,
        }
    }

    /// After `fileno()` turned readable: True when what is awaited is
    /// there (look, pop or register now), False when not yet (armed
    /// again, or nobody awaits); the stream's error when there is one.
    fn take(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.mode {
            Mode::Uring(u) => {
                let mut inner = u.inner()?;
                let ended = reap(&mut inner, false)?;
                u.quiet();
                if !ended || !inner.armed {
                    return Ok(false);
                }
                self.look(py, &mut inner)
            }
            Mode::Thread(t, reader) => {
                let mut sink = [0u8; 64];
                while matches!((&*reader).read(&mut sink), Ok(n) if n > 0) {}
                match lock(&t.watch).found.take() {
                    None => Ok(false),
                    Some(Ok(())) => Ok(true),
                    Some(Err(e)) => Err(self.raise(py, &e)),
                }
            }
        }
    }
}

impl Drop for StreamWait {
    /// Dropped while armed (its awaiting task collected): the thread lets
    /// the stream go within its slice.
    fn drop(&mut self) {
        if let Mode::Thread(t, _) = &self.mode {
            lock(&t.watch).armed = false;
        }
    }
}
