//! The `futex-count` role: a plain streaming run for `strace -c` to count
//! the futex and sched_yield calls of both processes (`scripts/bench.sh`).

use crate::streaming::shm::ShmStream;
use crate::streaming::Stream;
use std::env;
use std::time::{Duration, Instant};

/// Streams 56-byte tensors and stops: 10^6 at full speed, or with
/// `SHMSTREAM_BENCH_PACE_NS` set, 2 * 10^5 at one per that many ns.
pub(crate) fn futex_count() {
    let pace = env::var("SHMSTREAM_BENCH_PACE_NS")
        .ok()
        .map(|ns| Duration::from_nanos(ns.parse().expect("a number of ns")));
    let items = if pace.is_some() { 200_000 } else { 1_000_000 };
    let mut peer = ShmStream::start(56);
    let start = Instant::now();
    peer.send_paced(items, pace);
    let elapsed = start.elapsed();
    peer.stop();
    println!("BENCH-RESULT futex-items {items} {}", elapsed.as_nanos());
}
