//! The bare handoff (issue 14): the floor of a cross-process transfer.

use super::{stream_config, Stream};
use crate::common::{map_shared, prefix_of, reap, spawn, spin_until, touch, Aligned};
use criterion::black_box;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};

/// The floor of a cross-process transfer (issue 14): a bare handoff with
/// no descriptor, no id, no checks and no sleeping. The producer copies a
/// record into the next of `k` buffers of a shared mapping and publishes a
/// counter; the consumer reads the record's bytes and publishes its own
/// counter; both spin with yields. `k` buffers of the record's size are as
/// much memory as shmstream's payload for that size (`stream_config`).
/// Each side caches the other's counter and reloads it only when the ring
/// looks full or empty, and the consumer publishes its counter once per
/// batch it found (as rtrb does): the least a correct ring can do.
pub(crate) struct HandoffStream {
    words: Handoff,
    source: Aligned,
    sent: u64,
    /// The consumer's counter as last loaded.
    cached_tail: u64,
    child: Child,
}

/// The shared mapping of a handoff: counters on their own lines, then the
/// buffers.
pub(crate) struct Handoff {
    head: &'static AtomicU64,
    tail: &'static AtomicU64,
    done: &'static AtomicU64,
    data: *mut u8,
    k: u64,
    size: usize,
}

pub(crate) fn handoff_buffers(size: usize) -> u64 {
    let cfg = stream_config("x", size);
    cfg.payload_bytes() / size as u64
}

pub(crate) fn map_handoff(path: &str, size: usize, create: bool) -> Handoff {
    let k = handoff_buffers(size);
    let base = map_shared(path, 4096 + k as usize * size, create);
    // SAFETY: 8-aligned offsets inside the header page of a mapping that is
    // never unmapped, only ever accessed as atomics; the data starts after
    // that page.
    unsafe {
        Handoff {
            head: AtomicU64::from_ptr(base.cast()),
            tail: AtomicU64::from_ptr(base.add(128).cast()),
            done: AtomicU64::from_ptr(base.add(256).cast()),
            data: base.add(4096),
            k,
            size,
        }
    }
}

impl Handoff {
    fn buffer(&self, n: u64) -> *mut u8 {
        // SAFETY: `n % k < k` buffers of `size` bytes follow the header.
        unsafe { self.data.add((n % self.k) as usize * self.size) }
    }
}

impl Stream for HandoffStream {
    fn start(size: usize) -> Self {
        let path = format!("/dev/shm/{}handoff", prefix_of(std::process::id()));
        let words = map_handoff(&path, size, true);
        let child = spawn("handoff-read", &format!("{path},{size}"));
        // The child marks `done` with 1 once it has mapped the file.
        spin_until(|| words.done.load(Ordering::Acquire) == 1);
        std::fs::remove_file(&path).expect("remove the handoff file");
        HandoffStream {
            words,
            source: Aligned::new(size),
            sent: 0,
            cached_tail: 0,
            child,
        }
    }
    fn send_batch(&mut self, items: u64) {
        let w = &self.words;
        for _ in 0..items {
            let n = self.sent;
            if n - self.cached_tail >= w.k {
                // Pairs with the consumer's Release store of `tail`.
                let cached = &mut self.cached_tail;
                spin_until(|| {
                    *cached = w.tail.load(Ordering::Acquire);
                    n - *cached < w.k
                });
            }
            // SAFETY: buffer `n % k` is free (the consumer is past `n - k`)
            // and `size` bytes long; the source is `size` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(self.source.bytes().as_ptr(), w.buffer(n), w.size)
            };
            self.sent = n + 1;
            // Release: the bytes before the count.
            w.head.store(self.sent, Ordering::Release);
        }
        let sent = self.sent;
        spin_until(|| w.tail.load(Ordering::Acquire) == sent);
    }
    fn stop(self) {
        self.words.done.store(2, Ordering::Release);
        reap(self.child);
    }
}

pub(crate) fn child_handoff_read(arg: &str) {
    let (path, size) = arg.split_once(',').unwrap();
    let size: usize = size.parse().unwrap();
    let w = map_handoff(path, size, false);
    w.done.store(1, Ordering::Release);
    let mut sink = 0u64;
    let mut read = 0u64;
    loop {
        let head = w.head.load(Ordering::Acquire);
        if head == read {
            if w.done.load(Ordering::Acquire) == 2 {
                break;
            }
            spin_until(|| {
                w.head.load(Ordering::Acquire) != read || w.done.load(Ordering::Acquire) == 2
            });
            continue;
        }
        while read < head {
            // SAFETY: buffer `read % k` was published by the Acquire load of
            // `head` and is not reused before our Release of `tail`.
            let bytes = unsafe { std::slice::from_raw_parts(w.buffer(read), size) };
            sink = sink.wrapping_add(touch(bytes));
            read += 1;
        }
        // Once per batch found.
        w.tail.store(read, Ordering::Release);
    }
    black_box(sink);
}
