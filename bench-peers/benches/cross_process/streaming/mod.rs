//! `stream/*`: one-way streaming throughput to a child that reads every
//! byte. The peers: shmstream one by one and in batches ([`shm`]), a
//! buffered Unix socket ([`socket`]), the bare handoff floor ([`handoff`]),
//! a memcpy in one process ([`memcpy`]) and one stream of mixed sizes
//! ([`mixed`]).

pub(crate) mod handoff;
pub(crate) mod mixed;
pub(crate) mod shm;
pub(crate) mod socket;

use crate::common::{config, Aligned};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use shmstream::StreamConfig;
use std::time::Instant;

/// One-way streaming of `size`-byte records to a child that reads them.
pub(crate) trait Stream: Sized {
    fn start(size: usize) -> Self;
    /// Sends `items` records and waits until the child has read them all.
    fn send_batch(&mut self, items: u64);
    fn stop(self);
}

/// The bench body.
pub(crate) fn stream<S: Stream>(c: &mut Criterion, size: usize, name: &str) {
    let mut peer = S::start(size);
    let mut group = c.benchmark_group(format!("stream/{}", size_label(size)));
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            peer.send_batch(iters);
            start.elapsed()
        })
    });
    group.finish();
    peer.stop();
}

pub(crate) fn size_label(size: usize) -> String {
    if size % (1 << 20) == 0 {
        format!("{}MiB", size >> 20)
    } else if size % 1024 == 0 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

/// 64 KiB of payload for small records (1024 items), 16 records' worth for
/// 64 KiB ones (1 MiB), 4 for 1 MiB and more (8 MiB for 2 MiB, which stays
/// in this machine's 32 MiB L3 with the source; 256 MiB for 64 MiB): every
/// size registered with its own size, placed back to back.
pub(crate) fn stream_config(prefix: &str, size: usize) -> StreamConfig {
    let size = size as u64;
    let (capacity, payload) = if size <= 64 {
        (1024, 65536)
    } else if size >= 1 << 20 {
        (4, 4 * size)
    } else {
        (16, 16 * size)
    };
    config(prefix, "stream", capacity, 0).with_payload_bytes(payload.next_power_of_two())
}

/// memcpy of one record, in one process: the bound for moving the bytes.
pub(crate) fn memcpy(c: &mut Criterion, size: usize) {
    let source = Aligned::new(size);
    let mut dest = Aligned::new(size);
    let mut group = c.benchmark_group(format!("stream/{}", size_label(size)));
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
        b.iter(|| dest.bytes_mut().copy_from_slice(black_box(source.bytes())))
    });
    group.finish();
    black_box(dest.bytes());
}
