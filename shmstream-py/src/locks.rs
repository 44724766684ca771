//! Poison-tolerant locks: a panic while a binding holds a lock leaves the
//! guarded state as consistent as any early return would (every core call
//! checks its own state), so the lock is taken again rather than refused.

use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the buffer as consistent as
    // any early return would (every core call checks its own state).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Waits on `cond` until `ready` holds for the state in `m`, at most
/// `linger` in all: the guard, and whether `ready` held (a watch thread
/// waits so for its next arm, then ends).
pub(crate) fn wait_ready<'m, T>(
    m: &'m Mutex<T>,
    cond: &Condvar,
    linger: Duration,
    ready: impl Fn(&T) -> bool,
) -> (MutexGuard<'m, T>, bool) {
    let deadline = Instant::now() + linger;
    let mut guard = lock(m);
    while !ready(&guard) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (guard, false);
        }
        guard = cond
            .wait_timeout(guard, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    (guard, true)
}
