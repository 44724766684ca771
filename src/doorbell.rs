//! One direction of wake-ups between the two processes: a futex word that
//! the sleeper waits on and a count of sleepers that the publisher looks at.
//!
//! The handshake is the Dekker pattern. The sleeper announces itself, issues
//! a SeqCst fence and re-checks its condition; the publisher publishes,
//! issues a SeqCst fence and looks for an announcement. The two fences are
//! totally ordered, so either the publisher sees the announcement (and rings)
//! or the sleeper sees the publication (and does not sleep). Without a
//! sleeper the publisher makes no system call.
//!
//! The futex is a *shared* one (no `FUTEX_PRIVATE_FLAG`): the word lives in a
//! segment mapped by two processes, and private futexes are keyed by the
//! address space, so a wake from the other process would never arrive.
//! Under loom the futex is modelled with a mutex and a condition variable
//! (the futex checks the word and sleeps atomically with respect to a wake),
//! and waits have no timeout, so a lost wake-up shows as a deadlock.

use crate::sync::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// A futex word and the announcement of its sleeper. Lives in shared memory
/// (`repr(C)`, all zeroes is the initial state).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Doorbell {
    /// Bumped on every ring that found a sleeper; the futex word.
    word: AtomicU32,
    /// Number of sleepers announced (0 or 1: one side sleeps per bell).
    sleepers: AtomicU32,
    #[cfg(loom)]
    model: FutexModel,
}

/// The fence of the handshake. `--cfg shmstream_weaken="wake_seqcst"`
/// weakens it to AcqRel so that the loom model shows the lost wake-up.
#[inline]
fn handshake_fence() {
    #[cfg(not(shmstream_weaken = "wake_seqcst"))]
    fence(Ordering::SeqCst);
    #[cfg(shmstream_weaken = "wake_seqcst")]
    fence(Ordering::AcqRel);
}

impl Doorbell {
    /// A bell nobody sleeps on (the state that zeroed shared memory holds).
    // Only heap rings build these; segments start from zeroed memory.
    #[cfg_attr(not(any(loom, miri)), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Doorbell {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            #[cfg(loom)]
            model: FutexModel {
                lock: loom::sync::Mutex::new(()),
                cond: loom::sync::Condvar::new(),
            },
        }
    }

    /// Called by the publisher after it published (a completion, a release,
    /// a flag). Cheap when nobody sleeps: one fence and one load.
    #[inline]
    pub(crate) fn ring(&self) {
        // Pairs with the fence in `sleep`: orders our publication before the
        // look at `sleepers`.
        handshake_fence();
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake();
        }
    }

    /// Wakes the sleeper unconditionally (used when a peer leaves).
    pub(crate) fn wake(&self) {
        // Release: a sleeper that sees the new word value also sees what was
        // published before the ring.
        self.word.fetch_add(1, Ordering::Release);
        self.futex_wake();
    }

    /// One round of sleeping: announce, re-check `ready`, sleep at most
    /// `slice` unless the condition already holds or a ring came in between.
    /// Returns what `ready` returned on the re-check (`None` after a sleep:
    /// the caller checks again).
    pub(crate) fn sleep<T>(
        &self,
        slice: Option<Duration>,
        ready: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        // Read the word before the re-check: a ring after this point changes
        // it, and the futex then refuses to sleep on the stale value.
        let seen = self.word.load(Ordering::Acquire);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // Pairs with the fence in `ring`: the announcement is ordered before
        // the re-check of the condition.
        handshake_fence();
        if let Some(value) = ready() {
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            return Some(value);
        }
        self.futex_wait(seen, slice);
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        None
    }

    #[cfg(not(any(loom, miri)))]
    fn futex_wait(&self, seen: u32, slice: Option<Duration>) {
        let timeout = slice.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the word is a valid, aligned u32 for the life of `self`
        // (the mapping outlives every handle that can reach it); FUTEX_WAIT
        // only reads it and the timespec pointer is null or points at a live
        // local. Errors (EAGAIN when the word changed, EINTR, ETIMEDOUT) all
        // mean "check again", which the caller does.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                timeout_ptr,
            );
        }
    }

    #[cfg(not(any(loom, miri)))]
    fn futex_wake(&self) {
        // SAFETY: as in `futex_wait`; FUTEX_WAKE does not touch the word's
        // value, it only wakes the sleepers queued on its address.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
            );
        }
    }

    /// Miri has no shared futex: sleep briefly instead (correctness of the
    /// handshake is loom's job, Miri checks the memory accesses).
    #[cfg(all(miri, not(loom)))]
    fn futex_wait(&self, seen: u32, slice: Option<Duration>) {
        if self.word.load(Ordering::Acquire) == seen {
            std::thread::sleep(
                slice
                    .unwrap_or(Duration::from_millis(1))
                    .min(Duration::from_millis(1)),
            );
        }
    }

    #[cfg(all(miri, not(loom)))]
    fn futex_wake(&self) {}

    #[cfg(loom)]
    fn futex_wait(&self, seen: u32, _slice: Option<Duration>) {
        self.model.wait(&self.word, seen);
    }

    #[cfg(loom)]
    fn futex_wake(&self) {
        self.model.wake();
    }
}

/// A futex made of loom primitives: the check of the word and going to sleep
/// happen under one lock, as the kernel does them under its hash-bucket lock.
#[cfg(loom)]
#[derive(Debug)]
struct FutexModel {
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

#[cfg(loom)]
impl FutexModel {
    fn wait(&self, word: &AtomicU32, seen: u32) {
        let guard = self.lock.lock().unwrap();
        if word.load(Ordering::Relaxed) == seen {
            // No timeout: a wake-up that never comes is a loom deadlock.
            drop(self.cond.wait(guard).unwrap());
        }
    }

    fn wake(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}
