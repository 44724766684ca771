//! Poison-tolerant locks: a panic while a binding holds a lock leaves the
//! guarded state as consistent as any early return would (every core call
//! checks its own state), so the lock is taken again rather than refused.

use std::sync::{Mutex, MutexGuard, TryLockError};

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
