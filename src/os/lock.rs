//! The liveness locks: open-file-description locks (`F_OFD_SETLK`) on
//! single bytes of a segment file. The kernel drops them when the last
//! reference to that open file description goes (its descriptors and its
//! mappings, also a forked child's: see `fork.rs`), however its process
//! dies, so a test of a lock is a witness that a reused pid cannot fool.
//!
//! | byte | who | kind | for |
//! | --- | --- | --- | --- |
//! | 0 | the producer, from right after its `O_EXCL` create until its segment is dropped | write | liveness; nobody reclaims a name whose file is write-locked here |
//! | 0 | a reclaimer, while it checks and unlinks a dead producer's name | read | keeps a starting producer from claiming the file under it (and vice versa) |
//! | 1 | the consumer, while attached | read | liveness (a read lock needs only a read-only descriptor) |
//! | 2 | a reclaimer | write | one reclaimer at a time per file |
//! | 3 | a consumer, from its attach until it detaches (the writable header-page mapping keeps the description alive) | write | one consumer at a time passes the "is byte 1 free" test |

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
pub(crate) const LOCK_BYTE_PRODUCER: i64 = 0;

pub(crate) const LOCK_BYTE_CONSUMER: i64 = 1;

pub(crate) const LOCK_BYTE_RECLAIM: i64 = 2;

pub(crate) const LOCK_BYTE_ATTACH: i64 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lock {
    Read,
    Write,
}

impl Lock {
    fn kind(self) -> libc::c_short {
        match self {
            Lock::Read => libc::F_RDLCK as libc::c_short,
            Lock::Write => libc::F_WRLCK as libc::c_short,
        }
    }
}

pub(crate) fn flock(kind: libc::c_short, byte: i64) -> libc::flock {
    // SAFETY: `flock` is plain old data; all zeroes is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl
}

/// Takes a lock on `byte`; false when another description holds a
/// conflicting one. A write lock needs a descriptor open for writing, a
/// read lock one open for reading.
pub(crate) fn take_lock(fd: &OwnedFd, lock: Lock, byte: i64) -> io::Result<bool> {
    let fl = flock(lock.kind(), byte);
    // SAFETY: F_OFD_SETLK reads the `flock` we pass, which outlives the call.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// The lock some other open file description holds on `byte`, if any
/// (works on a read-only descriptor: testing needs no access).
pub(crate) fn lock_state(fd: &OwnedFd, byte: i64) -> io::Result<Option<Lock>> {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
    // SAFETY: F_OFD_GETLK reads and writes the `flock` we pass, which
    // outlives the call.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match fl.l_type as libc::c_int {
        libc::F_UNLCK => None,
        libc::F_RDLCK => Some(Lock::Read),
        _ => Some(Lock::Write),
    })
}
