//! `stream/mixed` (issue 11): 56 B, 64 KiB, 2 MiB and 64 MiB tensors in
//! turn through one stream, against a memcpy of the same four.

use super::stream_config;
use crate::common::{prefix_of, reap, spawn, u64_meta, Aligned, TIMEOUT};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use shmstream::{Producer, TensorMeta};
use std::process::Child;
use std::time::Instant;

/// The sizes a serving system moves, cycled through one stream (issue 11).
pub(crate) const MIXED: [usize; 4] = [56, 64 << 10, 2 << 20, 64 << 20];

/// One stream carrying [`MIXED`] in turn: a record is one tensor of each
/// size, each registered with its size and written in place. The child is
/// [`child_shm_read`](super::shm::child_shm_read) over the 64 MiB configuration (4 items, 256 MiB of
/// payload), which holds a whole cycle.
pub(crate) struct MixedStream {
    producer: Producer,
    sources: Vec<(TensorMeta, Aligned)>,
    child: Child,
}

impl MixedStream {
    fn start() -> Self {
        let prefix = prefix_of(std::process::id());
        let largest = MIXED[3];
        let producer = Producer::create(&stream_config(&prefix, largest)).expect("create");
        let child = spawn("shm-read", &format!("{prefix},{largest}"));
        let sources = MIXED
            .iter()
            .map(|&n| (u64_meta(n), Aligned::new(n)))
            .collect();
        MixedStream {
            producer,
            sources,
            child,
        }
    }
    fn send_batch(&mut self, cycles: u64) {
        for _ in 0..cycles {
            for (meta, source) in &self.sources {
                let mut slot = self
                    .producer
                    .register_sized("x", source.size as u64)
                    .expect("register");
                slot.payload_mut().copy_from_slice(source.bytes());
                slot.commit(*meta).expect("commit");
            }
        }
        self.producer
            .wait_drained(Some(TIMEOUT))
            .expect("wait drained");
    }
    fn stop(self) {
        self.producer.signal_done();
        reap(self.child);
    }
}

/// `stream/mixed`: [`MixedStream`] against one memcpy of the same four
/// tensors in one process.
pub(crate) fn mixed(c: &mut Criterion) {
    let bytes: usize = MIXED.iter().sum();
    let mut group = c.benchmark_group("stream/mixed");
    group.throughput(Throughput::Bytes(bytes as u64));
    let mut peer = MixedStream::start();
    group.bench_function(BenchmarkId::from_parameter("shmstream"), |b| {
        b.iter_custom(|cycles| {
            let start = Instant::now();
            peer.send_batch(cycles);
            start.elapsed()
        })
    });
    peer.stop();
    let sources: Vec<Aligned> = MIXED.iter().map(|&n| Aligned::new(n)).collect();
    let mut dests: Vec<Aligned> = MIXED.iter().map(|&n| Aligned::new(n)).collect();
    group.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
        b.iter(|| {
            for (d, s) in dests.iter_mut().zip(&sources) {
                d.bytes_mut().copy_from_slice(black_box(s.bytes()));
            }
        })
    });
    group.finish();
    black_box(dests.iter().map(|d| d.bytes().len()).sum::<usize>());
}
