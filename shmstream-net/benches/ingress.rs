//! Ingress bandwidth, sender -> ring, over UCX (run with `UCX_TLS=tcp`
//! for the loopback figures of docs/benchmarks.md; scripts/bench-ucx.sh
//! runs it beside `ucx_perftest`).
//!
//! Each iteration streams `STREAM_BYTES` of tensors of one size (64 KiB,
//! 2 MiB, 64 MiB) from a `Sender` thread to a `Receiver` landing them in a
//! 256 MiB ring, drained by a consumer thread; the time counted is the
//! receiver's, from the connection to the last commit (connection setup
//! and memory registration excluded: they happen once per stream).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
use shmstream_net::{Receiver, ReceiverOptions, Sender, SenderOptions};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const STREAM_BYTES: u64 = 512 << 20;

fn one_stream(size: u64) -> Duration {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let cfg = StreamConfig::new(StreamId {
        request_id: format!("ingress-{}-{n}", std::process::id()),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(1024)
    .with_payload_bytes(256 << 20);
    let (producer, mut consumer) = in_process(&cfg).unwrap();
    let count = (STREAM_BYTES / size).max(8);
    let mut receiver = Receiver::bind(
        &producer,
        &"127.0.0.1:0".parse().unwrap(),
        ReceiverOptions::default(),
    )
    .unwrap();
    let addr = receiver.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let opts = SenderOptions {
            window: 64,
            max_bytes: 1 << 30,
            ..SenderOptions::default()
        };
        let mut s = Sender::connect(&addr, opts).unwrap();
        let meta = TensorMeta::new(DType::U8, &[size]).unwrap();
        for i in 0..count {
            s.send(&format!("t{i}"), &meta, |_| {}).unwrap();
        }
        s.finish().unwrap();
    });
    let drain = std::thread::spawn(move || {
        let mut seen = 0;
        while seen < count {
            let avail = consumer.poll().unwrap();
            consumer.consume(avail);
            seen += avail;
            if avail == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let report = receiver.run().unwrap();
    sender.join().unwrap();
    drain.join().unwrap();
    println!(
        "BENCH-RESULT ingress/{size} bytes={} seconds={:.6} GBps={:.3}",
        report.bytes,
        report.elapsed.as_secs_f64(),
        report.bandwidth() / 1e9
    );
    report.elapsed
}

fn ingress(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingress_ucx");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_millis(500));
    for size in [64u64 << 10, 2 << 20, 64 << 20] {
        let count = (STREAM_BYTES / size).max(8);
        group.throughput(Throughput::Bytes(count * size));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_custom(|iters| (0..iters).map(|_| one_stream(size)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, ingress);
criterion_main!(benches);
