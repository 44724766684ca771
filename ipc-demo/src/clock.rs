//! The clock both processes share (CLOCK_MONOTONIC, so a timestamp written
//! by the producer is comparable with the consumer's), and the consumer's
//! count of sleeps.

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the
/// host, unlike an `Instant`, which cannot be sent to another process.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the last tick's time, read
/// without the TSC, for deciding when to do something periodic.
pub fn coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass, which outlives the
    // call; both monotonic clocks always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "the monotonic clocks are always available");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Voluntary context switches of this process so far: each is a sleep
/// (a futex wait, a `nanosleep`, a blocking read), an upper bound on the
/// number of futex waits.
pub fn voluntary_switches() -> u64 {
    // SAFETY: `rusage` is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the struct we pass, which outlives the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc == 0 {
        usage.ru_nvcsw as u64
    } else {
        0
    }
}
