//! `latency_64B/*`: one-way latency of a 64-byte message, both sides
//! spinning, as half the round trip of a ping-pong with an echoing child.

use crate::common::{
    config, connect, first_word, map_words, open_consumer, prefix_of, reap, socket_peer, spawn,
    u64_meta, STOP,
};
use criterion::{BenchmarkId, Criterion};
use shmstream::{Consumer, Producer, StreamConfig, TensorMeta};
use std::hint::spin_loop;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A 64-byte ping-pong between this process and an echoing child.
pub(crate) trait RoundTrip: Sized {
    fn start() -> Self;
    /// Sends 64 bytes carrying `seq` and waits (spinning) for their echo.
    fn round_trip(&mut self, seq: u64);
    fn stop(self);
}

/// The bench body: half a round trip is the one-way latency.
pub(crate) fn latency<P: RoundTrip>(c: &mut Criterion, name: &str) {
    let mut peer = P::start();
    let mut seq = 0u64;
    let mut group = c.benchmark_group("latency_64B");
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                seq += 1;
                peer.round_trip(seq);
            }
            start.elapsed() / 2
        })
    });
    group.finish();
    peer.stop();
}

/// The floor: two atomics, each on its own pair of cache lines, in a
/// shared mapping.
pub(crate) struct Floor {
    ping: &'static AtomicU64,
    pong: &'static AtomicU64,
    child: Child,
}

/// Maps a 4096-byte file of /dev/shm; returns the atomics at byte offsets
/// 0 and 128 (the latency floor's ping and pong).
pub(crate) fn map_floor(path: &str, create: bool) -> (&'static AtomicU64, &'static AtomicU64) {
    let words = map_words(path, create);
    (words[0], words[2])
}

impl RoundTrip for Floor {
    fn start() -> Self {
        let path = format!("/dev/shm/{}floor", prefix_of(std::process::id()));
        let (ping, pong) = map_floor(&path, true);
        let child = spawn("floor", &path);
        while pong.load(Ordering::Acquire) != STOP - 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::remove_file(&path).expect("remove the floor file");
        Floor { ping, pong, child }
    }
    fn round_trip(&mut self, seq: u64) {
        self.ping.store(seq, Ordering::Release);
        while self.pong.load(Ordering::Acquire) != seq {
            spin_loop();
        }
    }
    fn stop(self) {
        self.ping.store(STOP, Ordering::Release);
        reap(self.child);
    }
}

pub(crate) fn child_floor(path: &str) {
    let (ping, pong) = map_floor(path, false);
    pong.store(STOP - 1, Ordering::Release);
    let mut last = 0;
    loop {
        let v = ping.load(Ordering::Acquire);
        if v == last {
            spin_loop();
            continue;
        }
        if v == STOP {
            return;
        }
        pong.store(v, Ordering::Release);
        last = v;
    }
}

/// A Unix domain socket, blocking reads and writes of 64 bytes.
pub(crate) struct Socket {
    stream: UnixStream,
    child: Child,
}

impl RoundTrip for Socket {
    fn start() -> Self {
        let (stream, child) = socket_peer("latency", "socket-echo", "");
        Socket { stream, child }
    }
    fn round_trip(&mut self, seq: u64) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        self.stream.write_all(&msg).expect("write");
        self.stream.read_exact(&mut msg).expect("read");
        debug_assert_eq!(first_word(&msg), seq);
    }
    fn stop(mut self) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&STOP.to_le_bytes());
        self.stream.write_all(&msg).expect("write");
        reap(self.child);
    }
}

pub(crate) fn child_socket_echo(arg: &str) {
    let path = arg.split(',').next().unwrap();
    let mut stream = connect(path);
    let mut msg = [0u8; 64];
    loop {
        stream.read_exact(&mut msg).expect("read");
        if first_word(&msg) == STOP {
            return;
        }
        stream.write_all(&msg).expect("write");
    }
}

/// shmstream both ways: a 64-byte U64 tensor, consumers spinning on `poll`.
pub(crate) struct Shm {
    ping: Producer,
    pong: Consumer,
    meta: TensorMeta,
    child: Child,
}

pub(crate) fn shm_configs(prefix: &str) -> (StreamConfig, StreamConfig) {
    (
        config(prefix, "ping", 64, 64),
        config(prefix, "pong", 64, 64),
    )
}

/// Spins until `consumer` has an item.
pub(crate) fn spin_until_available(consumer: &mut Consumer) {
    while consumer.poll().expect("poll") == 0 {
        spin_loop();
    }
}

impl RoundTrip for Shm {
    fn start() -> Self {
        let prefix = prefix_of(std::process::id());
        let (ping_cfg, pong_cfg) = shm_configs(&prefix);
        let ping = Producer::create(&ping_cfg).expect("create ping");
        let child = spawn("shm-echo", &prefix);
        let pong = open_consumer(&pong_cfg);
        Shm {
            ping,
            pong,
            meta: u64_meta(64),
            child,
        }
    }
    fn round_trip(&mut self, seq: u64) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        let slot = self.ping.register("x").expect("register");
        slot.write(self.meta, &msg).expect("write");
        spin_until_available(&mut self.pong);
        let echoed = first_word(self.pong.item(0).expect("available").bytes());
        debug_assert_eq!(echoed, seq);
        self.pong.consume(1);
    }
    fn stop(self) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&STOP.to_le_bytes());
        let slot = self.ping.register("x").expect("register");
        slot.write(self.meta, &msg).expect("write");
        self.ping.signal_done();
        reap(self.child);
    }
}

pub(crate) fn child_shm_echo(prefix: &str) {
    let (ping_cfg, pong_cfg) = shm_configs(prefix);
    let pong = Producer::create(&pong_cfg).expect("create pong");
    let mut ping = open_consumer(&ping_cfg);
    let meta = u64_meta(64);
    loop {
        spin_until_available(&mut ping);
        let bytes = ping.item(0).expect("available").bytes();
        if first_word(bytes) == STOP {
            return;
        }
        let slot = pong.register("x").expect("register");
        slot.write(meta, bytes).expect("write");
        ping.consume(1);
    }
}
