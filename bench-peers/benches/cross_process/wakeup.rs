//! `wakeup_64B/*`: the latency of waking a consumer asleep in another
//! process, against a bare shared futex.

use crate::common::{
    config, first_word, map_words, monotonic_ns, open_consumer, prefix_of, reap, spawn, u64_meta,
    STOP,
};
use criterion::{BenchmarkId, Criterion, SamplingMode};
use shmstream::{Consumer, Producer, StreamConfig, TensorMeta};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One sender, one receiver asleep in another process.
pub(crate) trait WakeUp: Sized {
    fn start() -> Self;
    /// One wake-up after `idle`; its latency in nanoseconds.
    fn once(&mut self, idle: Duration) -> u64;
    fn stop(self);
}

/// shmstream with the consumer asleep: the child waits with `wait_for`,
/// answers with the latency it saw on a second stream.
pub(crate) struct Wakeup {
    wake: Producer,
    reply: Consumer,
    meta: TensorMeta,
    child: Child,
}

pub(crate) fn wakeup_configs(prefix: &str) -> (StreamConfig, StreamConfig) {
    (
        config(prefix, "wake", 64, 64),
        config(prefix, "reply", 64, 64),
    )
}

impl Wakeup {
    fn send(&self, word: u64) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&word.to_le_bytes());
        let slot = self.wake.register("x").expect("register");
        slot.write(self.meta, &msg).expect("write");
    }
}

impl WakeUp for Wakeup {
    fn start() -> Self {
        let prefix = prefix_of(std::process::id());
        let (wake_cfg, reply_cfg) = wakeup_configs(&prefix);
        let wake = Producer::create(&wake_cfg).expect("create");
        let child = spawn("shm-wakeup", &prefix);
        let reply = open_consumer(&reply_cfg);
        Wakeup {
            wake,
            reply,
            meta: u64_meta(64),
            child,
        }
    }
    fn once(&mut self, idle: Duration) -> u64 {
        std::thread::sleep(idle);
        self.send(monotonic_ns());
        self.reply.wait_for(1, None).expect("reply");
        let ns = first_word(self.reply.item(0).expect("available").bytes());
        self.reply.consume(1);
        ns
    }
    fn stop(self) {
        self.send(STOP);
        self.wake.signal_done();
        reap(self.child);
    }
}

pub(crate) fn child_shm_wakeup(prefix: &str) {
    let (wake_cfg, reply_cfg) = wakeup_configs(prefix);
    let reply = Producer::create(&reply_cfg).expect("create");
    let mut wake = open_consumer(&wake_cfg);
    let meta = u64_meta(64);
    loop {
        wake.wait_for(1, None).expect("wait");
        let now = monotonic_ns();
        let sent = first_word(wake.item(0).expect("available").bytes());
        if sent == STOP {
            return;
        }
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&now.saturating_sub(sent).to_le_bytes());
        wake.consume(1);
        let slot = reply.register("x").expect("register");
        slot.write(meta, &msg).expect("write");
    }
}

/// The floor of a wake-up: a bare shared futex. Words: 0 the futex (a
/// sequence number), 1 the send time, 2 the latency seen, 3 the stop flag.
pub(crate) struct FutexFloor {
    words: [&'static AtomicU64; 4],
    seq: u64,
    child: Child,
}

/// A FUTEX_WAIT or FUTEX_WAKE on the low half of `word` (little-endian).
pub(crate) fn futex(word: &AtomicU64, op: libc::c_int, val: u32) {
    // SAFETY: the word is a live, aligned atomic of a shared mapping; the
    // futex reads its low 32 bits (a shared futex: no PRIVATE flag).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr().cast::<u32>(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

impl WakeUp for FutexFloor {
    fn start() -> Self {
        let path = format!("/dev/shm/{}futex", prefix_of(std::process::id()));
        let words = map_words(&path, true);
        let child = spawn("futex-floor", &path);
        while words[2].load(Ordering::Acquire) != STOP - 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::remove_file(&path).expect("remove the futex file");
        FutexFloor {
            words,
            seq: 0,
            child,
        }
    }
    fn once(&mut self, idle: Duration) -> u64 {
        std::thread::sleep(idle);
        self.seq += 1;
        self.words[2].store(0, Ordering::Relaxed);
        self.words[1].store(monotonic_ns(), Ordering::Relaxed);
        self.words[0].store(self.seq, Ordering::Release);
        futex(self.words[0], libc::FUTEX_WAKE, 1);
        loop {
            let ns = self.words[2].load(Ordering::Acquire);
            if ns != 0 {
                return ns;
            }
            std::thread::yield_now();
        }
    }
    fn stop(self) {
        self.words[3].store(1, Ordering::Release);
        self.words[0].store(self.seq + 1, Ordering::Release);
        futex(self.words[0], libc::FUTEX_WAKE, 1);
        reap(self.child);
    }
}

pub(crate) fn child_futex_floor(path: &str) {
    let words = map_words(path, false);
    words[2].store(STOP - 1, Ordering::Release);
    let mut last = 0;
    loop {
        let seq = words[0].load(Ordering::Acquire);
        if seq == last {
            futex(words[0], libc::FUTEX_WAIT, seq as u32);
            continue;
        }
        let now = monotonic_ns();
        if words[3].load(Ordering::Acquire) != 0 {
            return;
        }
        let sent = words[1].load(Ordering::Relaxed);
        words[2].store(now.saturating_sub(sent).max(1), Ordering::Release);
        last = seq;
    }
}

/// The bench body of the wake-ups.
pub(crate) fn wakeup<W: WakeUp>(c: &mut Criterion, name: &str) {
    let mut peer = W::start();
    let mut group = c.benchmark_group("wakeup_64B");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let ns: u64 = (0..iters)
                .map(|_| peer.once(Duration::from_millis(2)))
                .sum();
            Duration::from_nanos(ns)
        })
    });
    group.finish();
    peer.stop();
}
