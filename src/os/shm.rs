//! Names in `/dev/shm`: opening a name as its owner expects it (never
//! through a symlink, only a file of ours), whether a name still leads to
//! a file we hold, the pids recorded in a file, reserving its space, and
//! the errors that name the segment.

use crate::error::SetupError;
use crate::protocol::layout::Header;
use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
/// Where glibc's `shm_open` keeps its files (named in errors about space).
pub(crate) const SHM_DIR: &str = "/dev/shm";

pub(crate) fn os_err<'a>(
    op: &'static str,
    name: &'a str,
) -> impl FnOnce(nix::Error) -> SetupError + 'a {
    move |e| SetupError::Os {
        op,
        name: name.to_string(),
        source: io::Error::from_raw_os_error(e as i32),
    }
}

pub(crate) fn io_err(op: &'static str, name: &str, source: io::Error) -> SetupError {
    SetupError::Os {
        op,
        name: name.to_string(),
        source,
    }
}

pub(crate) fn c_name(name: &str) -> CString {
    CString::new(name).expect("segment names are checked to hold no NUL")
}

/// How a segment is opened: created (the producer), read to be checked
/// (anyone, before trusting it), or written (the consumer to map its
/// header page, a reclaimer to lock; both after the checks).
#[derive(Clone, Copy)]
pub(crate) enum Access {
    Create,
    Check,
    Write,
}

pub(crate) fn open_flags(access: Access) -> OFlag {
    let base = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match access {
        Access::Create => base | OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        Access::Check => base | OFlag::O_RDONLY,
        Access::Write => base | OFlag::O_RDWR,
    }
}

pub(crate) fn same_file(a: &OwnedFd, b: &OwnedFd, name: &str) -> Result<bool, SetupError> {
    let a = nix::sys::stat::fstat(a).map_err(os_err("inspect", name))?;
    let b = nix::sys::stat::fstat(b).map_err(os_err("inspect", name))?;
    Ok((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

/// Whether `name` leads to the file open as `fd` right now (device and
/// inode). A name that is gone, or is a symlink, leads elsewhere.
pub(crate) fn names_file(name: &str, fd: &OwnedFd) -> Result<bool, SetupError> {
    match shm_open(
        c_name(name).as_c_str(),
        open_flags(Access::Check),
        Mode::empty(),
    ) {
        Ok(now) => same_file(&now, fd, name),
        Err(nix::Error::ENOENT) | Err(nix::Error::ELOOP) => Ok(false),
        Err(e) => Err(os_err("open", name)(e)),
    }
}

/// The producer pid recorded in the segment behind `fd`; 0 when the file
/// is too short to hold it yet.
pub(crate) fn read_pid(fd: &OwnedFd) -> u32 {
    let mut pid = [0u8; 4];
    let offset = std::mem::offset_of!(Header, producer_pid) as libc::off_t;
    // SAFETY: reads 4 bytes into a local buffer of 4 bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), pid.as_mut_ptr().cast(), 4, offset) };
    if n == 4 {
        u32::from_ne_bytes(pid)
    } else {
        0
    }
}

/// The `consumer_pid` word of the segment behind `fd` (`None` when it
/// cannot be read).
pub(crate) fn read_consumer_pid(fd: &OwnedFd) -> Option<u32> {
    let mut pid = [0u8; 4];
    let offset = std::mem::offset_of!(Header, consumer_pid) as libc::off_t;
    // SAFETY: reads 4 bytes into a local buffer of 4 bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), pid.as_mut_ptr().cast(), 4, offset) };
    (n == 4).then(|| u32::from_ne_bytes(pid))
}

/// Opens an existing segment read-only (`None` when there is none) and
/// checks its owner and mode; returns it with the file's length. Read-only:
/// a segment is opened for writing only once it passed the checks.
pub(crate) fn open_existing(name: &str) -> Result<Option<(OwnedFd, u64)>, SetupError> {
    let fd = match shm_open(
        c_name(name).as_c_str(),
        open_flags(Access::Check),
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(None),
        Err(e) => return Err(os_err("open", name)(e)),
    };
    let len = check_owner(&fd, name)? as u64;
    Ok(Some((fd, len)))
}

/// Refuses a segment of another user, or one open to other users.
pub(crate) fn check_owner(fd: &OwnedFd, name: &str) -> Result<libc::off_t, SetupError> {
    let st = nix::sys::stat::fstat(fd).map_err(os_err("inspect", name))?;
    let uid = nix::unistd::geteuid().as_raw();
    if st.st_uid != uid {
        return Err(SetupError::ForeignSegment {
            name: name.to_string(),
            reason: format!("it belongs to user {}, not to this user {uid}", st.st_uid),
        });
    }
    if st.st_mode & 0o077 != 0 {
        return Err(SetupError::ForeignSegment {
            name: name.to_string(),
            reason: format!(
                "its mode {:o} lets other users in (expected 600)",
                st.st_mode & 0o777
            ),
        });
    }
    Ok(st.st_size)
}

/// Reserves the segment's memory on the shared-memory file system, so that
/// a full `/dev/shm` is an error here and not a SIGBUS at the first write
/// to a page that cannot be allocated (`ftruncate` alone allocates nothing).
pub(crate) fn reserve(fd: &OwnedFd, needed: u64, name: &str) -> Result<(), SetupError> {
    let no_space = |available: u64| SetupError::NoSpace {
        name: name.to_string(),
        dir: SHM_DIR,
        needed,
        available,
    };
    // Free bytes, or None on a file system without a size limit (tmpfs
    // with `size=0` reports no blocks at all).
    let free = || -> Option<u64> {
        let st = nix::sys::statvfs::fstatvfs(fd).ok()?;
        (st.blocks() > 0).then(|| st.blocks_available() as u64 * st.fragment_size() as u64)
    };
    // Refuse at once what cannot fit: posix_fallocate would first fill the
    // file system up to the last page (starving every other user of it for
    // a moment) before failing and giving the pages back.
    if let Some(available) = free() {
        if needed > available {
            return Err(no_space(available));
        }
    }
    loop {
        match nix::fcntl::posix_fallocate(fd, 0, needed as libc::off_t) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(nix::Error::ENOSPC) => return Err(no_space(free().unwrap_or(0))),
            Err(e) => return Err(os_err("reserve memory for", name)(e)),
        }
    }
}

/// Names of this user's segments whose name starts with `prefix` (without
/// the leading `/`), from `/dev/shm`. Files of other users are left out
/// (this user could not open them as segments anyway).
pub fn list_segments(prefix: &str) -> io::Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if !file.starts_with(prefix) {
            continue;
        }
        // `symlink_metadata`: a link is listed under its own owner, never
        // followed. A file gone since `read_dir` is skipped.
        match entry.path().symlink_metadata() {
            Ok(meta) if meta.uid() == me => names.push(format!("/{file}")),
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}
