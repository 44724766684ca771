//! What the processes do on SIGINT, SIGTERM and SIGHUP.
//!
//! - The producer, the consumer and `replay` ([`exit_on_signal`]) say how
//!   far they got (`ipc-producer: interrupted by SIGTERM after N items;
//!   segment removed`), remove the segment they created if any
//!   ([`create_producer`]), and exit with 128 + the signal. The handler
//!   makes only async-signal-safe calls (`unlink`, `write`, `_exit`) on
//!   values prepared before: it does not unwind and allocates nothing.
//! - The launcher ([`record_signals`]) only notes the signal; its main
//!   loop (`launch`) forwards it to the children, waits for them and
//!   reports.
//!
//! A segment is registered for removal with the three signals blocked
//! from just before `Producer::create` to just after the registration,
//! and a handler running meanwhile on another thread (a many-streams
//! producer creates streams while others stream) waits for the
//! registration, so no signal can end the process between the two and
//! leave it behind.

use shmstream::{Producer, SetupError, StreamConfig};
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The signals every process of ours handles.
pub const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The program's name, for the handler's message.
static PROG: OnceLock<&'static str> = OnceLock::new();
/// Most segments one process registers for removal (a many-streams
/// producer creates one per stream).
pub const MAX_SEGMENTS: usize = 4096;
/// The files of the segments this process created (NUL-terminated
/// strings leaked for the process's life; the first `SEGMENTS` are set).
static PATHS: [AtomicPtr<libc::c_char>; MAX_SEGMENTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_SEGMENTS];
/// How many entries of `PATHS` are taken.
static SEGMENTS: AtomicUsize = AtomicUsize::new(0);
/// Items done so far (committed by the producer, delivered to the consumer).
static ITEMS: AtomicU64 = AtomicU64::new(0);
/// Segments being created and not yet registered (by any thread).
static CREATING: AtomicUsize = AtomicUsize::new(0);
/// The signal the launcher received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The usual name of a handled signal.
pub fn name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGKILL => "SIGKILL",
        _ => "a signal",
    }
}

/// A message built in a fixed buffer, for the handler (no allocation).
struct Message {
    buf: [u8; 256],
    len: usize,
}

impl Message {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    // OnceLock::get and atomic loads are plain loads: async-signal-safe.
    // A thread creating a segment has the signals blocked, so the handler
    // runs on another thread: wait (bounded, about 1 s) for the segment
    // to be registered, or it would be left behind.
    for _ in 0..1000 {
        if CREATING.load(Ordering::Acquire) == 0 {
            break;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: nanosleep is a plain syscall, safe in a handler; the
        // timespec is ours.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    let mut removed = 0u64;
    for path in &PATHS[..SEGMENTS.load(Ordering::Acquire).min(MAX_SEGMENTS)] {
        let path = path.load(Ordering::Acquire);
        // SAFETY: unlink is async-signal-safe; a non-null path is a
        // NUL-terminated string that lives for the whole process.
        if !path.is_null() && unsafe { libc::unlink(path) } == 0 {
            removed += 1;
        }
    }
    let mut m = Message {
        buf: [0; 256],
        len: 0,
    };
    m.push(PROG.get().copied().unwrap_or("ipc-demo").as_bytes());
    m.push(b": interrupted by ");
    m.push(name(signal).as_bytes());
    m.push(b" after ");
    m.number(ITEMS.load(Ordering::Relaxed));
    m.push(b" items");
    match removed {
        0 => {}
        1 => m.push(b"; segment removed"),
        n => {
            m.push(b"; ");
            m.number(n);
            m.push(b" segments removed");
        }
    }
    m.push(b"\n");
    // SAFETY: write and _exit are async-signal-safe; the buffer is ours.
    unsafe {
        libc::write(2, m.buf.as_ptr().cast(), m.len);
        libc::_exit(128 + signal)
    }
}

fn install(handler: extern "C" fn(libc::c_int)) {
    for signal in HANDLED {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler
        // only makes async-signal-safe calls; SA_RESTART keeps blocking
        // calls of other threads from failing with EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: print `PROG: interrupted by SIG after N
/// items` (N as last given to [`count`]), remove the segment of
/// [`create_producer`] if there is one, and exit with 128 + the signal.
/// Only the first call sets the name.
pub fn exit_on_signal(prog: &'static str) {
    let _ = PROG.set(prog);
    install(on_signal);
}

/// Notes how many items are done, for the message of [`exit_on_signal`].
#[inline]
pub fn count(items: u64) {
    ITEMS.store(items, Ordering::Relaxed);
}

/// The counter of items done that the handler of [`exit_on_signal`]
/// reads, for code that counts as it goes (the UCX receiver adds each
/// commit to it).
pub fn items_counter() -> &'static AtomicU64 {
    &ITEMS
}

/// Notes `items` more done (several streams of one process).
#[inline]
pub fn add(items: u64) {
    ITEMS.fetch_add(items, Ordering::Relaxed);
}

/// Blocks (or unblocks) the handled signals in this thread.
fn block(how: libc::c_int) {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in HANDLED {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// `Producer::create(config)`, with the segment (named `name`, as
/// `config.segment_name()` gives) registered for removal by the handler of
/// [`exit_on_signal`]; see [`create_registered`].
///
/// # Errors
///
/// As `Producer::create`.
pub fn create_producer(config: &StreamConfig, name: &str) -> Result<Producer, SetupError> {
    create_registered(name, || Producer::create(config))
}

/// Runs `create` (which makes the segment or hub `name`) with the segment
/// registered for removal by the handler of [`exit_on_signal`]. The
/// handled signals are blocked in this thread until it is registered: one
/// that arrives meanwhile is handled right after, and removes it.
///
/// # Errors
///
/// As `create`.
///
/// # Panics
///
/// When more than [`MAX_SEGMENTS`] segments were registered.
pub fn create_registered<T>(
    name: &str,
    create: impl FnOnce() -> Result<T, SetupError>,
) -> Result<T, SetupError> {
    let path = CString::new(format!("/dev/shm/{}", name.trim_start_matches('/')))
        .expect("a valid segment name has no NUL byte");
    block(libc::SIG_BLOCK);
    CREATING.fetch_add(1, Ordering::AcqRel);
    let producer = create();
    if producer.is_ok() {
        let at = SEGMENTS.fetch_add(1, Ordering::AcqRel);
        assert!(at < MAX_SEGMENTS, "more than {MAX_SEGMENTS} segments");
        // Pairs with the Acquire loads in `on_signal`: the string is
        // written before its pointer is seen.
        PATHS[at].store(path.into_raw(), Ordering::Release);
    }
    CREATING.fetch_sub(1, Ordering::AcqRel);
    block(libc::SIG_UNBLOCK);
    producer
}

extern "C" fn note_signal(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::Relaxed);
}

/// For the launcher: SIGINT, SIGTERM and SIGHUP are only noted, for
/// [`received`] to report.
pub fn record_signals() {
    install(note_signal);
}

/// The last signal noted by [`record_signals`], if any.
pub fn received() -> Option<libc::c_int> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_message_writes_numbers_without_allocating() {
        let mut m = Message {
            buf: [0; 256],
            len: 0,
        };
        m.push(b"x ");
        m.number(0);
        m.push(b" ");
        m.number(u64::MAX);
        assert_eq!(&m.buf[..m.len], b"x 0 18446744073709551615");
        // A message longer than the buffer is cut, not overflowed.
        for _ in 0..100 {
            m.push(b"0123456789");
        }
        assert_eq!(m.len, 256);
    }
}
