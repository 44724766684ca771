//! The wait loop of both sides of a ring: spin briefly, then yield, then
//! sleep on a doorbell in slices, looking at the peer's liveness between
//! slices. Never spins without yielding.

use std::time::{Duration, Instant};

/// How long one sleep on a doorbell lasts at most (so a dead peer is
/// noticed within it).
pub(crate) const SLEEP_SLICE: Duration = Duration::from_millis(20);

/// How long a waiter spins (with short pauses between looks) before it
/// starts yielding, and how long it keeps looking in all before it sleeps:
/// about the cost of a futex sleep and wake-up on a VM (15-30 us).
#[cfg(not(loom))]
pub(crate) const SPIN_PHASE: Duration = Duration::from_micros(5);

#[cfg(not(loom))]
pub(crate) const SPIN_BUDGET: Duration = Duration::from_micros(30);

/// Result of waiting for a condition.
pub(crate) enum Waited<T> {
    Ready(T),
    TimedOut,
    PeerGone,
}

/// Spins briefly with growing pauses, then yields, then sleeps on `bell` in
/// slices, checking `peer_gone` between slices. `ready` is re-checked after
/// the peer is found gone, so what the peer completed before it died is not
/// lost. Never spins without yielding: on two cores a spinning waiter could
/// starve the peer it waits for.
pub(crate) fn wait_for<T>(
    bell: &crate::sync::doorbell::Doorbell,
    timeout: Option<Duration>,
    mut ready: impl FnMut() -> Option<T>,
    mut peer_gone: impl FnMut() -> bool,
) -> Waited<T> {
    let start = timeout.map(|_| Instant::now());
    // Under loom, straight to the doorbell: spinning only multiplies the
    // interleavings, the handshake is what must be checked.
    #[cfg(not(loom))]
    {
        let begun = Instant::now();
        // A short timeout shortens the spinning too.
        let budget = timeout.map_or(SPIN_BUDGET, |t| t.min(SPIN_BUDGET));
        let mut pauses = 1u32;
        loop {
            if let Some(v) = ready() {
                return Waited::Ready(v);
            }
            let waited = begun.elapsed();
            if waited < SPIN_PHASE.min(budget) {
                // Pauses that double up to 16 between looks: each look at
                // the writer's line takes it from the writer, so looking a
                // little less often lets it publish a batch, while a new
                // item is still seen within a fraction of a microsecond.
                for _ in 0..pauses {
                    std::hint::spin_loop();
                }
                pauses = (pauses * 2).min(16);
            } else if waited < budget {
                // Then look between yields, for about what a futex sleep and
                // wake-up cost here; only then sleep.
                std::thread::yield_now();
            } else {
                break;
            }
        }
    }
    loop {
        if let Some(v) = ready() {
            return Waited::Ready(v);
        }
        if peer_gone() {
            return match ready() {
                Some(v) => Waited::Ready(v),
                None => Waited::PeerGone,
            };
        }
        let slice = match (timeout, start) {
            (Some(t), Some(s)) => {
                let elapsed = s.elapsed();
                if elapsed >= t {
                    return Waited::TimedOut;
                }
                Some((t - elapsed).min(SLEEP_SLICE))
            }
            _ if cfg!(loom) => None,
            _ => Some(SLEEP_SLICE),
        };
        // The re-check covers the peer's departure too: a leaving peer sets
        // its flag and rings, and that ring must not fall between our look
        // at `peer_gone` above and the sleep.
        // Once the peer is gone, look again: what it completed before it
        // left is still delivered.
        let woke = bell.sleep(slice, || match ready() {
            Some(v) => Some(Some(v)),
            None if peer_gone() => Some(ready()),
            None => None,
        });
        match woke {
            Some(Some(v)) => return Waited::Ready(v),
            Some(None) => return Waited::PeerGone,
            None => {}
        }
    }
}
