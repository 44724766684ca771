//! Where a stream's buffer lives and how it is locked: a [`Shared`] is the
//! one handle of a stream's `StreamBuffer` that its `_Buffer`, chunks and
//! views hold, whether the buffer is its own (behind its own mutex) or a
//! stream of a `StreamSet` (behind the set's lock, in [`SetCore`]).
//!
//! A lease whose last holder goes while the buffer is busy (a wait in
//! another thread) is queued here and handed back at the buffer's next
//! step, at most one wait slice later; a set's waiter is woken (the core
//! set's `waker`) to hand it back at once. A stream removed from its set
//! while Python still holds it is *parked* in the set's state: its buffer
//! (and mapping) stays until the last holder goes.

use crate::locks::{lock, try_lock};
use crate::policy::PolicyError;
use crate::timeout::sliced;
use pyo3::prelude::*;
use shmstream::{ChunkLease, StreamBuffer, StreamError, StreamId, StreamKey, StreamSet};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// A stream's buffer, where it lives, and the leases waiting to be handed
/// back to it.
#[derive(Debug)]
pub(crate) struct Shared {
    home: Home,
    pub(crate) id: StreamId,
}

#[derive(Debug)]
enum Home {
    /// A buffer of its own (`StreamBuffer(...)`, `StreamBuffer.open`).
    Own {
        buf: Box<Mutex<StreamBuffer>>,
        /// Leases whose last holder went while the buffer was busy.
        pending: Mutex<Vec<ChunkLease>>,
        /// Whether `pending` may hold a lease: set under its lock after a
        /// push, cleared under it when drained. A drain that finds it clear
        /// skips the lock (about 10 ns of every pop and hand-back). SeqCst,
        /// so a drain misses only a push that the lock would have ordered
        /// after it too (the pusher's own retry, or `with`'s look after
        /// unlocking, hands that one back).
        queued: AtomicBool,
    },
    /// A stream of a `StreamSet`: its buffer lives in the set, behind the
    /// set's lock ([`SetCore`], below).
    Set { core: Arc<SetCore>, key: StreamKey },
}

/// The locked buffer of a [`Shared`].
enum Guard<'a> {
    Own(MutexGuard<'a, StreamBuffer>),
    Set(MutexGuard<'a, SetState>, StreamKey),
}

impl Guard<'_> {
    fn buf(&mut self) -> &mut StreamBuffer {
        match self {
            Guard::Own(b) => b,
            // A `Shared` of a set's stream keeps the stream's buffer in the
            // set (or parked after `remove`) while it lives.
            Guard::Set(s, key) => s.buffer(*key).expect("a set's stream outlives its handles"),
        }
    }
}

impl Shared {
    pub(crate) fn new(buf: StreamBuffer, id: StreamId) -> Arc<Self> {
        Arc::new(Shared {
            home: Home::Own {
                buf: Box::new(Mutex::new(buf)),
                pending: Mutex::new(Vec::new()),
                queued: AtomicBool::new(false),
            },
            id,
        })
    }

    /// The handle of the stream `key` of a set.
    pub(crate) fn in_set(core: Arc<SetCore>, key: StreamKey, id: StreamId) -> Arc<Self> {
        Arc::new(Shared {
            home: Home::Set { core, key },
            id,
        })
    }

    fn drain(&self, g: &mut Guard<'_>) {
        match (&self.home, g) {
            (
                Home::Own {
                    pending, queued, ..
                },
                Guard::Own(buf),
            ) => {
                if !queued.load(SeqCst) {
                    return;
                }
                let queued = {
                    let mut p = lock(pending);
                    queued.store(false, SeqCst);
                    std::mem::take(&mut *p)
                };
                for lease in queued {
                    // Every queued lease came from this buffer.
                    let _ = buf.release_lease(lease);
                }
            }
            (Home::Set { core, .. }, Guard::Set(state, _)) => core.drain(state),
            _ => unreachable!("a guard of another home"),
        }
    }

    fn has_pending(&self) -> bool {
        match &self.home {
            Home::Own { pending, .. } => !lock(pending).is_empty(),
            Home::Set { core, .. } => core.has_pending(),
        }
    }

    fn try_buf(&self) -> Option<Guard<'_>> {
        match &self.home {
            Home::Own { buf, .. } => try_lock(buf).map(Guard::Own),
            Home::Set { core, key } => core.try_state().map(|s| Guard::Set(s, *key)),
        }
    }

    fn lock_buf(&self) -> Guard<'_> {
        match &self.home {
            Home::Own { buf, .. } => Guard::Own(lock(buf)),
            Home::Set { core, key } => Guard::Set(core.state(), *key),
        }
    }

    /// Hands a lease back now, or queues it when the buffer is busy. Never
    /// blocks and needs no GIL (it may run in a DLPack deleter).
    pub(crate) fn give_back(&self, lease: ChunkLease) {
        if let Some(mut g) = self.try_buf() {
            let _ = g.buf().release_lease(lease);
            self.drain(&mut g);
            return;
        }
        match &self.home {
            Home::Own {
                pending, queued, ..
            } => {
                let mut p = lock(pending);
                p.push(lease);
                queued.store(true, SeqCst);
            }
            Home::Set { core, key } => core.queue(*key, lease),
        }
        // The holder may have unlocked (and looked at the queue) between
        // our try and our push: look again. Either this try succeeds, or
        // someone holds the lock and drains when done.
        if let Some(mut g) = self.try_buf() {
            self.drain(&mut g);
        }
    }

    /// Runs `f` on the buffer: at once when it is free, else waiting for it
    /// without the GIL. Queued leases are handed back first and after.
    pub(crate) fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut StreamBuffer) -> T + Send,
    ) -> T {
        let out = match self.try_buf() {
            Some(mut g) => {
                self.drain(&mut g);
                f(g.buf())
            }
            None => py.detach(|| {
                let mut g = self.lock_buf();
                self.drain(&mut g);
                f(g.buf())
            }),
        };
        if self.has_pending() {
            if let Some(mut g) = self.try_buf() {
                self.drain(&mut g);
            }
        }
        out
    }

    /// As [`with`](Self::with), on a thread that does not hold the GIL
    /// (`grow.rs`, inside `detach`).
    pub(crate) fn with_detached<T>(&self, f: impl FnOnce(&mut StreamBuffer) -> T) -> T {
        let mut g = self.lock_buf();
        self.drain(&mut g);
        let out = f(g.buf());
        self.drain(&mut g);
        out
    }

    /// Waits (GIL released, Ctrl-C honoured every slice) until `f`
    /// succeeds or fails otherwise than with a timeout of its slice.
    pub(crate) fn wait<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut StreamBuffer, Duration) -> Result<T, StreamError> + Send,
    ) -> PyResult<T> {
        sliced(py, &self.id, timeout, |slice| {
            let mut g = self.lock_buf();
            self.drain(&mut g);
            f(g.buf(), slice)
        })
    }
}

/// Wakes the set's current `wait_any` (the core set's `waker`).
pub(crate) struct Waker(pub(crate) Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// What the set's lock guards.
#[derive(Debug)]
pub(crate) struct SetState {
    /// `None` once closed.
    pub(crate) set: Option<StreamSet>,
    /// The one `Shared` of each stream Python has a buffer of.
    pub(crate) handles: HashMap<shmstream::StreamKey, Weak<Shared>>,
    /// Removed streams Python still holds (a buffer, a chunk, a view).
    pub(crate) parked: Vec<(shmstream::StreamKey, StreamBuffer, Weak<Shared>)>,
    /// Policies of streams added with another than the default.
    pub(crate) policies: HashMap<shmstream::StreamKey, String>,
}

impl SetState {
    /// The buffer of `key`: in the set, or parked.
    pub(crate) fn buffer(&mut self, key: shmstream::StreamKey) -> Option<&mut StreamBuffer> {
        if self.set.as_ref().is_some_and(|s| s.get(key).is_some()) {
            return self.set.as_mut().and_then(|s| s.get_mut(key));
        }
        self.parked
            .iter_mut()
            .find(|(k, _, _)| *k == key)
            .map(|(_, b, _)| b)
    }

    /// The buffer of a member, not a parked one.
    pub(crate) fn member(&self, key: shmstream::StreamKey) -> Option<&StreamBuffer> {
        self.set.as_ref()?.get(key)
    }

    /// Every member's key.
    pub(crate) fn keys(&self) -> Vec<shmstream::StreamKey> {
        self.set.as_ref().map(|s| s.keys()).unwrap_or_default()
    }

    /// Takes `key` out of the set: parked if Python holds it, else dropped
    /// (detaching the consumer).
    pub(crate) fn take_out(&mut self, key: shmstream::StreamKey) -> Option<Weak<Shared>> {
        let buf = self.set.as_mut()?.remove(key)?;
        self.policies.remove(&key);
        match self.handles.remove(&key) {
            Some(w) if w.strong_count() > 0 => {
                self.parked.push((key, buf, w.clone()));
                Some(w)
            }
            _ => Some(Weak::new()),
        }
    }
}

/// A stream's policy name and Python policy object (None: by name).
pub(crate) type PolicyOf = (String, Option<Py<PyAny>>);

/// The set's state and the leases waiting to be handed back to it.
#[derive(Debug)]
pub(crate) struct SetCore {
    pub(crate) state: Mutex<SetState>,
    pub(crate) pending: Mutex<Vec<(shmstream::StreamKey, ChunkLease)>>,
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) default_policy: Option<String>,
    pub(crate) waker: Waker,
    /// Where the set's Python policies leave their exceptions.
    pub(crate) policy_error: PolicyError,
    /// The policy name and Python policy object (None: a policy by name)
    /// of each stream adopted through a factory or added with a Python
    /// policy, by identity (the factory runs before the stream has a key).
    pub(crate) policy_objects: Arc<Mutex<HashMap<StreamId, PolicyOf>>>,
}

impl SetCore {
    /// The locked state; when a `wait_any` holds it, wakes the waiter and
    /// takes the lock between two of its sleeps (tries again every
    /// millisecond, waking it each time, in case the waiter took the lock
    /// back first).
    pub(crate) fn state(&self) -> MutexGuard<'_, SetState> {
        loop {
            if let Some(st) = self.try_state() {
                return st;
            }
            (self.waker.0)();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(crate) fn try_state(&self) -> Option<MutexGuard<'_, SetState>> {
        try_lock(&self.state)
    }

    /// Queues a lease the holder of the set hands back, and wakes a
    /// waiting `wait_any` so that it does so at once.
    pub(crate) fn queue(&self, key: shmstream::StreamKey, lease: ChunkLease) {
        lock(&self.pending).push((key, lease));
        (self.waker.0)();
    }

    pub(crate) fn has_pending(&self) -> bool {
        !lock(&self.pending).is_empty()
    }

    /// Hands queued leases back, then drops parked streams nobody holds.
    pub(crate) fn drain(&self, state: &mut SetState) {
        let queued = std::mem::take(&mut *lock(&self.pending));
        for (key, lease) in queued {
            if let Some(buf) = state.buffer(key) {
                // Every queued lease came from this stream's buffer.
                let _ = buf.release_lease(lease);
            }
        }
        state.parked.retain(|(_, _, w)| w.strong_count() > 0);
    }

    /// The locked state, without the GIL while it is busy.
    pub(crate) fn locked(&self, py: Python<'_>) -> MutexGuard<'_, SetState> {
        /// A guard carried out of `detach`, which runs its closure on this
        /// thread: the guard never leaves the thread that locked.
        struct OnThisThread<'a>(MutexGuard<'a, SetState>);
        // SAFETY: `Python::detach` calls the closure on the calling thread
        // and returns its value there; `Send` is asked only because the
        // closure must not touch Python objects. The guard is unwrapped at
        // once on the same thread, so it is unlocked by the thread that
        // locked it.
        unsafe impl Send for OnThisThread<'_> {}
        let mut st = match self.try_state() {
            Some(st) => st,
            None => py.detach(|| OnThisThread(self.state())).0,
        };
        self.drain(&mut st);
        st
    }
}
