//! A `StreamSet`'s wait made outside the set, by an event loop: the set
//! announces a sleeper on its hub's bell exactly as `wait_any` does before
//! it sleeps, and hands the futex word and the value to wait on to the
//! caller, who waits on it without a thread (an io_uring `FUTEX_WAIT`
//! whose completion the loop watches). The producers' wake path is
//! unchanged: their ring finds the sleeper announced and wakes the futex,
//! which completes that wait.

use crate::hub::stream_set::{StreamKey, StreamSet, WATCH_SLICE};
use crate::protocol::hub::HubMem;
use crate::sync::doorbell::UNORDERED_SLICE;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A sleeper announced on a set's hub bell by [`StreamSet::look_or_arm`],
/// whose wait is the caller's: wait until the 32-bit futex at
/// [`futex`](BellWait::futex) (a *shared* futex: the word is in memory
/// mapped by the producers) no longer holds [`seen`](BellWait::seen), or
/// at most [`slice`](BellWait::slice). While it lives every producer's
/// ring wakes that futex; dropping it retracts the announcement. Then look
/// again ([`StreamSet::look_or_arm`]).
pub struct BellWait {
    hub: Arc<HubMem>,
    seen: u32,
    slice: Option<Duration>,
}

impl BellWait {
    /// The futex word's address. It stays mapped while this value lives
    /// (it holds the hub).
    #[cfg(not(loom))]
    pub fn futex(&self) -> *const u32 {
        self.hub.bell().word_ptr()
    }

    /// Under loom, the wait itself (the model's futex), for the models of
    /// an event loop's wait.
    #[cfg(loom)]
    pub fn wait(&self) {
        self.hub.bell().wait_announced(self.seen);
    }

    /// The word's value the wait must see changed.
    pub fn seen(&self) -> u32 {
        self.seen
    }

    /// The longest the wait may last before the set must look again
    /// (producers watched by lock tests in slices, or a sleeper the kernel
    /// could not order with the publishers); `None`: no bound.
    pub fn slice(&self) -> Option<Duration> {
        self.slice
    }
}

impl Drop for BellWait {
    fn drop(&mut self) {
        self.hub.bell().retract();
    }
}

impl fmt::Debug for BellWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BellWait")
            .field("hub", &self.hub.name())
            .field("seen", &self.seen)
            .field("slice", &self.slice)
            .finish()
    }
}

impl<E> StreamSet<E> {
    /// One look, as `wait_any(Some(Duration::ZERO))`, into `ready`
    /// (cleared first); when nothing is ready, a [`BellWait`] to wait on
    /// instead of sleeping here. `None` with `ready` empty: something
    /// changed between the look and the announcement (or a
    /// [`waker`](Self::waker) rang): look again.
    pub fn look_or_arm(&mut self, ready: &mut Vec<StreamKey>) -> Option<BellWait> {
        ready.clear();
        self.collect(ready);
        if !ready.is_empty() {
            self.take_turns(ready);
            self.carry.clear();
            self.carry.extend_from_slice(ready);
            return None;
        }
        let hub = &self.hub;
        let woken = &self.woken;
        #[cfg(not(any(loom, miri)))]
        let watch = &self.death_watch;
        let fired = || {
            #[cfg(not(any(loom, miri)))]
            return watch.as_ref().is_some_and(|w| w.fired());
            #[cfg(any(loom, miri))]
            return false;
        };
        let announced = hub.bell().announce(|| {
            (hub.any_pending() || fired() || woken.load(Ordering::Acquire)).then_some(())
        });
        let announced = match announced {
            Ok(()) => {
                // The waker's flag is for a wait in progress; this one is
                // over (the caller looks again, and sees what rang).
                self.woken.store(false, Ordering::Relaxed);
                return None;
            }
            Err(a) => a,
        };
        let mut slice = self.sliced().then_some(WATCH_SLICE);
        if !announced.ordered {
            slice = Some(slice.map_or(UNORDERED_SLICE, |s| s.min(UNORDERED_SLICE)));
        }
        if cfg!(loom) {
            // Under loom no timeouts: a lost wake-up must show as a deadlock.
            slice = None;
        }
        self.carry.clear();
        Some(BellWait {
            hub: self.hub.clone(),
            seen: announced.seen,
            slice,
        })
    }
}
