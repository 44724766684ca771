//! One direction of wake-ups between the two processes: a futex word that
//! the sleeper waits on and a count of sleepers that the publisher looks at.
//!
//! The handshake is the Dekker pattern. The sleeper announces itself, issues
//! a full barrier and re-checks its condition; the publisher publishes,
//! issues a barrier and looks for an announcement. Either the publisher sees
//! the announcement (and rings) or the sleeper sees the publication (and
//! does not sleep). Without a sleeper the publisher makes no system call.
//!
//! The barrier is **asymmetric** where the kernel allows it: publishing is
//! the hot path (every commit, every release) and sleeping the rare one, so
//! the publisher issues only a compiler fence and the sleeper pays for both
//! with `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which runs a full
//! memory barrier on every CPU that runs a thread of a process registered
//! for it (each publishing process registers once, on its first ring). A
//! CPU that runs none of them is ordered by its context switch. So every
//! publisher's store either is visible to the sleeper's re-check or was
//! followed by a full barrier before its load of `sleepers`, which then sees
//! the announcement: the same either-or as two SeqCst fences. Where the
//! kernel refuses membarrier, both sides fall back to SeqCst fences (see
//! `publish_barrier` and `sleep_barrier`; docs/design.md gives the proof).
//! Loom cannot express membarrier: its models run the symmetric fences.
//!
//! The futex is a *shared* one (no `FUTEX_PRIVATE_FLAG`): the word lives in a
//! segment mapped by two processes, and private futexes are keyed by the
//! address space, so a wake from the other process would never arrive.
//! Under loom the futex is modelled with a mutex and a condition variable
//! (the futex checks the word and sleeps atomically with respect to a wake),
//! and waits have no timeout, so a lost wake-up shows as a deadlock.

use crate::sync::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// How a futex wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A wake-up, the word changed before the wait began, or no wait at
    /// all (the condition held): look again.
    Changed,
    /// The slice ran out.
    #[cfg_attr(any(loom, miri), allow(dead_code))]
    TimedOut,
    /// A signal handler ran in this thread (`EINTR`: handlers installed
    /// without `SA_RESTART`, as CPython's are, end the wait).
    // Only the real futex reports it (not the Miri and loom stand-ins).
    #[cfg_attr(any(loom, miri), allow(dead_code))]
    Interrupted,
}

/// A sleeper announced by [`Doorbell::announce`], whose wait is the
/// caller's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Announced {
    /// The futex word's value before the re-check: wait for a change.
    pub(crate) seen: u32,
    /// False when the sleeper's membarrier failed: a publisher may miss the
    /// announcement, so the wait must be bounded (`UNORDERED_SLICE`).
    pub(crate) ordered: bool,
}

/// A futex word and the announcement of its sleeper. Lives in shared memory
/// (`repr(C)`, all zeroes is the initial state).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Doorbell {
    /// Bumped on every ring that found a sleeper; the futex word.
    word: AtomicU32,
    /// Number of sleepers announced (one side sleeps per bell; a hub's
    /// bell may have a thread and an event loop's wait announced at once).
    sleepers: AtomicU32,
    #[cfg(loom)]
    model: FutexModel,
}

/// The fence of the handshake under loom and Miri, and wherever membarrier
/// is not available. `--cfg shmstream_weaken="wake_seqcst"` weakens it to
/// AcqRel so that the loom model shows the lost wake-up.
#[inline]
fn handshake_fence() {
    #[cfg(not(shmstream_weaken = "wake_seqcst"))]
    fence(Ordering::SeqCst);
    #[cfg(shmstream_weaken = "wake_seqcst")]
    fence(Ordering::AcqRel);
}

/// The publisher's half of the barrier: a compiler fence once this process
/// is registered for global expedited membarrier, a SeqCst fence otherwise.
#[inline]
fn publish_barrier() {
    #[cfg(not(any(loom, miri)))]
    if membarrier::publisher_is_light() {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        return;
    }
    handshake_fence();
}

/// The sleeper's half: a SeqCst fence, then the membarrier that orders
/// every registered publisher. Returns false when the kernel refused the
/// membarrier: a publisher with the light barrier may then miss this
/// sleeper, and the caller bounds its sleep ([`UNORDERED_SLICE`]).
#[inline]
fn sleep_barrier() -> bool {
    handshake_fence();
    #[cfg(not(any(loom, miri)))]
    return membarrier::heavy();
    #[cfg(any(loom, miri))]
    return true;
}

/// The longest sleep when the sleeper's membarrier failed (a seccomp filter
/// that lets the peer register but not this process call it): a wake-up the
/// peer skipped then costs at most this much latency, never a hang.
#[cfg_attr(any(loom, miri), allow(dead_code))]
pub(crate) const UNORDERED_SLICE: Duration = Duration::from_millis(1);

/// The process-wide membarrier state (not under loom or Miri: no syscalls).
#[cfg(not(any(loom, miri)))]
mod membarrier {
    use std::sync::atomic::{fence, AtomicU8, Ordering};

    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
    const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

    const UNKNOWN: u8 = 0;
    const LIGHT: u8 = 1;
    const FULL: u8 = 2;

    /// Whether this process publishes with the light barrier: UNKNOWN until
    /// its first ring registers it.
    static PUBLISHER: AtomicU8 = AtomicU8::new(UNKNOWN);

    fn membarrier(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier takes two integers (command, flags; a third,
        // cpu_id, only for RSEQ commands) and touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        }
    }

    /// Whether the publisher may use the light barrier. The first call
    /// registers the process and answers false, so that ring uses a full
    /// fence, after the registration: a sleeper whose membarrier ran before
    /// the registration took effect (and so sent this CPU no barrier) saw
    /// the registration's per-CPU state unset after its own full barrier,
    /// so this full fence, after that state was set, orders our next load
    /// of `sleepers` after its announcement (store buffering with a full
    /// barrier on both sides).
    #[inline]
    pub(super) fn publisher_is_light() -> bool {
        match PUBLISHER.load(Ordering::Relaxed) {
            LIGHT => true,
            FULL => false,
            _ => {
                register();
                false
            }
        }
    }

    /// A forked child is a new process: it registers again on its first
    /// ring (the kernel's registration belongs to the parent's mm).
    extern "C" fn forget_in_child() {
        PUBLISHER.store(UNKNOWN, Ordering::Relaxed);
    }

    #[cold]
    fn register() {
        static AT_FORK: std::sync::Once = std::sync::Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe as a child-after-fork handler must be.
            unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
        });
        let supported = membarrier(MEMBARRIER_CMD_QUERY);
        let wanted = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
        let ok = supported >= 0
            && supported & wanted == wanted
            && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
        // Relaxed is enough: a thread that reads LIGHT and skips the fence
        // is ordered by the registration's effect on the kernel's per-CPU
        // state, which does not depend on this store; the fence after it
        // covers the registering thread's own next load.
        PUBLISHER.store(if ok { LIGHT } else { FULL }, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// What the kernel says this process registered for (`None`: it cannot
    /// tell, before Linux 6.3), and this process's publisher state.
    #[cfg(test)]
    pub(super) fn registration() -> (Option<bool>, u8) {
        const MEMBARRIER_CMD_GET_REGISTRATIONS: libc::c_long = 1 << 9;
        let supported = membarrier(MEMBARRIER_CMD_QUERY);
        let kernel =
            (supported >= 0 && supported & MEMBARRIER_CMD_GET_REGISTRATIONS != 0).then(|| {
                membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)
                    & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
                    != 0
            });
        (kernel, PUBLISHER.load(Ordering::Relaxed))
    }

    /// Whether this kernel offers what the light publisher needs.
    #[cfg(test)]
    pub(super) fn available() -> bool {
        let wanted = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
        let supported = membarrier(MEMBARRIER_CMD_QUERY);
        supported >= 0 && supported & wanted == wanted
    }

    #[cfg(test)]
    pub(super) const STATES: (u8, u8, u8) = (UNKNOWN, LIGHT, FULL);

    /// The sleeper's membarrier; false when the kernel refused it.
    #[inline]
    pub(super) fn heavy() -> bool {
        // `--cfg shmstream_weaken="wake_membarrier"` leaves it out, to show
        // the stress test in `tests` catching the lost wake-ups.
        if cfg!(shmstream_weaken = "wake_membarrier") {
            return true;
        }
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
    }
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
    /// a flag). Cheap when nobody sleeps: a compiler fence (a SeqCst fence
    /// without membarrier) and one load.
    #[inline]
    pub(crate) fn ring(&self) {
        // Pairs with the sleeper's barrier in `sleep`: our publication is
        // ordered before the look at `sleepers`, or the sleeper's re-check
        // sees it.
        publish_barrier();
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
        self.sleep_reporting(slice, ready).0
    }

    /// As [`sleep`](Self::sleep), and how the futex wait ended
    /// ([`Woke::Changed`] when the re-check held and there was no wait):
    /// the stress test counts timeouts (in a ping-pong none should), a
    /// `StreamSet` that returns on signals looks for [`Woke::Interrupted`].
    pub(crate) fn sleep_reporting<T>(
        &self,
        slice: Option<Duration>,
        ready: impl FnOnce() -> Option<T>,
    ) -> (Option<T>, Woke) {
        let announced = match self.announce(ready) {
            Ok(value) => return (Some(value), Woke::Changed),
            Err(announced) => announced,
        };
        let slice = if announced.ordered {
            slice
        } else {
            Some(slice.map_or(UNORDERED_SLICE, |s| s.min(UNORDERED_SLICE)))
        };
        let woke = self.futex_wait(announced.seen, slice);
        self.retract();
        (None, woke)
    }

    /// The first half of a sleep, for a caller that waits on the futex
    /// itself (an event loop: an io_uring `FUTEX_WAIT` on
    /// [`word_ptr`](Self::word_ptr), woken as this thread would be): reads
    /// the word, announces a sleeper, fences and re-checks `ready`. `Ok`
    /// with its value when it held (nothing stays announced); otherwise the
    /// sleeper stays announced, so every ring wakes the futex, until
    /// [`retract`](Self::retract). The wait must end on a change of the word
    /// from [`Announced::seen`].
    pub(crate) fn announce<T>(&self, ready: impl FnOnce() -> Option<T>) -> Result<T, Announced> {
        // Read the word before the re-check: a ring after this point changes
        // it, and the futex then refuses to sleep on the stale value.
        let seen = self.word.load(Ordering::Acquire);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // Pairs with the publisher's barrier in `ring`: the announcement is
        // ordered before the re-check of the condition.
        let ordered = sleep_barrier();
        if let Some(value) = ready() {
            self.retract();
            return Ok(value);
        }
        Err(Announced { seen, ordered })
    }

    /// Ends an announcement of [`announce`](Self::announce) (the wait is
    /// over or given up).
    pub(crate) fn retract(&self) {
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Under loom, the wait an announced caller makes elsewhere (an
    /// io_uring `FUTEX_WAIT` on the real word): the model's futex wait for
    /// a change from `seen`.
    #[cfg(loom)]
    pub(crate) fn wait_announced(&self, seen: u32) {
        self.futex_wait(seen, None);
    }

    /// The futex word's address, for a wait made elsewhere (an io_uring
    /// `FUTEX_WAIT`). Valid as long as the bell's memory is mapped.
    #[cfg(not(loom))]
    pub(crate) fn word_ptr(&self) -> *const u32 {
        self.word.as_ptr()
    }

    /// Returns how the wait ended.
    #[cfg(not(any(loom, miri)))]
    fn futex_wait(&self, seen: u32, slice: Option<Duration>) -> Woke {
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
        // mean "check again", which the caller does; EINTR and ETIMEDOUT
        // are told apart for the callers that care.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                timeout_ptr,
            )
        };
        if r != -1 {
            return Woke::Changed;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ETIMEDOUT) => Woke::TimedOut,
            Some(libc::EINTR) => Woke::Interrupted,
            _ => Woke::Changed,
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
    /// handshake is loom's job, Miri checks the memory accesses). Never
    /// interrupted, never a timeout (the caller checks again either way).
    #[cfg(all(miri, not(loom)))]
    fn futex_wait(&self, seen: u32, slice: Option<Duration>) -> Woke {
        if self.word.load(Ordering::Acquire) == seen {
            std::thread::sleep(
                slice
                    .unwrap_or(Duration::from_millis(1))
                    .min(Duration::from_millis(1)),
            );
        }
        Woke::Changed
    }

    #[cfg(all(miri, not(loom)))]
    fn futex_wake(&self) {}

    #[cfg(loom)]
    fn futex_wait(&self, seen: u32, _slice: Option<Duration>) -> Woke {
        self.model.wait(&self.word, seen);
        Woke::Changed
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

/// The handshake on real processes and real cores, where loom cannot go:
/// the membarrier half is what makes the publisher's compiler fence enough.
#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;
    use std::hint::spin_loop;
    use std::sync::atomic::AtomicU64;

    /// What the two processes share.
    #[repr(C)]
    struct Shared {
        /// The child sleeps here for `ping`.
        bell: Doorbell,
        _pad: [u64; 15],
        ping: AtomicU64,
        _pad2: [u64; 15],
        /// The child's answer: the last ping it saw.
        ack: AtomicU64,
        /// Futex waits of the child that ran into their timeout.
        timeouts: AtomicU64,
    }

    /// A sleep no healthy publisher leaves unanswered this long: a wait that
    /// runs into it is a wake-up the publisher skipped.
    const SLICE: Duration = Duration::from_millis(100);
    const ROUNDS: u64 = 50_000;
    /// A weakened build loses wake-ups; stop after a few, each costs SLICE.
    const ENOUGH: u64 = 3;
    /// How long the child looks before it sleeps, and about when the parent
    /// publishes: the two meet in the handshake's window often.
    const SPINS: u64 = 200;

    fn spin(n: u64) {
        for _ in 0..n {
            spin_loop();
        }
    }

    /// The child: waits for each ping, a short look first and then through
    /// the handshake, and counts the waits that timed out.
    fn child(shared: &Shared) {
        let mut timeouts = 0;
        for round in 1..=ROUNDS {
            let arrived = || shared.ping.load(Ordering::Acquire) >= round;
            let mut looks = 0;
            while !arrived() && looks < SPINS {
                spin_loop();
                looks += 1;
            }
            while !arrived() {
                let (_, woke) = shared
                    .bell
                    .sleep_reporting(Some(SLICE), || arrived().then_some(()));
                timeouts += u64::from(woke == Woke::TimedOut);
            }
            shared.ack.store(round, Ordering::Release);
            if timeouts >= ENOUGH || shared.ping.load(Ordering::Acquire) == u64::MAX {
                break;
            }
        }
        shared.timeouts.store(timeouts, Ordering::Release);
        shared.ack.store(u64::MAX, Ordering::Release);
    }

    #[test]
    fn a_ring_registers_the_process_and_a_forked_child_registers_again() {
        let (unknown, light, full) = membarrier::STATES;
        let bell = Doorbell::new();
        bell.ring();
        let expected = if membarrier::available() { light } else { full };
        let (kernel, state) = membarrier::registration();
        assert_eq!(state, expected);
        assert!(membarrier::publisher_is_light() == (expected == light));
        if expected == light {
            // The kernel agrees (where it can tell): a light publisher that
            // is not registered would get no barrier from a sleeper.
            assert_ne!(kernel, Some(false), "light but not registered");
        }
        // SAFETY: the child only reads atomics and makes raw syscalls, then
        // leaves with `_exit` (its status carries the verdict).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let forgot = membarrier::registration().1 == unknown;
            Doorbell::new().ring();
            let (kernel, state) = membarrier::registration();
            let ok = forgot && state == expected && (state != light || kernel != Some(false));
            // SAFETY: ends the forked child without the harness's handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child did not forget the parent's registration and register itself"
        );
    }

    #[test]
    fn a_sleep_returns_a_ready_condition_or_times_out_when_nobody_rings() {
        let bell = Doorbell::new();
        assert_eq!(
            bell.sleep_reporting(Some(Duration::from_secs(5)), || Some(7)),
            (Some(7), Woke::Changed)
        );
        let (value, woke) = bell.sleep_reporting(Some(Duration::from_millis(5)), || None::<()>);
        assert_eq!((value, woke), (None, Woke::TimedOut));
        // A ring between the look at the word and the wait: no sleep at all.
        let (value, woke) = bell.sleep_reporting(Some(Duration::from_secs(5)), || {
            bell.wake();
            None::<()>
        });
        assert_eq!((value, woke), (None, Woke::Changed));
    }

    #[test]
    fn a_sleeper_meeting_publications_across_processes_loses_no_wake_up() {
        let len = std::mem::size_of::<Shared>();
        // SAFETY: a fresh anonymous shared mapping, zeroed by the kernel
        // (all zeroes is a valid `Shared`: an idle bell, counters at 0); it
        // is unmapped at the end of the test, after the child exited.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        // SAFETY: as above; the fields read across processes are atomics.
        let shared = unsafe { &*(ptr as *const Shared) };
        // SAFETY: the child runs only atomics, spins and raw syscalls
        // (futex, membarrier) on the shared mapping and leaves with
        // `_exit`: no allocation, no lock another thread of the test harness
        // may hold.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            child(shared);
            // SAFETY: ends the forked child without running the harness's
            // exit handlers or destructors.
            unsafe { libc::_exit(0) };
        }
        // The parent publishes each ping after a varying delay around the
        // child's look, so publications land before, in and after the
        // child's announce/barrier/re-check.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 1..=ROUNDS {
            let mut looks = 0u32;
            while shared.ack.load(Ordering::Acquire) < round - 1 {
                looks += 1;
                if looks % 64 == 0 {
                    std::thread::yield_now();
                } else {
                    spin_loop();
                }
            }
            if shared.ack.load(Ordering::Acquire) == u64::MAX {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            spin(x % (2 * SPINS));
            shared.ping.store(round, Ordering::Release);
            shared.bell.ring();
        }
        shared.ping.store(u64::MAX, Ordering::Release);
        shared.bell.wake();
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let timeouts = shared.timeouts.load(Ordering::Acquire);
        let acked = shared.ack.load(Ordering::Acquire);
        // SAFETY: the child is gone and `shared` is not used past here.
        unsafe { libc::munmap(ptr, len) };
        assert_eq!(
            timeouts, 0,
            "the child's waits ran into their timeout: lost wake-ups"
        );
        assert_eq!(acked, u64::MAX, "the child did not finish");
    }
}
