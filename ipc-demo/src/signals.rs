//! A producer stopped by Ctrl-C, `kill` or a closed terminal still removes
//! its segment: the handler unlinks the segment's file and exits, without
//! unwinding (only async-signal-safe calls).

use std::ffi::CString;
use std::sync::OnceLock;

static PATH: OnceLock<CString> = OnceLock::new();

extern "C" fn on_signal(signal: libc::c_int) {
    if let Some(path) = PATH.get() {
        // SAFETY: unlink and _exit are async-signal-safe; the path is a
        // NUL-terminated string that lives for the whole process.
        unsafe {
            libc::unlink(path.as_ptr());
        }
    }
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(128 + signal) }
}

/// On SIGINT, SIGTERM or SIGHUP, removes the segment `name` (as created by
/// `Producer::create`, under /dev/shm) and exits with 128 + the signal.
/// Only the first call sets the name.
pub fn remove_on_signal(name: &str) {
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let Ok(path) = CString::new(path) else { return };
    if PATH.set(path).is_err() {
        return;
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only makes async-signal-safe calls.
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}
