//! Bench 1 of issue 6: ring throughput between a producer thread and a
//! consumer thread, for 8-byte and 56-byte records, shmstream (register +
//! write + commit, poll + read in place + consume) against rtrb and
//! crossbeam's `ArrayQueue` moving records of the same size.
//!
//! The body ([`transfer`]) is written once and instantiated for each peer
//! through the [`Spsc`] trait. Every queue holds 1024 records; when it is
//! full or empty, each side spins 64 times, then yields ([`Backoff`]; for
//! shmstream's producer, `register` does the same and then sleeps on its
//! futex). One criterion iteration moves [`BATCH`] records.
//!
//! Batch mode (issue 14), `*_batch64`: the producer hands over
//! [`CHUNK`] records at a time (shmstream: one `put_many` of 64
//! `BatchItem`s, one fence; rtrb: `write_chunk_uninit` +
//! `fill_from_iter`, whose consumer reads with `read_chunk`). The consumer
//! of every peer takes whatever is there at each look, as in single mode.
//!
//! `shmstream_batching` (issue 24): single mode with the producer's
//! adaptive batching on (`set_batching(Some(64))`): the same one-by-one
//! `register` + `write`, staged into runs the consumer takes when it looks.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmstream::{
    in_process, BatchItem, Consumer, DType, Producer, StreamConfig, StreamId, TensorMeta,
};
use std::hint::spin_loop;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Records in each queue.
const CAPACITY: usize = 1024;
/// Records per criterion iteration: thread start and scheduling delays
/// (large on a loaded 2-core machine) are spread over this many. Criterion
/// reports the time of a batch; its throughput line is per record.
const BATCH: u64 = 1 << 16;
/// Records per hand-over in batch mode.
const CHUNK: usize = 64;

/// A single-producer single-consumer queue of `N`-byte records.
trait Spsc<const N: usize> {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn pair() -> (Self::Tx, Self::Rx);
    /// Sends one record, spinning while the queue is full.
    fn send(tx: &mut Self::Tx, record: &[u8; N]);
    /// Sends several records at once (batch mode), waiting while the queue
    /// has no room for them; by default one `send` each.
    fn send_many(tx: &mut Self::Tx, records: &[[u8; N]]) {
        for record in records {
            Self::send(tx, record);
        }
    }
    /// Receives what is there (folding each record's first word into
    /// `sink`), returns how many records it took; 0 when empty.
    fn recv(rx: &mut Self::Rx, sink: &mut u64) -> u64;
}

/// How every peer waits for room or for data: spin 64 times, then yield
/// the core on each further try (what shmstream's own waits do before they
/// sleep). Pure spinning collapses on a 2-core machine with any other load:
/// a spinner that shares a core with its peer burns its whole time slice.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn wait(&mut self) {
        if self.0 < 64 {
            self.0 += 1;
            spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

fn first_word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("records are at least 8 bytes"))
}

struct Shmstream;

/// shmstream's producer with the metadata of an `N`-byte U64 tensor.
struct ShmTx<const N: usize> {
    producer: Producer,
    meta: TensorMeta,
}

impl<const N: usize> Spsc<N> for Shmstream {
    type Tx = ShmTx<N>;
    type Rx = Consumer;
    fn pair() -> (ShmTx<N>, Consumer) {
        let cfg = StreamConfig::new(StreamId {
            request_id: "bench".into(),
            edge_name: "ring".into(),
            from_partition: "throughput".into(),
        })
        .with_capacity(CAPACITY as u64)
        .with_item_bytes(64);
        let (producer, consumer) = in_process(&cfg).expect("in-process stream");
        let meta = TensorMeta::new(DType::U64, &[N as u64 / 8]).expect("meta");
        (ShmTx { producer, meta }, consumer)
    }
    fn send(tx: &mut ShmTx<N>, record: &[u8; N]) {
        // `register` tries first, then spins, yields and sleeps while full.
        let slot = tx.producer.register("x").expect("register");
        slot.write(tx.meta, record).expect("write");
    }
    fn send_many(tx: &mut ShmTx<N>, records: &[[u8; N]]) {
        // One `put_many`: the round that fits is reserved with one store of
        // `registered`, committed with a `seq` store each and one fence;
        // a full ring makes it wait (spin, yield, futex) as `register` does.
        let meta = tx.meta;
        let items: [BatchItem; CHUNK] =
            std::array::from_fn(|i| BatchItem::new("x", meta, &records[i.min(records.len() - 1)]));
        tx.producer
            .put_many(&items[..records.len()])
            .expect("put_many");
    }
    fn recv(rx: &mut Consumer, sink: &mut u64) -> u64 {
        let n = rx.poll().expect("poll");
        for i in 0..n {
            *sink ^= first_word(rx.item(i).expect("available").bytes());
        }
        rx.consume(n);
        n
    }
}

/// shmstream with adaptive batching (runs of at most [`CHUNK`]).
struct ShmstreamBatching;

impl<const N: usize> Spsc<N> for ShmstreamBatching {
    type Tx = ShmTx<N>;
    type Rx = Consumer;
    fn pair() -> (ShmTx<N>, Consumer) {
        let (tx, rx) = <Shmstream as Spsc<N>>::pair();
        tx.producer.set_batching(Some(CHUNK as u64));
        (tx, rx)
    }
    fn send(tx: &mut ShmTx<N>, record: &[u8; N]) {
        <Shmstream as Spsc<N>>::send(tx, record);
    }
    fn recv(rx: &mut Consumer, sink: &mut u64) -> u64 {
        <Shmstream as Spsc<N>>::recv(rx, sink)
    }
}

struct Rtrb;

impl<const N: usize> Spsc<N> for Rtrb {
    type Tx = rtrb::Producer<[u8; N]>;
    type Rx = rtrb::Consumer<[u8; N]>;
    fn pair() -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(CAPACITY)
    }
    fn send(tx: &mut Self::Tx, record: &[u8; N]) {
        let mut backoff = Backoff::default();
        while tx.push(*record).is_err() {
            backoff.wait();
        }
    }
    fn recv(rx: &mut Self::Rx, sink: &mut u64) -> u64 {
        let mut n = 0;
        while let Ok(record) = rx.pop() {
            *sink ^= first_word(&record);
            n += 1;
        }
        n
    }
}

/// rtrb through its chunked API: `write_chunk_uninit` + `fill_from_iter`
/// (one index store per chunk), `read_chunk` of everything there.
struct RtrbChunks;

impl<const N: usize> Spsc<N> for RtrbChunks {
    type Tx = rtrb::Producer<[u8; N]>;
    type Rx = rtrb::Consumer<[u8; N]>;
    fn pair() -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(CAPACITY)
    }
    fn send(tx: &mut Self::Tx, record: &[u8; N]) {
        Self::send_many(tx, std::slice::from_ref(record));
    }
    fn send_many(tx: &mut Self::Tx, records: &[[u8; N]]) {
        let mut backoff = Backoff::default();
        loop {
            match tx.write_chunk_uninit(records.len()) {
                Ok(chunk) => {
                    chunk.fill_from_iter(records.iter().copied());
                    return;
                }
                Err(_) => backoff.wait(),
            }
        }
    }
    fn recv(rx: &mut Self::Rx, sink: &mut u64) -> u64 {
        let n = rx.slots();
        if n == 0 {
            return 0;
        }
        let chunk = rx.read_chunk(n).expect("n slots are there");
        let (a, b) = chunk.as_slices();
        for record in a.iter().chain(b) {
            *sink ^= first_word(record);
        }
        chunk.commit_all();
        n as u64
    }
}

struct ArrayQueue;

impl<const N: usize> Spsc<N> for ArrayQueue {
    type Tx = Arc<crossbeam_queue::ArrayQueue<[u8; N]>>;
    type Rx = Arc<crossbeam_queue::ArrayQueue<[u8; N]>>;
    fn pair() -> (Self::Tx, Self::Rx) {
        let q = Arc::new(crossbeam_queue::ArrayQueue::new(CAPACITY));
        (q.clone(), q)
    }
    fn send(tx: &mut Self::Tx, record: &[u8; N]) {
        let mut record = *record;
        let mut backoff = Backoff::default();
        while let Err(back) = tx.push(record) {
            record = back;
            backoff.wait();
        }
    }
    fn recv(rx: &mut Self::Rx, sink: &mut u64) -> u64 {
        let mut n = 0;
        while let Some(record) = rx.pop() {
            *sink ^= first_word(&record);
            n += 1;
        }
        n
    }
}

/// The bench body: moves `items` records from this thread to a consumer
/// thread and returns the time until the consumer has taken the last one.
fn transfer<Q: Spsc<N>, const N: usize>(items: u64) -> Duration {
    let (mut tx, mut rx) = Q::pair();
    let consumer = thread::spawn(move || {
        let (mut got, mut sink) = (0, 0);
        let mut backoff = Backoff::default();
        while got < items {
            match Q::recv(&mut rx, &mut sink) {
                0 => backoff.wait(),
                n => {
                    got += n;
                    backoff = Backoff::default();
                }
            }
        }
        black_box(sink);
    });
    let mut record = [7u8; N];
    let start = Instant::now();
    for i in 0..items {
        record[..8].copy_from_slice(&i.to_le_bytes());
        Q::send(&mut tx, &record);
    }
    consumer.join().expect("consumer thread");
    start.elapsed()
}

/// The bench body in batch mode: as [`transfer`], the producer handing
/// over [`CHUNK`] records at a time.
fn transfer_batched<Q: Spsc<N>, const N: usize>(items: u64) -> Duration {
    let (mut tx, mut rx) = Q::pair();
    let consumer = thread::spawn(move || {
        let (mut got, mut sink) = (0, 0);
        let mut backoff = Backoff::default();
        while got < items {
            match Q::recv(&mut rx, &mut sink) {
                0 => backoff.wait(),
                n => {
                    got += n;
                    backoff = Backoff::default();
                }
            }
        }
        black_box(sink);
    });
    let mut records = [[7u8; N]; CHUNK];
    let start = Instant::now();
    let mut i = 0;
    while i < items {
        let k = (items - i).min(CHUNK as u64) as usize;
        for (j, record) in records[..k].iter_mut().enumerate() {
            record[..8].copy_from_slice(&(i + j as u64).to_le_bytes());
        }
        Q::send_many(&mut tx, &records[..k]);
        i += k as u64;
    }
    consumer.join().expect("consumer thread");
    start.elapsed()
}

fn size<const N: usize>(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("ring_throughput/{N}B"));
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.bench_function(BenchmarkId::from_parameter("shmstream"), |b| {
        b.iter_custom(|iters| transfer::<Shmstream, N>(iters * BATCH))
    });
    group.bench_function(BenchmarkId::from_parameter("shmstream_batching"), |b| {
        b.iter_custom(|iters| transfer::<ShmstreamBatching, N>(iters * BATCH))
    });
    group.bench_function(BenchmarkId::from_parameter("rtrb"), |b| {
        b.iter_custom(|iters| transfer::<Rtrb, N>(iters * BATCH))
    });
    group.bench_function(BenchmarkId::from_parameter("crossbeam_arrayqueue"), |b| {
        b.iter_custom(|iters| transfer::<ArrayQueue, N>(iters * BATCH))
    });
    group.bench_function(BenchmarkId::from_parameter("shmstream_batch64"), |b| {
        b.iter_custom(|iters| transfer_batched::<Shmstream, N>(iters * BATCH))
    });
    group.bench_function(BenchmarkId::from_parameter("rtrb_chunk64"), |b| {
        b.iter_custom(|iters| transfer_batched::<RtrbChunks, N>(iters * BATCH))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    size::<8>(c);
    size::<56>(c);
}

criterion_group!(ring, benches);
criterion_main!(ring);
