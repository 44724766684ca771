//! shmstream's streaming peers: one tensor per `register_sized` + commit
//! (with adaptive batching or without), or 64 per `put_many`; the child
//! reads in place after `wait_for`.

use super::{stream_config, Stream};
use crate::common::{open_consumer, prefix_of, reap, spawn, touch, u64_meta, Aligned, TIMEOUT};
use criterion::black_box;
use shmstream::{BatchItem, Producer, TensorMeta};
use std::hint::spin_loop;
use std::process::Child;
use std::time::{Duration, Instant};

pub(crate) struct ShmStream {
    producer: Producer,
    meta: TensorMeta,
    source: Aligned,
    child: Child,
}

impl ShmStream {
    /// Sends `items` records, one per `pace` when given, and waits until
    /// the child has read them all.
    pub(crate) fn send_paced(&mut self, items: u64, pace: Option<Duration>) {
        let size = self.source.size;
        let mut next = Instant::now();
        for _ in 0..items {
            if let Some(pace) = pace {
                next += pace;
                while Instant::now() < next {
                    spin_loop();
                }
            }
            let mut slot = self
                .producer
                .register_sized("x", size as u64)
                .expect("register");
            slot.payload_mut().copy_from_slice(self.source.bytes());
            slot.commit(self.meta).expect("commit");
        }
        self.producer
            .wait_drained(Some(TIMEOUT))
            .expect("wait drained");
    }
}

impl Stream for ShmStream {
    fn start(size: usize) -> Self {
        let prefix = prefix_of(std::process::id());
        let producer = Producer::create(&stream_config(&prefix, size)).expect("create");
        let child = spawn("shm-read", &format!("{prefix},{size}"));
        ShmStream {
            producer,
            meta: u64_meta(size),
            source: Aligned::new(size),
            child,
        }
    }
    fn send_batch(&mut self, items: u64) {
        self.send_paced(items, None);
    }
    fn stop(self) {
        self.producer.signal_done();
        reap(self.child);
    }
}

/// shmstream in batch mode (issue 14): 64 tensors per `put_many`, each
/// registered with its size, copied from the source and committed, with
/// one fence per batch; read by the same child as [`ShmStream`].
pub(crate) struct ShmBatchStream(ShmStream);

/// Tensors per `put_many` in batch mode.
pub(crate) const STREAM_CHUNK: usize = 64;

impl Stream for ShmBatchStream {
    fn start(size: usize) -> Self {
        ShmBatchStream(ShmStream::start(size))
    }
    fn send_batch(&mut self, items: u64) {
        let s = &self.0;
        let batch: [BatchItem; STREAM_CHUNK] =
            std::array::from_fn(|_| BatchItem::new("x", s.meta, s.source.bytes()));
        let mut sent = 0;
        while sent < items {
            let k = (items - sent).min(STREAM_CHUNK as u64) as usize;
            s.producer.put_many(&batch[..k]).expect("put_many");
            sent += k as u64;
        }
        s.producer
            .wait_drained(Some(TIMEOUT))
            .expect("wait drained");
    }
    fn stop(self) {
        self.0.stop();
    }
}

/// shmstream with adaptive batching (issue 24): the one-by-one path of
/// [`ShmStream`], its commits staged into runs of at most
/// [`STREAM_CHUNK`] that the child takes when it looks.
pub(crate) struct ShmBatchingStream(ShmStream);

impl Stream for ShmBatchingStream {
    fn start(size: usize) -> Self {
        let s = ShmStream::start(size);
        s.producer.set_batching(Some(STREAM_CHUNK as u64));
        ShmBatchingStream(s)
    }
    fn send_batch(&mut self, items: u64) {
        self.0.send_paced(items, None);
    }
    fn stop(self) {
        self.0.stop();
    }
}

pub(crate) fn child_shm_read(arg: &str) {
    let (prefix, size) = arg.split_once(',').unwrap();
    let size: usize = size.parse().unwrap();
    let mut consumer = open_consumer(&stream_config(prefix, size));
    let mut sink = 0u64;
    loop {
        let n = consumer.wait_for(1, None).expect("wait");
        if n == 0 && consumer.is_all_in() {
            break;
        }
        for i in 0..n {
            sink = sink.wrapping_add(touch(consumer.item(i).expect("available").bytes()));
        }
        consumer.consume(n);
    }
    black_box(sink);
}
