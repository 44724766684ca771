//! Segments across `fork`. The liveness locks are open-file-description
//! locks, which the kernel drops when the last reference to the description
//! goes, and a forked child holds references to its parent's: the
//! descriptor, and every shared mapping of the file. A child that lived on
//! would hold a killed parent's lock for it, and the peer would wait for a
//! death it never sees. So a handle belongs to the process that made it. A
//! `pthread_atfork` handler, in the child, maps private zero pages over
//! every registered segment's reservation (same addresses, no file) and
//! points its descriptor at a placeholder (`/dev/null`, else `/` opened
//! `O_PATH`; the number stays taken, the child's copy of the handle closes
//! it later), so the child holds no reference to the parent's files. The
//! child's copies of the handles are left with private zero pages and a
//! placeholder: whatever they do, dropping included, reaches nothing of
//! the parent's (a gone flag or a release lands in the child's own pages;
//! the name no longer leads to their file, so it is not removed; see
//! docs/design.md, "Liveness and cleanup").

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// What to take from a forked child, under a lock the fork itself takes
/// (`prepare`), so the child never sees the list half-changed.
struct Registry {
    locked: AtomicBool,
    segments: UnsafeCell<Vec<Registered>>,
}

/// A segment's descriptor and the address range its mappings lie in.
#[derive(Clone, Copy, Debug)]
struct Registered {
    fd: RawFd,
    base: usize,
    len: usize,
}

// SAFETY: `segments` is touched only while `locked` is held (see `with`, and the
// fork handlers, which hold it from `prepare` to `parent`/`child`).
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    segments: UnsafeCell::new(Vec::new()),
};

fn lock() {
    // Held only for a push, a removal or the child's loop: short. Yield
    // rather than spin: the holder may be waiting for this core.
    while REGISTRY
        .locked
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn unlock() {
    REGISTRY.locked.store(false, Ordering::Release);
}

fn with<T>(f: impl FnOnce(&mut Vec<Registered>) -> T) -> T {
    lock();
    // SAFETY: the lock is held (see `Registry`).
    let out = f(unsafe { &mut *REGISTRY.segments.get() });
    unlock();
    out
}

extern "C" fn prepare() {
    lock();
}

extern "C" fn parent() {
    unlock();
}

/// Runs in the child right after `fork`, before `fork` returns there: only
/// async-signal-safe calls (`mmap`, `open`, `dup3`, `close`, an atomic), no
/// allocation. The lock is held since `prepare`.
extern "C" fn child() {
    // SAFETY: the lock is held since `prepare` (see `Registry`).
    let segments = unsafe { &*REGISTRY.segments.get() };
    for s in segments {
        // SAFETY: `base..base + len` is a registered segment's own
        // reservation (unregistered before it is unmapped), so only that
        // segment's mappings are replaced, in this child alone. Zero pages
        // (no reservation of swap: a payload may be 2 TiB of address
        // space) keep a stray read by the child's copy harmless; if even
        // that is refused, an inaccessible range drops the file as well.
        unsafe {
            let fixed = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
            let at = s.base as *mut libc::c_void;
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            if libc::mmap(at, s.len, rw, fixed | libc::MAP_FIXED, -1, 0) == libc::MAP_FAILED {
                libc::mmap(at, s.len, libc::PROT_NONE, fixed | libc::MAP_FIXED, -1, 0);
            }
        }
    }
    // SAFETY: plain calls on C strings that live for the calls.
    let placeholder = unsafe {
        match libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) {
            -1 => libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC),
            fd => fd,
        }
    };
    if placeholder >= 0 {
        for fd in segments.iter().map(|s| s.fd) {
            // SAFETY: `fd` is open (registered until its owner drops it,
            // which unregisters it before closing) and differs from the
            // fresh `placeholder`; dup3 closes the old description's
            // reference atomically and keeps the number.
            unsafe { libc::dup3(placeholder, fd, libc::O_CLOEXEC) };
        }
        // SAFETY: our own descriptor, opened above.
        unsafe { libc::close(placeholder) };
    }
    unlock();
}

/// A segment descriptor, with the range its mappings lie in, that a forked
/// child does not keep: its locks stay the process's that opened it.
#[derive(Debug)]
pub(crate) struct ForkFd {
    fd: OwnedFd,
}

impl ForkFd {
    /// `fd` is the descriptor whose open file description holds the
    /// segment's lock; every mapping of the segment (of any descriptor of
    /// its file) lies in `base .. base + len`, which stays reserved until
    /// [`forget_mapping`](Self::forget_mapping).
    pub(crate) fn new(fd: OwnedFd, base: *mut u8, len: usize) -> ForkFd {
        static HANDLERS: Once = Once::new();
        HANDLERS.call_once(|| {
            // SAFETY: registers three `extern "C"` functions that live for
            // the program; a failure (ENOMEM) leaves forks as before.
            unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
        with(|segments| {
            segments.push(Registered {
                fd: fd.as_raw_fd(),
                base: base as usize,
                len,
            })
        });
        ForkFd { fd }
    }

    /// Unregisters: to be called before the range is unmapped (a fork
    /// after that must not map over what reuses the addresses). Idempotent.
    pub(crate) fn forget_mapping(&self) {
        let raw = self.fd.as_raw_fd();
        with(|segments| {
            if let Some(i) = segments.iter().position(|s| s.fd == raw) {
                segments.swap_remove(i);
            }
        });
    }
}

impl Deref for ForkFd {
    type Target = OwnedFd;

    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl Drop for ForkFd {
    fn drop(&mut self) {
        // Before the close (when `fd` drops after this): a fork in between
        // must not replace the file that reuses the number.
        self.forget_mapping();
    }
}
