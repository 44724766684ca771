//! What every bench family shares: spawning and reaping the peer process
//! (this binary again, in a role), stream configurations, shared mappings
//! of /dev/shm files, page-aligned buffers and a spin-then-yield wait.

use shmstream::{Consumer, DType, SetupError, StreamConfig, StreamId, TensorMeta};
use std::env;
use std::hint::spin_loop;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

pub(crate) const ROLE: &str = "SHMSTREAM_BENCH_ROLE";
pub(crate) const ARG: &str = "SHMSTREAM_BENCH_ARG";
/// The sequence number that tells an echoing child to stop.
pub(crate) const STOP: u64 = u64::MAX;
/// Blocking calls give up after this (a stuck bench fails instead of hanging).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

/// Segment-name prefix of this run: segments of a crashed run are told
/// apart by the pid, and the end of `main` removes any left behind.
pub(crate) fn prefix_of(pid: u32) -> String {
    format!("bench-{pid}-")
}

pub(crate) fn config(prefix: &str, edge: &str, capacity: u64, item_bytes: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: "bench".into(),
        edge_name: String::from(edge),
        from_partition: "peer".into(),
    })
    .with_prefix(prefix)
    .with_capacity(capacity)
    .with_item_bytes(item_bytes)
    .with_timeout(Some(TIMEOUT))
}

/// Opens the consumer of `cfg`, waiting for the other process to create it.
pub(crate) fn open_consumer(cfg: &StreamConfig) -> Consumer {
    let start = Instant::now();
    loop {
        match Consumer::open(cfg) {
            Ok(c) => return c,
            Err(SetupError::NotFound { .. } | SetupError::NotInitialized { .. })
                if start.elapsed() < TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("open {cfg:?}: {e}"),
        }
    }
}

pub(crate) fn spawn(role: &str, arg: &str) -> Child {
    Command::new(env::current_exe().expect("current_exe"))
        .env(ROLE, role)
        .env(ARG, arg)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the peer process")
}

pub(crate) fn reap(mut child: Child) {
    let status = child.wait().expect("wait for the peer process");
    assert!(status.success(), "peer process failed: {status}");
}

pub(crate) fn first_word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("at least 8 bytes"))
}

/// Reads every byte (a wrapping sum of the words; vectorised).
pub(crate) fn touch(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()))
    })
}

/// `size` bytes of a pattern at a page-aligned address. Page alignment of
/// sources and destinations keeps every copy away from the slow case of
/// `rep movsb` on AMD Zen: a destination a few bytes past the source modulo
/// 4096 (16 bytes, as two consecutive `Vec`s get) made a 64 KiB copy 14x
/// slower on the machine these benches were written on.
pub(crate) struct Aligned {
    buf: Vec<u8>,
    start: usize,
    pub(crate) size: usize,
}

impl Aligned {
    pub(crate) fn new(size: usize) -> Self {
        let mut buf = vec![0u8; size + 4096];
        let start = buf.as_ptr().align_offset(4096);
        for (i, b) in buf[start..start + size].iter_mut().enumerate() {
            *b = i as u8;
        }
        Aligned { buf, start, size }
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.size]
    }
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.size]
    }
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC is the
    // same clock in every process of the host.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) fn u64_meta(bytes: usize) -> TensorMeta {
    TensorMeta::new(DType::U64, &[bytes as u64 / 8]).expect("meta")
}

pub(crate) fn socket_path(tag: &str) -> String {
    format!("/tmp/bench-{}-{tag}.sock", std::process::id())
}

/// Listens at a fresh path, spawns the child with it, accepts the child.
pub(crate) fn socket_peer(tag: &str, role: &str, extra: &str) -> (UnixStream, Child) {
    let path = socket_path(tag);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let child = spawn(role, &format!("{path},{extra}"));
    let (stream, _) = listener.accept().expect("accept");
    let _ = std::fs::remove_file(&path);
    (stream, child)
}

pub(crate) fn connect(path: &str) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(_) if start.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("connect {path}: {e}"),
        }
    }
}

/// Maps `len` bytes of a file of /dev/shm (created, or opened) shared and
/// writable, for as long as the process lives.
pub(crate) fn map_shared(path: &str, len: usize, create: bool) -> *mut u8 {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .expect("open the shared file");
    file.set_len(len as u64).expect("size the shared file");
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of the whole file; never unmapped (it
    // lives as long as the process, which is what lets callers hand out
    // 'static references into it).
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap {path}");
    base.cast()
}

/// Maps a 4096-byte file of /dev/shm; returns atomics at byte offsets 0,
/// 64, 128 and 192 (each on its own cache line).
pub(crate) fn map_words(path: &str, create: bool) -> [&'static AtomicU64; 4] {
    let base = map_shared(path, 4096, create);
    // SAFETY: the offsets are 8-aligned and inside the mapping, which is
    // never unmapped; the bytes are only ever accessed as atomics.
    [0, 64, 128, 192].map(|offset| unsafe { AtomicU64::from_ptr(base.add(offset).cast()) })
}

/// Spins (with a yield every 64 looks) until `ready`.
pub(crate) fn spin_until(mut ready: impl FnMut() -> bool) {
    let mut looks = 0u32;
    while !ready() {
        looks += 1;
        if looks % 64 == 0 {
            std::thread::yield_now();
        } else {
            spin_loop();
        }
    }
}
