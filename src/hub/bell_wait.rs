//! A wait made outside the library, by an event loop: a sleeper announced
//! on a doorbell exactly as the sync waits announce one before they sleep,
//! whose futex word and value to wait on go to the caller, who waits on it
//! without a thread (an io_uring `FUTEX_WAIT` whose completion the loop
//! watches). The publishers' wake path is unchanged: they find the sleeper
//! announced and wake the futex, which completes that wait. A set's hub
//! bell (here, `StreamSet::look_or_arm`), a ring's data bell for a
//! standalone buffer and its space bell for a producer (`ring_wait.rs`).

use crate::hub::stream_set::{StreamKey, StreamSet, WATCH_SLICE};
use crate::protocol::hub::HubMem;
use crate::protocol::layout::Control;
use crate::protocol::ring::{Backing, RingMem};
use crate::protocol::wait::SLEEP_SLICE;
use crate::sync::doorbell::{Doorbell, UNORDERED_SLICE};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What keeps a bell's memory mapped while a wait made elsewhere uses it.
enum Keep {
    Hub(Arc<HubMem>),
    /// Only held (the ring's mapping or heap block).
    Ring(#[allow(dead_code)] Arc<dyn Backing>),
}

/// A doorbell that stays valid as long as this value lives.
pub(crate) struct BellAt {
    bell: NonNull<Doorbell>,
    keep: Keep,
    /// The peer may die without a word (another process): a wait must be
    /// sliced to look at its liveness.
    sliced: bool,
}

// SAFETY: the bell is atomics only (shared by design between threads and
// processes), and `keep` holds the memory it lies in for as long as this
// value lives; nothing else is reached through the pointer.
unsafe impl Send for BellAt {}
// SAFETY: as above: a shared reference gives only the bell's atomic API.
unsafe impl Sync for BellAt {}

impl BellAt {
    fn hub(hub: &Arc<HubMem>) -> Self {
        BellAt {
            bell: NonNull::from(hub.bell()),
            keep: Keep::Hub(hub.clone()),
            sliced: false,
        }
    }

    /// One of `mem`'s two bells.
    pub(crate) fn ring(mem: &RingMem, pick: fn(&Control) -> &Doorbell) -> Self {
        let (backing, sliced) = mem.backing();
        BellAt {
            bell: NonNull::from(pick(mem.control())),
            keep: Keep::Ring(backing),
            sliced,
        }
    }

    pub(crate) fn bell(&self) -> &Doorbell {
        // SAFETY: `keep` holds the memory of the bell (a hub's or a ring's
        // mapping or heap block) for as long as `self` lives.
        unsafe { self.bell.as_ref() }
    }

    /// Announces a sleeper, then re-checks `look`: its value when it holds
    /// (nothing stays announced), else the wait to make, bounded by
    /// `slice`, by the peer's liveness slice where it needs one, and by
    /// the unordered slice where the kernel refused the membarrier.
    pub(crate) fn arm<T>(
        self,
        mut slice: Option<Duration>,
        look: impl FnOnce() -> Option<T>,
    ) -> Result<T, BellWait> {
        let announced = match self.bell().announce(look) {
            Ok(v) => return Ok(v),
            Err(a) => a,
        };
        if self.sliced {
            slice = Some(slice.map_or(SLEEP_SLICE, |s| s.min(SLEEP_SLICE)));
        }
        if !announced.ordered {
            slice = Some(slice.map_or(UNORDERED_SLICE, |s| s.min(UNORDERED_SLICE)));
        }
        if cfg!(loom) {
            // Under loom no timeouts: a lost wake-up must show as a deadlock.
            slice = None;
        }
        Err(BellWait {
            at: self,
            seen: announced.seen,
            slice,
        })
    }
}

/// A sleeper announced on a doorbell by [`StreamSet::look_or_arm`],
/// [`StreamBuffer::look_or_arm`](crate::StreamBuffer::look_or_arm),
/// [`Producer::room_or_arm`](crate::Producer::room_or_arm) or
/// [`Producer::drained_or_arm`](crate::Producer::drained_or_arm), whose
/// wait is the caller's: wait until the 32-bit futex at
/// [`futex`](BellWait::futex) (a *shared* futex: the word may be in memory
/// mapped by another process) no longer holds [`seen`](BellWait::seen), or
/// at most [`slice`](BellWait::slice). While it lives every publisher's
/// ring wakes that futex; dropping it retracts the announcement. Then look
/// again.
pub struct BellWait {
    at: BellAt,
    seen: u32,
    slice: Option<Duration>,
}

impl BellWait {
    /// The futex word's address. It stays mapped while this value lives
    /// (it holds the hub or the ring).
    #[cfg(not(loom))]
    pub fn futex(&self) -> *const u32 {
        self.at.bell().word_ptr()
    }

    /// Under loom, the wait itself (the model's futex), for the models of
    /// an event loop's wait.
    #[cfg(loom)]
    pub fn wait(&self) {
        self.at.bell().wait_announced(self.seen);
    }

    /// The word's value the wait must see changed.
    pub fn seen(&self) -> u32 {
        self.seen
    }

    /// The longest the wait may last before the caller must look again
    /// (a peer watched by lock tests in slices, or a sleeper the kernel
    /// could not order with the publishers); `None`: no bound.
    pub fn slice(&self) -> Option<Duration> {
        self.slice
    }
}

impl Drop for BellWait {
    fn drop(&mut self) {
        self.at.bell().retract();
    }
}

impl fmt::Debug for BellWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("BellWait");
        match &self.at.keep {
            Keep::Hub(hub) => out.field("hub", &hub.name()),
            Keep::Ring(_) => out.field("ring", &()),
        };
        out.field("seen", &self.seen)
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
        let slice = self.sliced().then_some(WATCH_SLICE);
        let armed = BellAt::hub(hub).arm(slice, || {
            (hub.any_pending() || fired() || woken.load(Ordering::Acquire)).then_some(())
        });
        self.carry.clear();
        match armed {
            Ok(()) => {
                // The waker's flag is for a wait in progress; this one is
                // over (the caller looks again, and sees what rang).
                self.woken.store(false, Ordering::Relaxed);
                None
            }
            Err(wait) => Some(wait),
        }
    }
}
