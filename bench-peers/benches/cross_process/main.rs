//! Benches 2, 3 and 5 of issue 6, between two processes: this binary spawns
//! itself (`current_exe()`, the role in `SHMSTREAM_BENCH_ROLE`) as the peer.
//!
//! - `latency/*`: one-way latency of a 64-byte message with both sides
//!   spinning, measured as half the round trip of a ping-pong: shmstream
//!   (a 64-byte U64 tensor each way), the floor (two atomics on their own
//!   cache lines of a shared mapping) and a Unix domain socket (blocking
//!   reads), and iceoryx2 publish-subscribe with `--features iceoryx2`.
//! - `stream/*`: one-way streaming throughput, 56-byte and 64 KiB tensors
//!   written in place by the producer and read in place (every byte summed)
//!   by the consumer, which waits with the library's own wait (spin, yield,
//!   futex): shmstream against a Unix socket (buffered on both sides) and a
//!   plain in-process memcpy of the same size. `stream/56B/shmstream_batch64`
//!   (issue 14): the producer publishes 64 tensors per `put_many` (one
//!   fence per batch); the consumer is the same.
//! - `wakeup/shmstream`: a 64-byte tensor sent 2 ms after the last one, so
//!   the consumer is asleep on the futex; the time from just before
//!   `register` to the consumer's return from its wait (CLOCK_MONOTONIC in
//!   both processes). Its floor, `wakeup/futex_floor`: a bare shared futex
//!   (FUTEX_WAIT in the child, store + FUTEX_WAKE in the parent).
//!
//! With `SHMSTREAM_BENCH_ROLE=futex-count` the binary streams 10^6 56-byte
//! tensors and exits, for `strace -f -c -e trace=futex` to count the futex
//! calls of both processes (`scripts/bench.sh` does).
//!
//! One module per bench family ([`latency`], [`streaming`], [`wakeup`],
//! [`futex_count`]; [`common`] holds the process plumbing they share).
//! Each peer implements [`latency::RoundTrip`], [`streaming::Stream`] or
//! [`wakeup::WakeUp`]; the bench bodies are written once per family. The
//! criterion group and bench names are what `scripts/bench.sh`'s report
//! reads: keep them.

mod common;
mod futex_count;
#[cfg(feature = "iceoryx2")]
mod iox;
mod latency;
mod streaming;
mod wakeup;

use common::{prefix_of, ARG, ROLE};
use criterion::Criterion;
use latency::{child_floor, child_shm_echo, child_socket_echo, latency, Floor, Shm, Socket};
use std::env;
use streaming::handoff::{child_handoff_read, HandoffStream};
use streaming::shm::{child_shm_read, ShmBatchStream, ShmBatchingStream, ShmStream};
use streaming::socket::{child_socket_read, SocketStream};
use streaming::{memcpy, mixed::mixed, stream};
use wakeup::{child_futex_floor, child_shm_wakeup, wakeup, FutexFloor, Wakeup};

fn run_child(role: &str) {
    let arg = env::var(ARG).unwrap_or_default();
    match role {
        "floor" => child_floor(&arg),
        "socket-echo" => child_socket_echo(&arg),
        "shm-echo" => child_shm_echo(&arg),
        #[cfg(feature = "iceoryx2")]
        "iceoryx2-echo" => iox::child_echo(&arg),
        "shm-read" => child_shm_read(&arg),
        "socket-read" => child_socket_read(&arg),
        "handoff-read" => child_handoff_read(&arg),
        "shm-wakeup" => child_shm_wakeup(&arg),
        "futex-floor" => child_futex_floor(&arg),
        "futex-count" => futex_count::futex_count(),
        other => panic!("unknown role {other}"),
    }
}

fn benches(c: &mut Criterion) {
    latency::<Floor>(c, "floor");
    latency::<Shm>(c, "shmstream");
    latency::<Socket>(c, "unix_socket");
    #[cfg(feature = "iceoryx2")]
    latency::<iox::Iceoryx2>(c, "iceoryx2");
    for size in [56, 65536] {
        stream::<ShmStream>(c, size, "shmstream");
        if size == 56 {
            stream::<ShmBatchingStream>(c, size, "shmstream_batching");
            stream::<ShmBatchStream>(c, size, "shmstream_batch64");
        }
        stream::<SocketStream>(c, size, "unix_socket");
        stream::<HandoffStream>(c, size, "bare_handoff");
        memcpy(c, size);
    }
    // Sizes only the byte-granular payload carries without a giant ring
    // (issue 11); the socket is left out (it is 10x behind at 64 KiB).
    for size in [2 << 20, 64 << 20] {
        stream::<ShmStream>(c, size, "shmstream");
        stream::<HandoffStream>(c, size, "bare_handoff");
        memcpy(c, size);
    }
    mixed(c);
    wakeup::<FutexFloor>(c, "futex_floor");
    wakeup::<Wakeup>(c, "shmstream");
}

/// Removes what a failed run may have left in /dev/shm under our prefix.
fn sweep() {
    let prefix = prefix_of(std::process::id());
    for entry in std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            eprintln!("removing a left-over {:?}", entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn main() {
    if let Ok(role) = env::var(ROLE) {
        // The futex-count run is a parent too: its children need the role
        // variable replaced, which `spawn` does.
        run_child(&role);
        if role == "futex-count" {
            sweep();
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    sweep();
    c.final_summary();
}
