//! Issue 12: the wake-up latency of `StreamSet::wait_any` with 1, 64 and
//! 1024 open streams when one of them gets an item, against the floor of a
//! single stream's own futex (`StreamBuffer::next_chunk_timeout`).
//!
//! A producer thread owns every stream (shared segments, a shared hub, one
//! process); it waits until the worker has popped the previous item and
//! has had 100 us to fall asleep, stamps the time into the item, and
//! commits it into one stream (a different one each time). The worker,
//! asleep in `wait_any`, wakes, pops the chunk and reads the stamp; the
//! measured time is stamp to pop. So each sample is one futex wake-up plus
//! the set's look for the ready stream.
//!
//! `stream_lifecycle`: the cost of one stream's whole life through a hub
//! (create + announce + open + drain + remove), per stream.
//!
//! `ready_k_of_n`: with N open streams of which k each hold one committed
//! item, the time for one `wait_any` to return the k ready streams and for
//! the worker to pop their chunks (k in 1, 16, 64; N in 64, 1024). The
//! commits are not timed. It should grow with k and stay flat in N.
//!
//! `idle_cpu`: the CPU time (getrusage) of a worker thread in `wait_any`
//! over 1000 open streams of which none gets an item, for
//! `SHMSTREAM_BENCH_IDLE_SECS` seconds (default 10, as the issue asks),
//! printed as `BENCH-RESULT idle_cpu STREAMS WALL_NS CPU_NS SLEEPS`
//! (SLEEPS: the thread's voluntary context switches over the wait, one per
//! blocking system call that blocked: 1 for a single futex sleep).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shmstream::policy::Policy;
use shmstream::{
    DType, Hub, Producer, StreamBuffer, StreamConfig, StreamId, StreamSet, TensorMeta,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAMS: [u64; 3] = [1, 64, 1024];
/// How long the producer lets the worker fall asleep before each item.
const NAP: Duration = Duration::from_micros(100);

fn prefix() -> String {
    format!("benchw-{}-", std::process::id())
}

fn config(prefix: &str, s: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: format!("r{s}"),
        edge_name: "wake".into(),
        from_partition: "bench".into(),
    })
    .with_prefix(prefix)
    .with_capacity(8)
    .with_item_bytes(64)
    .with_timeout(Some(Duration::from_secs(10)))
}

/// The producer side: commits stamped items on request, one stream after
/// the other, until told to stop.
struct Pacer {
    /// Items the worker has popped (the producer sends item `popped`).
    popped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pacer {
    fn start(producers: Vec<Producer>, base: Instant) -> Pacer {
        let popped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (popped.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let meta = TensorMeta::new(DType::U64, &[1]).unwrap();
            let mut sent = 0u64;
            while !s.load(Ordering::Acquire) {
                if p.load(Ordering::Acquire) < sent {
                    // Not a spin: on two cores it would take the worker's.
                    std::thread::sleep(Duration::from_micros(10));
                    continue;
                }
                std::thread::sleep(NAP);
                let producer = &producers[(sent % producers.len() as u64) as usize];
                let slot = producer.register("t").unwrap();
                let stamp = base.elapsed().as_nanos() as u64;
                slot.write(meta, &stamp.to_le_bytes()).unwrap();
                sent += 1;
            }
        });
        Pacer {
            popped,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.popped.store(u64::MAX, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stamp_of(buffer: &mut StreamBuffer) -> u64 {
    let chunk = buffer.pop_chunk().unwrap();
    u64::from_le_bytes(chunk.item(0).unwrap().bytes().try_into().unwrap())
}

fn wait_any_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("wait_any_wakeup");
    group.sample_size(20);
    for n in STREAMS {
        let prefix = prefix();
        let mut set: StreamSet = StreamSet::create_with_entries("bench", &prefix, 1024)
            .unwrap()
            .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
        let hub = Hub::attach("bench", &prefix).unwrap();
        let producers: Vec<Producer> = (0..n)
            .map(|s| hub.create_stream(&config(&prefix, s)).unwrap())
            .collect();
        // Adopt them all before the clock starts.
        while set.len() < n as usize {
            set.wait_any(Some(Duration::from_millis(1)));
        }
        let base = Instant::now();
        let pacer = Pacer::start(producers, base);
        let mut ready = Vec::new();
        group.bench_function(BenchmarkId::new("streams", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    loop {
                        set.wait_any_into(Some(Duration::from_secs(10)), &mut ready);
                        if let Some(&key) = ready.first() {
                            let stamp = stamp_of(set.get_mut(key).unwrap());
                            let now = base.elapsed().as_nanos() as u64;
                            total += Duration::from_nanos(now.saturating_sub(stamp));
                            pacer.popped.fetch_add(1, Ordering::AcqRel);
                            break;
                        }
                    }
                }
                total
            })
        });
        drop(pacer);
        drop(hub);
    }
    group.finish();
}

/// The floor: one stream, its consumer asleep on the stream's own futex.
fn single_stream_latency(c: &mut Criterion) {
    let prefix = prefix();
    let cfg = config(&prefix, 0);
    let producer = Producer::create(&cfg).unwrap();
    let mut buffer: StreamBuffer =
        StreamBuffer::open(&cfg, "fixed:size=1".parse::<Policy>().unwrap()).unwrap();
    let base = Instant::now();
    let pacer = Pacer::start(vec![producer], base);
    let mut group = c.benchmark_group("wait_any_wakeup");
    group.sample_size(20);
    group.bench_function("single_stream_next_chunk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let chunk = buffer
                    .next_chunk_timeout(Some(Duration::from_secs(10)))
                    .unwrap()
                    .unwrap();
                let stamp = u64::from_le_bytes(chunk.item(0).unwrap().bytes().try_into().unwrap());
                let now = base.elapsed().as_nanos() as u64;
                total += Duration::from_nanos(now.saturating_sub(stamp));
                drop(chunk);
                pacer.popped.fetch_add(1, Ordering::AcqRel);
            }
            total
        })
    });
    group.finish();
}

/// A stream's whole life through a hub, one after the other: create its
/// segment and announce it, commit one item and say done (producer); adopt
/// it (open the segment), pop its one final chunk, remove it (worker);
/// drop the producer (which removes the segment). Per stream.
fn stream_lifecycle(c: &mut Criterion) {
    let prefix = prefix();
    let mut set: StreamSet = StreamSet::create_with_entries("life", &prefix, 1024)
        .unwrap()
        .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
    let hub = Hub::attach("life", &prefix).unwrap();
    let meta = TensorMeta::new(DType::U64, &[1]).unwrap();
    let mut ready = Vec::new();
    let mut group = c.benchmark_group("stream_lifecycle");
    group.sample_size(20);
    group.bench_function("create_announce_open_drain_remove", |b| {
        b.iter(|| {
            let producer = hub.create_stream(&config(&prefix, 0)).unwrap();
            producer
                .register("t")
                .unwrap()
                .write(meta, &0u64.to_le_bytes())
                .unwrap();
            producer.signal_done();
            set.wait_any_into(Some(Duration::from_secs(10)), &mut ready);
            let key = ready[0];
            let buffer = set.get_mut(key).unwrap();
            assert!(buffer.pop_chunk().unwrap().is_final());
            drop(set.remove(key));
            drop(producer);
        })
    });
    group.finish();
}

/// k of N streams ready at once: one look, k pops.
fn ready_k_of_n(c: &mut Criterion) {
    let mut group = c.benchmark_group("ready_k_of_n");
    group.sample_size(20);
    for n in [64u64, 1024] {
        let prefix = prefix();
        let mut set: StreamSet = StreamSet::create_with_entries("kofn", &prefix, 1024)
            .unwrap()
            .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
        let hub = Hub::attach("kofn", &prefix).unwrap();
        let producers: Vec<Producer> = (0..n)
            .map(|s| hub.create_stream(&config(&prefix, s)).unwrap())
            .collect();
        while set.len() < n as usize {
            set.wait_any(Some(Duration::from_millis(1)));
        }
        let meta = TensorMeta::new(DType::U64, &[1]).unwrap();
        let mut ready = Vec::new();
        let mut round = 0u64;
        for k in [1u64, 16, 64] {
            group.bench_function(BenchmarkId::new(format!("k{k}"), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // k streams spread over the N, a different set each round.
                        round += 1;
                        for i in 0..k {
                            let s = (i * n / k + round) % n;
                            producers[s as usize]
                                .register("t")
                                .unwrap()
                                .write(meta, &s.to_le_bytes())
                                .unwrap();
                        }
                        let start = Instant::now();
                        let mut popped = 0;
                        while popped < k {
                            set.wait_any_into(Some(Duration::from_secs(10)), &mut ready);
                            for &key in &ready {
                                let buffer = set.get_mut(key).unwrap();
                                while let Ok(chunk) = buffer.pop_chunk() {
                                    criterion::black_box(chunk.item(0).unwrap().bytes()[0]);
                                    popped += 1;
                                }
                            }
                        }
                        total += start.elapsed();
                    }
                    total
                })
            });
        }
        drop(producers);
        drop(hub);
    }
    group.finish();
}

/// CPU time of this thread (user + system).
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes the `rusage` we pass, which outlives the call.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// This thread's voluntary context switches so far.
fn voluntary_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// An idle worker: 1000 open streams, no items, `wait_any` for 10 s.
fn idle_cpu(_: &mut Criterion) {
    const N: u64 = 1000;
    let secs: u64 = std::env::var("SHMSTREAM_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let prefix = prefix();
    let mut set: StreamSet = StreamSet::create_with_entries("idle", &prefix, 1024)
        .unwrap()
        .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
    let hub = Hub::attach("idle", &prefix).unwrap();
    let producers: Vec<Producer> = (0..N)
        .map(|s| hub.create_stream(&config(&prefix, s)).unwrap())
        .collect();
    while set.len() < N as usize {
        set.wait_any(Some(Duration::from_millis(1)));
    }
    let (cpu, sleeps, wall) = (thread_cpu(), voluntary_switches(), Instant::now());
    let woke = set.wait_any(Some(Duration::from_secs(secs)));
    let (cpu, sleeps, wall) = (
        thread_cpu() - cpu,
        voluntary_switches() - sleeps,
        wall.elapsed(),
    );
    assert!(woke.is_empty(), "an idle stream reported news");
    println!(
        "BENCH-RESULT idle_cpu {N} {} {} {sleeps}",
        wall.as_nanos(),
        cpu.as_nanos()
    );
    println!("idle wait_any over {N} streams: {cpu:?} of CPU, {sleeps} sleeps in {wall:?}");
    drop(producers);
}

criterion_group!(
    benches,
    single_stream_latency,
    wait_any_latency,
    ready_k_of_n,
    stream_lifecycle,
    idle_cpu
);
criterion_main!(benches);
