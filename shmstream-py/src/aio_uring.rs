//! `_SetUring`: a `StreamSet` awaited without a thread (issue 25). The
//! event loop's own thread looks at the set and, when nothing is ready,
//! arms an io_uring `FUTEX_WAIT` on the hub's bell (the set announces a
//! sleeper first, as its `wait_any` does: `StreamSet::look_or_arm`). A
//! producer's commit wakes that futex as it would wake a sleeping thread;
//! the kernel then signals the ring's eventfd, which the loop watches with
//! `add_reader`, and the loop looks again. One wake-up (the loop's), where
//! a helper thread costs two.
//!
//! The ring runs its completion work the default way: the producer's wake
//! queues it to the loop's thread and interrupts that thread's sleep
//! (`epoll_wait` returns `EINTR`, which asyncio and uvloop retry); the work
//! runs on the way back to user space, posts the completion and signals
//! the eventfd, and the retried `epoll_wait` finds it readable. (A
//! `IORING_SETUP_DEFER_TASKRUN` ring, which leaves the loop's system calls
//! alone, signalled its eventfd 8-15 ms late here: `perf` showed the loop
//! woken that long after the producer's `FUTEX_WAKE`, from another task's
//! softirq.) The ring is single-issuer: only the thread that made it (the
//! loop's) uses it.
//! Where io_uring or its `FUTEX_WAIT` (Linux 6.7) is not available, the
//! constructor fails and `_aio` falls back to `_SetWatch` (a thread).

use crate::locks::lock;
use crate::policy::raise_policy_error;
use crate::shared::SetCore;
use crate::stream_set::{closed, PyStreamKey, PyStreamSet};
use io_uring::{opcode, types, IoUring, Probe};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use shmstream::BellWait;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// `FUTEX2_SIZE_U32`: a 32-bit futex; without `FUTEX2_PRIVATE` it is a
/// shared one, as the producers' `FUTEX_WAKE` on the mapped word needs.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX_BITSET_MATCH_ANY`: woken by any wake (the producers' plain
/// `FUTEX_WAKE`).
const MATCH_ANY: u64 = u32::MAX as u64;

/// The user data of the ring's entries.
const FUTEX: u64 = 1;
const SLICE: u64 = 2;
const CANCEL: u64 = 3;

pub(crate) struct Inner {
    ring: IoUring,
    /// The announced sleeper of the `FUTEX_WAIT` in flight (dropped, so
    /// retracted, once its completion is reaped).
    pub(crate) wait: Option<BellWait>,
    /// Someone awaits: a completion is followed by a look.
    pub(crate) armed: bool,
    /// The bound of the wait in flight (a linked timeout reads it when the
    /// entry is submitted).
    slice: types::Timespec,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("wait", &self.wait)
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

/// A set's awaits through an io_uring `FUTEX_WAIT`: `arm()` looks and,
/// when nothing is ready, waits in the kernel; `fileno()` (an eventfd)
/// turns readable when the wait ended, and `take()` looks again. Used
/// only from the thread that made it (the event loop's).
#[pyclass(module = "shmstream._shmstream", name = "_SetUring", frozen)]
#[derive(Debug)]
pub(crate) struct SetUring {
    core: Arc<SetCore>,
    uring: Uring,
}

/// An io_uring of the event loop's thread with at most one `FUTEX_WAIT`
/// in flight, and the eventfd its completions signal (`_SetUring`'s, and
/// a standalone stream's `_StreamWait`'s).
#[derive(Debug)]
pub(crate) struct Uring {
    inner: Mutex<Inner>,
    efd: OwnedFd,
    owner: ThreadId,
}

impl Uring {
    /// Fails (OSError) where io_uring or its `FUTEX_WAIT` is not available.
    pub(crate) fn new() -> PyResult<Self> {
        let ring = ring()?;
        // SAFETY: eventfd takes two integers and returns a new descriptor
        // (or -1), which `OwnedFd` then owns alone.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `fd` was just made and nothing else owns it.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        Ok(Uring {
            inner: Mutex::new(Inner {
                ring,
                wait: None,
                armed: false,
                slice: types::Timespec::new(),
            }),
            efd,
            owner: std::thread::current().id(),
        })
    }

    pub(crate) fn inner(&self) -> PyResult<std::sync::MutexGuard<'_, Inner>> {
        if std::thread::current().id() != self.owner {
            return Err(PyRuntimeError::new_err(
                "an io_uring wait is used from the thread that made it (its event loop's)",
            ));
        }
        Ok(lock(&self.inner))
    }

    /// The eventfd that turns readable when the wait ended.
    pub(crate) fn fileno(&self) -> i32 {
        self.efd.as_raw_fd()
    }

    /// Whether a `FUTEX_WAIT` is in flight.
    pub(crate) fn waiting(&self) -> bool {
        lock(&self.inner).wait.is_some()
    }

    /// Empties the eventfd (a completion posted while reaping signalled it
    /// again: without this, a wake-up of the loop for nothing).
    pub(crate) fn quiet(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; the eventfd is
        // non-blocking, so an empty one fails with EAGAIN, which is fine.
        let _ = unsafe { libc::read(self.efd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }

    /// Nobody awaits any more: cancels the wait in flight and retracts its
    /// announcement (nothing is taken: readiness is level-triggered).
    pub(crate) fn disarm(&self) -> PyResult<()> {
        let mut inner = self.inner()?;
        inner.armed = false;
        if inner.wait.is_none() {
            return Ok(());
        }
        let cancel = opcode::AsyncCancel::new(FUTEX).build().user_data(CANCEL);
        // SAFETY: a cancel entry points at no memory.
        unsafe { inner.ring.submission().push(&cancel) }
            .map_err(|_| PyRuntimeError::new_err("the io_uring submission queue is full"))?;
        inner.ring.submit()?;
        // The cancelled (or just completed) wait's completion comes at
        // once: the wait for it is not a sleep.
        reap(&mut inner, true)?;
        self.quiet();
        Ok(())
    }
}

impl SetUring {
    /// Looks at the set; when nothing is ready, arms the `FUTEX_WAIT`.
    /// The keys found (None: armed).
    fn look(&self, py: Python<'_>, inner: &mut Inner) -> PyResult<Option<Vec<PyStreamKey>>> {
        let mut ready = Vec::new();
        loop {
            let look = |st: &mut crate::shared::SetState, ready: &mut Vec<_>| {
                self.core.drain(st);
                st.set.as_mut().map(|set| set.look_or_arm(ready))
            };
            // The lock is free but while another thread uses the set: take
            // it without letting the GIL go (a look is microseconds).
            let looked = match self.core.try_state() {
                Some(mut st) => look(&mut st, &mut ready),
                None => py.detach(|| look(&mut self.core.state(), &mut ready)),
            };
            raise_policy_error(Some(&self.core.policy_error))?;
            let Some(looked) = looked else {
                inner.armed = false;
                return Err(closed(py, &self.core.name));
            };
            match looked {
                None if ready.is_empty() => continue,
                None => {
                    inner.armed = false;
                    return Ok(Some(ready.into_iter().map(PyStreamKey).collect()));
                }
                Some(wait) => {
                    submit(inner, wait)?;
                    return Ok(None);
                }
            }
        }
    }
}

/// Runs the ring's deferred completions and reaps them; whether the
/// `FUTEX_WAIT` ended (its announcement is then retracted). With
/// `block`, until it ended (after a cancel: at once).
pub(crate) fn reap(inner: &mut Inner, block: bool) -> PyResult<bool> {
    let mut ended = false;
    let mut entered = false;
    loop {
        // The completion is mostly there already: the loop's thread
        // ran the work on its way out of the interrupted `epoll_wait`.
        for cqe in inner.ring.completion() {
            ended |= cqe.user_data() == FUTEX;
        }
        if ended || inner.wait.is_none() || (entered && !block) {
            break;
        }
        // Else run the completion work queued to this thread and reap:
        // an enter that waits for one completion, a zero timeout
        // making the wait a look.
        let zero = types::Timespec::new();
        let got = if block {
            inner.ring.submit_and_wait(1)
        } else {
            inner
                .ring
                .submitter()
                .submit_with_args(1, &types::SubmitArgs::new().timespec(&zero))
        };
        match got {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(e.into()),
        }
        entered = true;
    }
    if ended {
        inner.wait = None;
    }
    Ok(ended)
}

/// Queues the `FUTEX_WAIT` of `wait` (and its bound) and submits it.
pub(crate) fn submit(inner: &mut Inner, wait: BellWait) -> PyResult<()> {
    let futex = opcode::FutexWait::new(
        wait.futex(),
        u64::from(wait.seen()),
        MATCH_ANY,
        FUTEX2_SIZE_U32,
    )
    .build()
    .user_data(FUTEX);
    let slice = wait.slice();
    if let Some(s) = slice {
        inner.slice = types::Timespec::from(s);
    }
    {
        let mut sq = inner.ring.submission();
        // SAFETY: the entries point at the futex word, which `wait` keeps
        // mapped (it holds the hub) until the completion is reaped, and at
        // `inner.slice`, which lives in `inner` beside the ring; the kernel
        // reads both when it takes the entries (in `submit` below). The
        // ring has room: at most three entries are ever in flight.
        unsafe {
            match slice {
                None => sq.push(&futex),
                Some(_) => sq
                    .push(&futex.flags(io_uring::squeue::Flags::IO_LINK))
                    .and_then(|()| {
                        sq.push(
                            &opcode::LinkTimeout::new(&inner.slice)
                                .build()
                                .user_data(SLICE),
                        )
                    }),
            }
        }
        .map_err(|_| PyRuntimeError::new_err("the io_uring submission queue is full"))?;
    }
    inner.wait = Some(wait);
    inner.ring.submit()?;
    Ok(())
}

/// A single-issuer, deferred-work ring that offers `FUTEX_WAIT`; the OS
/// error where there is none (io_uring refused by a seccomp filter or
/// `kernel.io_uring_disabled`, a kernel before 6.7).
fn ring() -> std::io::Result<IoUring> {
    let ring = IoUring::builder().setup_single_issuer().build(8)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::FutexWait::CODE) {
        return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(ring)
}

/// Whether this kernel offers what `_SetUring` needs (a ring is made and
/// closed: `shmstream._aio` asks once).
#[pyfunction]
pub(crate) fn _uring_available() -> bool {
    ring().is_ok()
}

#[pymethods]
impl SetUring {
    /// Fails (OSError) where io_uring or its `FUTEX_WAIT` is not available.
    #[new]
    fn new(set: &Bound<'_, PyStreamSet>) -> PyResult<Self> {
        Ok(SetUring {
            core: set.get().core.clone(),
            uring: Uring::new()?,
        })
    }

    /// The eventfd that turns readable when the wait ended.
    fn fileno(&self) -> i32 {
        self.uring.fileno()
    }

    /// Someone awaits: looks, and returns what is ready, or None when it
    /// armed the wait (`take()` after `fileno()` turned readable).
    fn arm(&self, py: Python<'_>) -> PyResult<Option<Vec<PyStreamKey>>> {
        let mut inner = self.uring.inner()?;
        inner.armed = true;
        if inner.wait.is_some() {
            return Ok(None);
        }
        self.look(py, &mut inner)
    }

    /// Nobody awaits any more: cancels the wait in flight and retracts its
    /// announcement (nothing is taken: readiness is level-triggered).
    fn disarm(&self) -> PyResult<()> {
        self.uring.disarm()
    }

    /// Whether a `FUTEX_WAIT` is in flight.
    #[getter]
    fn waiting(&self) -> bool {
        self.uring.waiting()
    }

    /// After `fileno()` turned readable: the keys of the streams with
    /// news, or None (nothing for the awaiters yet: the wait was armed
    /// again, or nobody awaits); the set's closed error once it is closed.
    fn take(&self, py: Python<'_>) -> PyResult<Option<Vec<PyStreamKey>>> {
        let mut inner = self.uring.inner()?;
        let ended = reap(&mut inner, false)?;
        self.uring.quiet();
        if !ended || !inner.armed {
            return Ok(None);
        }
        self.look(py, &mut inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmstream::{DType, StreamConfig, StreamId, StreamSet, TensorMeta};
    use std::time::Instant;

    /// The ring's unsafe entries, both shapes: a wait with its linked
    /// slice (an in-process producer is watched in slices) that the slice
    /// ends, and one that a commit ends at once.
    #[test]
    fn a_sliced_wait_ends_with_its_slice_and_a_commit_ends_a_wait_at_once() {
        let Ok(ring) = ring() else {
            eprintln!("io_uring's FUTEX_WAIT is not available here: nothing to test");
            return;
        };
        let mut inner = Inner {
            ring,
            wait: None,
            armed: true,
            slice: types::Timespec::new(),
        };
        let mut set: StreamSet = StreamSet::in_process(64)
            .unwrap()
            .with_default_policy("fixed:size=1".parse().unwrap());
        let hub = set.hub().unwrap();
        let id = StreamId {
            request_id: "r".into(),
            edge_name: "e".into(),
            from_partition: "p".into(),
        };
        let config = StreamConfig::new(id).with_capacity(4).with_item_bytes(64);
        let producer = hub.create_stream(&config).unwrap();
        let mut ready = Vec::new();
        let mut arm = |set: &mut StreamSet| loop {
            if let Some(w) = set.look_or_arm(&mut ready) {
                break w;
            }
        };

        let wait = arm(&mut set);
        let slice = wait
            .slice()
            .expect("an in-process producer is watched in slices");
        let t0 = Instant::now();
        submit(&mut inner, wait).unwrap();
        assert!(reap(&mut inner, true).unwrap());
        assert!(inner.wait.is_none(), "the announcement is retracted");
        assert!(t0.elapsed() >= slice, "ended by its slice, not before");

        let wait = arm(&mut set);
        submit(&mut inner, wait).unwrap();
        assert!(!reap(&mut inner, false).unwrap(), "nothing rang yet");
        producer
            .register("t0")
            .unwrap()
            .write(
                TensorMeta::new(DType::U64, &[1]).unwrap(),
                &7u64.to_le_bytes(),
            )
            .unwrap();
        // The commit's FUTEX_WAKE queued the completion to this thread,
        // which ran it on its way back from that system call (or the reap
        // runs it): no sleep.
        assert!(reap(&mut inner, false).unwrap());
        assert!(set.look_or_arm(&mut ready).is_none());
        assert_eq!(ready.len(), 1);
    }

    /// The same entries over a standalone ring's bells: a buffer's wait on
    /// its data bell that a commit ends, and a producer's wait for room on
    /// the space bell that a release ends (no slice: in-process peers).
    #[test]
    fn a_ring_wait_on_a_buffer_or_a_producer_ends_with_the_other_side() {
        let Ok(ring) = ring() else {
            eprintln!("io_uring's FUTEX_WAIT is not available here: nothing to test");
            return;
        };
        let mut inner = Inner {
            ring,
            wait: None,
            armed: true,
            slice: types::Timespec::new(),
        };
        let id = StreamId {
            request_id: "r".into(),
            edge_name: "e".into(),
            from_partition: "p".into(),
        };
        let config = StreamConfig::new(id).with_capacity(1).with_item_bytes(64);
        let policy: shmstream::policy::Policy = "fixed:size=1".parse().unwrap();
        let (producer, mut buffer): (_, shmstream::StreamBuffer) =
            shmstream::in_process_buffer(&config, policy).unwrap();
        let put = |name: &str| {
            producer.pre_read_register(name).unwrap();
            producer
                .put(
                    name,
                    TensorMeta::new(DType::U64, &[1]).unwrap(),
                    &7u64.to_le_bytes(),
                )
                .unwrap();
        };

        let wait = buffer.look_or_arm().unwrap().expect("empty: armed");
        assert_eq!(wait.slice(), None);
        submit(&mut inner, wait).unwrap();
        assert!(!reap(&mut inner, false).unwrap(), "nothing committed yet");
        put("t0");
        assert!(reap(&mut inner, false).unwrap(), "the commit ended it");
        assert!(inner.wait.is_none());

        let wait = producer.room_or_arm(8).unwrap().expect("full: armed");
        submit(&mut inner, wait).unwrap();
        assert!(!reap(&mut inner, false).unwrap(), "nothing released yet");
        drop(buffer.pop_chunk().unwrap());
        assert!(buffer.look_or_arm().unwrap().is_some(), "the look released");
        assert!(reap(&mut inner, false).unwrap(), "the release ended it");
        assert!(producer.room_or_arm(8).unwrap().is_none());
    }
}
