//! The OS side of a stream: POSIX shared memory on Linux. Creates, opens,
//! validates, double-maps and removes segments, and tells whether the peer
//! process is alive.
//!
//! Locks: open-file-description locks (`F_OFD_SETLK`) on single bytes of
//! the segment file. The kernel drops them when the last reference to that
//! open file description goes (its descriptors and its mappings, also a
//! forked child's: see `fork.rs`), however its process dies, so a test of a
//! lock is a witness that a reused pid cannot fool.
//!
//! | byte | who | kind | for |
//! | --- | --- | --- | --- |
//! | 0 | the producer, from right after its `O_EXCL` create until its segment is dropped | write | liveness; nobody reclaims a name whose file is write-locked here |
//! | 0 | a reclaimer, while it checks and unlinks a dead producer's name | read | keeps a starting producer from claiming the file under it (and vice versa) |
//! | 1 | the consumer, while attached | read | liveness (a read lock needs only a read-only descriptor) |
//! | 2 | a reclaimer | write | one reclaimer at a time per file |
//! | 3 | a consumer, from its attach until it detaches (the writable header-page mapping keeps the description alive) | write | one consumer at a time passes the "is byte 1 free" test |

use crate::config::{StreamConfig, StreamId};
use crate::error::SetupError;
use crate::os::fork::ForkFd;
use crate::protocol::layout::{
    Control, Descriptor, Geometry, Header, SideEntry, CONTROL_OFFSET, DESCRIPTOR_BYTES,
    FLAG_CONSUMER_ATTACHED, FLAG_DONE, HEADER_BYTES, LAYOUT_FINGERPRINT, MAGIC, MAX_ID_LEN,
    SIDE_ENTRY_BYTES, VERSION,
};
use crate::protocol::ring::{Backing, RingMem, Side};
use crate::protocol::tensor::MAX_DIMS;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::{addr_of, addr_of_mut, NonNull};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const LOCK_BYTE_PRODUCER: i64 = 0;
const LOCK_BYTE_CONSUMER: i64 = 1;
const LOCK_BYTE_RECLAIM: i64 = 2;
const LOCK_BYTE_ATTACH: i64 = 3;

/// Where glibc's `shm_open` keeps its files (named in errors about space).
const SHM_DIR: &str = "/dev/shm";

/// How often `create` and `remove_if_dead` start over when another process
/// is creating or reclaiming the same name at the same moment. Each retry
/// follows a step of that other process (it unlinked or created the name),
/// so a handful suffices; the bound only keeps a pathological storm of
/// creators and cleaners from looping forever.
const CLAIM_ATTEMPTS: u32 = 1000;

/// One process's mapping of a segment. The payload is mapped twice, back
/// to back, right after the descriptor table.
#[derive(Debug)]
pub(crate) struct Segment {
    base: NonNull<u8>,
    reserved: usize,
    /// The producer's: read-write, holding the producer lock. The
    /// consumer's: read-only, holding the consumer lock (its writable
    /// descriptor was closed right after mapping the header page). A forked
    /// child's copy is a placeholder (see `fork.rs`).
    fd: ForkFd,
    geometry: Geometry,
    /// An anonymous segment both of whose sides live in this process.
    in_process: bool,
    /// The producer's: the name to remove when the segment goes, if it
    /// still names this file.
    owned_name: Option<String>,
    /// A hub stream's producer: when it goes before any consumer attached,
    /// it leaves the name to the worker instead of removing it (see
    /// [`Segment::drop`]). Set once, before the producer is handed out.
    hand_over: AtomicBool,
    /// A consumer that attached to a segment its producer had left to it
    /// (a hub stream whose producer went first): the name it removes when
    /// it goes.
    inherited_name: Option<String>,
}

use crate::protocol::handover::{Close, Leave, HANDED_OVER, WORKER_CLOSED};

// SAFETY: the mapping is process-wide memory owned by this value until drop;
// all access to it goes through atomics or the ring protocol.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only allows lock tests on the fd.
unsafe impl Sync for Segment {}

impl Backing for Segment {
    fn peer_alive(&self, peer: Side) -> bool {
        if self.in_process {
            // Both sides are in this process; the gone flags tell the rest.
            return true;
        }
        peer_holds_lock(&self.fd, peer)
    }

    fn cancel_hand_over(&self) {
        self.hand_over.store(false, Ordering::Relaxed);
    }
}

/// Whether `peer` holds its lock on the segment behind `fd`. An error of
/// the test itself is not evidence of death.
fn peer_holds_lock(fd: &OwnedFd, peer: Side) -> bool {
    let byte = match peer {
        Side::Producer => LOCK_BYTE_PRODUCER,
        Side::Consumer => LOCK_BYTE_CONSUMER,
    };
    lock_state(fd, byte).map_or(true, |held| held.is_some())
}

impl Drop for Segment {
    fn drop(&mut self) {
        // A hub stream's producer that goes before the worker opened its
        // stream leaves the name behind for the worker, which reads the
        // stream and then removes it. The exchange on `consumer_pid`
        // decides, once (`handover.rs`), with the consumer's swap in
        // `open` and the worker's exchange when its set goes without
        // adopting the stream (`close_unadopted`): a consumer attached or
        // the worker closed first, and we remove the name as usual; or we
        // were first, and the consumer or the closing set removes it.
        // Nobody attaching (a worker killed) leaves a segment whose
        // producer is dead: `remove_if_dead` and `ipc-demo clean` take it.
        let handed_over = crate::protocol::handover::producer_leaves(
            self.consumer_pid(),
            self.hand_over.load(Ordering::Relaxed),
        ) == Leave::HandedOver;
        if let Some(name) = self.owned_name.as_ref().filter(|_| !handed_over) {
            // Still under our producer lock (the fd closes after this), so
            // no reclaimer can be removing our file and putting another in
            // its place: if the name leads to our file now, it does when we
            // unlink it. If it leads elsewhere (someone removed ours by
            // hand and another producer took the name), it is not ours.
            if names_file(name, &self.fd).unwrap_or(false) {
                let _ = shm_unlink(c_name(name).as_c_str());
            }
        }
        self.unmap();
        if let Some(name) = &self.inherited_name {
            // Its producer handed the name over on its way out: ours to
            // remove, whether or not its lock is gone yet.
            let _ = remove_handed_over(name, &self.fd);
        }
    }
}

impl Segment {
    /// Called once, from `drop`.
    fn unmap(&mut self) {
        self.fd.forget_mapping();
        // SAFETY: `base..base + reserved` is the reservation made in
        // `map_double`; no reference into it survives the ring handles,
        // which hold the `Arc` this value lives in.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.reserved);
        }
    }

    fn header_ptr(&self) -> *mut Header {
        self.base.as_ptr().cast::<Header>()
    }

    fn magic(&self) -> &AtomicU64 {
        // SAFETY: the mapping starts with the header page and lives as long
        // as `self`; only the atomic field is borrowed, never the whole
        // `Header`, whose plain fields the peer could write.
        unsafe { &*addr_of!((*self.header_ptr()).magic) }
    }

    fn consumer_pid(&self) -> &AtomicU32 {
        // SAFETY: as in `magic`.
        unsafe { &*addr_of!((*self.header_ptr()).consumer_pid) }
    }

    fn ring(self: &Arc<Self>) -> RingMem {
        let g = self.geometry;
        let base = self.base.as_ptr();
        // SAFETY: offsets come from the validated geometry; the mapping
        // covers header, table and two copies of the payload, and lives as
        // long as the `Arc` handed to the ring. The consumer's table and
        // payload are mapped read-only: its side of the ring only reads
        // them (it writes only the control block, in the writable header
        // page), so the "valid for writes" of `RingMem::new` is needed, and
        // given, only for what each side writes.
        unsafe {
            RingMem::new(
                NonNull::new_unchecked(base.add(CONTROL_OFFSET).cast::<Control>()),
                NonNull::new_unchecked(
                    base.add(g.descriptors_offset as usize).cast::<Descriptor>(),
                ),
                NonNull::new_unchecked(base.add(g.side_offset as usize).cast::<SideEntry>()),
                NonNull::new_unchecked(base.add(g.payload_offset as usize)),
                &g,
                true,
                self.clone() as Arc<dyn Backing>,
            )
        }
    }
}

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

fn flock(kind: libc::c_short, byte: i64) -> libc::flock {
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

/// One fixed mapping inside the reservation: `len` bytes at `at`, of the
/// file behind `fd` from `offset`.
struct Piece<'a> {
    at: usize,
    len: usize,
    fd: &'a OwnedFd,
    offset: u64,
    prot: libc::c_int,
}

/// Reserves address space for the header, the table and two payload copies,
/// then maps the file over the first part and the payload again after it.
///
/// `read_only`: the consumer's arrangement. The header page (which holds
/// the control block the consumer writes) is mapped read-write from `fd`;
/// the descriptor table and both payload copies read-only from `read_only`,
/// a descriptor opened `O_RDONLY`, so that not even `mprotect` could make
/// them writable later. Otherwise everything is mapped read-write from `fd`.
fn map_double(
    fd: &OwnedFd,
    g: &Geometry,
    read_only: Option<&OwnedFd>,
) -> io::Result<(NonNull<u8>, usize)> {
    let reserved = (g.payload_offset + 2 * g.payload_bytes) as usize;
    // SAFETY: an anonymous PROT_NONE reservation touches no existing memory.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserved,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let total = g.total_bytes as usize;
    let pieces = match read_only {
        None => [
            Piece {
                at: 0,
                len: total,
                fd,
                offset: 0,
                prot: rw,
            },
            Piece {
                at: total,
                len: g.payload_bytes as usize,
                fd,
                offset: g.payload_offset,
                prot: rw,
            },
            Piece {
                at: total,
                len: 0,
                fd,
                offset: 0,
                prot: rw,
            },
        ],
        Some(ro) => [
            Piece {
                at: 0,
                len: HEADER_BYTES,
                fd,
                offset: 0,
                prot: rw,
            },
            Piece {
                at: HEADER_BYTES,
                len: total - HEADER_BYTES,
                fd: ro,
                offset: HEADER_BYTES as u64,
                prot: libc::PROT_READ,
            },
            Piece {
                at: total,
                len: g.payload_bytes as usize,
                fd: ro,
                offset: g.payload_offset,
                prot: libc::PROT_READ,
            },
        ],
    };
    for piece in pieces.iter().filter(|p| p.len > 0) {
        // SAFETY: every piece lies inside the reservation we own (the
        // pieces tile `0..total_bytes + payload_bytes == reserved`), so
        // MAP_FIXED replaces only our own PROT_NONE pages; the file is
        // `total_bytes` long and each piece's file range lies within it.
        let ok = unsafe {
            libc::mmap(
                base.cast::<u8>().add(piece.at).cast(),
                piece.len,
                piece.prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                piece.fd.as_raw_fd(),
                piece.offset as libc::off_t,
            ) != libc::MAP_FAILED
        };
        if !ok {
            let e = io::Error::last_os_error();
            // SAFETY: undoing our own reservation.
            unsafe { libc::munmap(base, reserved) };
            return Err(e);
        }
    }
    Ok((
        NonNull::new(base.cast()).expect("mmap never returns null on success"),
        reserved,
    ))
}

pub(crate) fn c_name(name: &str) -> CString {
    CString::new(name).expect("segment names are checked to hold no NUL")
}

/// How a segment is opened: created (the producer), read to be checked
/// (anyone, before trusting it), or written (the consumer to map its
/// header page, a reclaimer to lock; both after the checks).
#[derive(Clone, Copy)]
enum Access {
    Create,
    Check,
    Write,
}

fn open_flags(access: Access) -> OFlag {
    let base = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match access {
        Access::Create => base | OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        Access::Check => base | OFlag::O_RDONLY,
        Access::Write => base | OFlag::O_RDWR,
    }
}

fn same_file(a: &OwnedFd, b: &OwnedFd, name: &str) -> Result<bool, SetupError> {
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
fn read_pid(fd: &OwnedFd) -> u32 {
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
fn read_consumer_pid(fd: &OwnedFd) -> Option<u32> {
    let mut pid = [0u8; 4];
    let offset = std::mem::offset_of!(Header, consumer_pid) as libc::off_t;
    // SAFETY: reads 4 bytes into a local buffer of 4 bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), pid.as_mut_ptr().cast(), 4, offset) };
    (n == 4).then(|| u32::from_ne_bytes(pid))
}

/// What became of an existing name that a creator or cleaner looked at.
enum Reclaim {
    /// A producer holds the file's lock: alive (or starting), with the pid
    /// it recorded (0 if not yet).
    Alive(u32),
    /// Its producer was dead; this call unlinked the name.
    Removed,
    /// Another reclaimer is checking this file right now.
    Busy,
    /// The name is gone or leads to another file by now: look again.
    Changed,
}

/// Removes `name` if the producer of the file it leads to is dead, without
/// ever removing a live or starting producer's file: the dead file is
/// locked (read lock on the producer byte, which a producer's write lock
/// excludes both ways; write lock on the reclaim byte, which excludes
/// other reclaimers), and only then is the name checked to still lead to
/// it (device and inode) and unlinked. Nothing can put another file under
/// the name between check and unlink: that takes unlinking this one, which
/// only a holder of these locks does.
fn reclaim(name: &str) -> Result<Reclaim, SetupError> {
    reclaim_consumed_by(name, None)
}

/// As [`reclaim`]; with `consumer` set, the dead file is removed only if
/// its `consumer_pid` word holds that pid (checked under the locks): a
/// file that consumer attached to, never one handed over to a consumer yet
/// to come (`HANDED_OVER`) nor one nobody attached to.
fn reclaim_consumed_by(name: &str, consumer: Option<u32>) -> Result<Reclaim, SetupError> {
    let Some((checked, _len)) = open_existing(name)? else {
        return Ok(Reclaim::Changed);
    };
    // A look first, needing no write access: the common case is a live
    // producer.
    match lock_state(&checked, LOCK_BYTE_PRODUCER)
        .map_err(|e| io_err("test the lock of", name, e))?
    {
        Some(Lock::Write) => return Ok(Reclaim::Alive(read_pid(&checked))),
        Some(Lock::Read) => return Ok(Reclaim::Busy),
        None => {}
    }
    // The reclaim lock is a write lock: open for writing, now that the
    // owner checks passed, and make sure it is still the same file.
    let Some(fd) = open_same_for_writing(&checked, name)? else {
        return Ok(Reclaim::Changed);
    };
    let lock_err = |e| io_err("lock", name, e);
    if !take_lock(&fd, Lock::Write, LOCK_BYTE_RECLAIM).map_err(lock_err)? {
        return Ok(Reclaim::Busy);
    }
    if !take_lock(&fd, Lock::Read, LOCK_BYTE_PRODUCER).map_err(lock_err)? {
        // A producer locked it since the look: one that was starting.
        return Ok(Reclaim::Alive(read_pid(&fd)));
    }
    if !names_file(name, &fd)? {
        return Ok(Reclaim::Changed);
    }
    // A file whose worker closed without adopting it is nobody's to read
    // either, once its producer is dead.
    let found = read_consumer_pid(&fd);
    if consumer.is_some_and(|pid| found != Some(pid) && found != Some(WORKER_CLOSED)) {
        // Dead, but not the file that consumer read: not its to remove.
        return Ok(Reclaim::Busy);
    }
    match shm_unlink(c_name(name).as_c_str()) {
        Ok(()) => Ok(Reclaim::Removed),
        Err(nix::Error::ENOENT) => Ok(Reclaim::Changed),
        Err(e) => Err(os_err("remove", name)(e)),
    }
    // `fd` closes here, releasing both locks after the unlink.
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
fn check_owner(fd: &OwnedFd, name: &str) -> Result<libc::off_t, SetupError> {
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

/// Creates the file of `name` and makes it ours: created with `O_EXCL`,
/// write-locked on the producer byte at once, then checked to still be the
/// file the name leads to (a reclaimer that found it in the instant before
/// the lock may have removed it). Reclaims the name of a dead producer.
pub(crate) fn claim(name: &str) -> Result<OwnedFd, SetupError> {
    for _ in 0..CLAIM_ATTEMPTS {
        match shm_open(
            c_name(name).as_c_str(),
            open_flags(Access::Create),
            Mode::S_IRUSR | Mode::S_IWUSR,
        ) {
            Ok(fd) => {
                // The lock first: until we hold it, a reclaimer cannot tell
                // this file from a dead producer's.
                if !take_lock(&fd, Lock::Write, LOCK_BYTE_PRODUCER)
                    .map_err(|e| io_err("lock", name, e))?
                {
                    // A reclaimer holds it and will unlink it; start over.
                    std::thread::yield_now();
                    continue;
                }
                if !names_file(name, &fd)? {
                    // A reclaimer unlinked it before we locked it.
                    continue;
                }
                // From here on the name is ours until we unlink it: no
                // reclaimer can read-lock the producer byte we hold.
                return Ok(fd);
            }
            Err(nix::Error::EEXIST) => match reclaim(name)? {
                Reclaim::Alive(owner_pid) => {
                    return Err(SetupError::AlreadyExists {
                        name: name.to_string(),
                        owner_pid,
                    })
                }
                Reclaim::Removed | Reclaim::Changed => {}
                Reclaim::Busy => std::thread::yield_now(),
            },
            Err(e) => return Err(os_err("create", name)(e)),
        }
    }
    Err(io_err(
        "create",
        name,
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "other processes kept creating or removing the name; gave up after {CLAIM_ATTEMPTS} attempts"
            ),
        ),
    ))
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

/// Creates the segment of `config` and maps it: the producer's side.
pub(crate) fn create(config: &StreamConfig) -> Result<(RingMem, String), SetupError> {
    create_with(config, false)
}

/// As [`create`]; with `hand_over`, a producer that goes before any consumer
/// attached leaves the segment to the consumer (hub streams: the worker may
/// adopt a stream after its producer finished).
pub(crate) fn create_with(
    config: &StreamConfig,
    hand_over: bool,
) -> Result<(RingMem, String), SetupError> {
    let geometry = config.validate()?;
    let name = config.segment_name()?;
    let fd = claim(&name)?;
    let mapped = prepare(&fd, &geometry, &name);
    let (base, reserved) = match mapped {
        Ok(mapped) => mapped,
        Err(e) => {
            // Under our producer lock, as in `Segment::drop`.
            if names_file(&name, &fd).unwrap_or(false) {
                let _ = shm_unlink(c_name(&name).as_c_str());
            }
            return Err(e);
        }
    };
    let segment = Arc::new(Segment {
        base,
        reserved,
        fd: ForkFd::new(fd, base.as_ptr(), reserved),
        geometry,
        in_process: false,
        owned_name: Some(name.clone()),
        hand_over: AtomicBool::new(hand_over),
        inherited_name: None,
    });
    let h = segment.header_ptr();
    // SAFETY: writes through a raw pointer to the header at the start of
    // our mapping, field by field (no reference to the shared header is
    // formed). The page is ours alone until `magic` is published: a
    // consumer refuses a segment whose magic is not set. The file was
    // zero-filled by posix_fallocate, and the header fits in the page.
    unsafe {
        addr_of_mut!((*h).version).write(VERSION);
        addr_of_mut!((*h).header_bytes).write(HEADER_BYTES as u32);
        addr_of_mut!((*h).capacity).write(geometry.capacity);
        addr_of_mut!((*h).item_bytes).write(geometry.item_bytes);
        addr_of_mut!((*h).descriptor_bytes).write(DESCRIPTOR_BYTES as u32);
        addr_of_mut!((*h).max_dims).write(MAX_DIMS as u32);
        addr_of_mut!((*h).max_id_len).write(MAX_ID_LEN as u32);
        addr_of_mut!((*h).control_offset).write(CONTROL_OFFSET as u32);
        addr_of_mut!((*h).descriptors_offset).write(geometry.descriptors_offset);
        addr_of_mut!((*h).payload_offset).write(geometry.payload_offset);
        addr_of_mut!((*h).payload_bytes).write(geometry.payload_bytes);
        addr_of_mut!((*h).total_bytes).write(geometry.total_bytes);
        addr_of_mut!((*h).producer_pid).write(std::process::id());
        addr_of_mut!((*h).producer_uid).write(nix::unistd::geteuid().as_raw());
        addr_of_mut!((*h).layout_fingerprint).write(LAYOUT_FINGERPRINT);
        addr_of_mut!((*h).side_offset).write(geometry.side_offset);
        addr_of_mut!((*h).side_entry_bytes).write(SIDE_ENTRY_BYTES as u32);
        let lens = addr_of_mut!((*h).name_lens).cast::<u32>();
        let names = addr_of_mut!((*h).names).cast::<[u8; 128]>();
        for (i, (_, value)) in config.names().iter().enumerate() {
            // `validate` bounds each name to MAX_NAME_LEN < 128 bytes.
            lens.add(i).write(value.len() as u32);
            std::ptr::copy_nonoverlapping(value.as_ptr(), names.add(i).cast::<u8>(), value.len());
        }
    }
    // Release: pairs with the Acquire load in `read_header`; the header
    // written above is complete for a consumer that sees the magic.
    segment.magic().store(MAGIC, Ordering::Release);
    Ok((segment.ring(), name))
}

/// Mode, memory and mapping of a freshly claimed segment file.
fn prepare(
    fd: &OwnedFd,
    geometry: &Geometry,
    name: &str,
) -> Result<(NonNull<u8>, usize), SetupError> {
    // Again with fchmod, so that the umask cannot matter.
    nix::sys::stat::fchmod(fd, Mode::S_IRUSR | Mode::S_IWUSR).map_err(os_err("chmod", name))?;
    reserve(fd, geometry.total_bytes, name)?;
    map_double(fd, geometry, None).map_err(|e| io_err("map", name, e))
}

/// A copy of a segment's header, checked.
#[derive(Clone, Debug)]
pub(crate) struct HeaderCopy {
    pub(crate) geometry: Geometry,
    pub(crate) producer_pid: u32,
    pub(crate) names: [String; 3],
}

fn mismatch(
    name: &str,
    field: &'static str,
    expected: impl ToString,
    found: impl ToString,
) -> SetupError {
    SetupError::LayoutMismatch {
        name: name.to_string(),
        field,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Copies the header out of the first page and checks every field against
/// what this build writes and against the file's length.
///
/// The page is memory the peer can write at any time, so no `&Header` is
/// formed over it (a shared reference to plain fields would promise Rust
/// that nobody writes them): `magic` is loaded through a reference to that
/// atomic alone, every other field is read once through a raw pointer
/// (`addr_of!` + `read_volatile`) into a private copy, and only the copies
/// are checked and used afterwards.
///
/// # Safety
///
/// `page` points at `HEADER_BYTES` readable bytes (a mapping of the file),
/// aligned for `Header`.
pub(crate) unsafe fn read_header(
    page: *const u8,
    file_len: u64,
    name: &str,
) -> Result<HeaderCopy, SetupError> {
    let h = page.cast::<Header>();
    // SAFETY: the caller's contract: `magic` lies inside the readable page,
    // aligned; an atomic may be shared with a concurrent writer.
    let magic = unsafe { &*addr_of!((*h).magic) };
    // Acquire: pairs with the Release store at the end of `create`.
    let magic = magic.load(Ordering::Acquire);
    if magic == 0 {
        return Err(SetupError::NotInitialized {
            name: name.to_string(),
        });
    }
    if magic != MAGIC {
        return Err(mismatch(
            name,
            "magic",
            format!("{MAGIC:#x}"),
            format!("{magic:#x}"),
        ));
    }
    macro_rules! get {
        ($f:ident) => {
            // SAFETY: a field of the header inside the readable page (the
            // caller's contract), read through a raw pointer into a copy.
            unsafe { std::ptr::read_volatile(addr_of!((*h).$f)) }
        };
    }
    let version = get!(version);
    if version != VERSION {
        return Err(mismatch(name, "version", VERSION, version));
    }
    let checks: [(&'static str, u64, u64); 6] = [
        (
            "header size",
            HEADER_BYTES as u64,
            get!(header_bytes) as u64,
        ),
        (
            "descriptor size",
            DESCRIPTOR_BYTES as u64,
            get!(descriptor_bytes) as u64,
        ),
        (
            "side table entry size",
            SIDE_ENTRY_BYTES as u64,
            get!(side_entry_bytes) as u64,
        ),
        ("dimension limit", MAX_DIMS as u64, get!(max_dims) as u64),
        (
            "id length limit",
            MAX_ID_LEN as u64,
            get!(max_id_len) as u64,
        ),
        (
            "control offset",
            CONTROL_OFFSET as u64,
            get!(control_offset) as u64,
        ),
    ];
    for (field, expected, found) in checks {
        if expected != found {
            return Err(mismatch(name, field, expected, found));
        }
    }
    // After the named constants (whose mismatch says more), before the
    // geometry: a build with another layout is refused even where every
    // constant it stores happens to agree.
    let fingerprint = get!(layout_fingerprint);
    if fingerprint != LAYOUT_FINGERPRINT {
        return Err(SetupError::LayoutFingerprintMismatch {
            name: name.to_string(),
            expected: LAYOUT_FINGERPRINT,
            found: fingerprint,
        });
    }
    let (capacity, item_bytes, payload_bytes) =
        (get!(capacity), get!(item_bytes), get!(payload_bytes));
    let geometry = Geometry::new(capacity, item_bytes, payload_bytes).map_err(|why| {
        mismatch(
            name,
            "capacity, item size or payload size",
            why,
            format!(
                "{capacity} items, {item_bytes} bytes by default, {payload_bytes} payload bytes"
            ),
        )
    })?;
    let offsets: [(&'static str, u64, u64); 5] = [
        (
            "descriptor offset",
            geometry.descriptors_offset,
            get!(descriptors_offset),
        ),
        ("side table offset", geometry.side_offset, get!(side_offset)),
        (
            "payload offset",
            geometry.payload_offset,
            get!(payload_offset),
        ),
        ("payload size", geometry.payload_bytes, get!(payload_bytes)),
        ("total size", geometry.total_bytes, get!(total_bytes)),
    ];
    for (field, expected, found) in offsets {
        if expected != found {
            return Err(mismatch(name, field, expected, found));
        }
    }
    if file_len != geometry.total_bytes {
        return Err(mismatch(
            name,
            "file length",
            geometry.total_bytes,
            file_len,
        ));
    }
    let lens = get!(name_lens);
    let raw = get!(names);
    let mut names: [String; 3] = Default::default();
    for i in 0..3 {
        let len = lens[i] as usize;
        if len > raw[i].len() {
            return Err(mismatch(
                name,
                "identity length",
                format!("at most {}", raw[i].len()),
                len,
            ));
        }
        names[i] = String::from_utf8(raw[i][..len].to_vec())
            .map_err(|_| mismatch(name, "identity", "UTF-8", "other bytes"))?;
    }
    Ok(HeaderCopy {
        geometry,
        producer_pid: get!(producer_pid),
        names,
    })
}

/// The first page of a segment, mapped read-only on its own: enough to
/// check the header and read the cursors without mapping the payload.
struct HeaderPage(NonNull<u8>);

impl HeaderPage {
    fn map(fd: &OwnedFd, name: &str) -> Result<HeaderPage, SetupError> {
        Self::map_with(fd, name, libc::PROT_READ)
    }

    /// `prot` is `PROT_READ`, or `PROT_READ | PROT_WRITE` from a writable
    /// descriptor for a caller that writes a word of the header (only
    /// then may `consumer_pid` be written through).
    fn map_with(fd: &OwnedFd, name: &str, prot: libc::c_int) -> Result<HeaderPage, SetupError> {
        // SAFETY: maps the first page of the file (the callers checked it is
        // at least that long), shared, at an address of the kernel's
        // choosing.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                HEADER_BYTES,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(io_err("map", name, io::Error::last_os_error()));
        }
        Ok(HeaderPage(
            NonNull::new(page.cast()).expect("mmap never returns null on success"),
        ))
    }

    fn consumer_pid(&self) -> &AtomicU32 {
        // SAFETY: the page holds the header at its start and lives as long
        // as `self`; only the atomic field is borrowed, never the `Header`.
        unsafe { &*addr_of!((*self.0.as_ptr().cast::<Header>()).consumer_pid) }
    }

    fn control(&self) -> &Control {
        // SAFETY: the control block lies at CONTROL_OFFSET inside the page.
        unsafe { &*self.0.as_ptr().add(CONTROL_OFFSET).cast::<Control>() }
    }
}

impl Drop for HeaderPage {
    fn drop(&mut self) {
        // SAFETY: unmaps the page mapped in `map`; nothing borrows it past
        // `self`.
        unsafe { libc::munmap(self.0.as_ptr().cast(), HEADER_BYTES) };
    }
}

/// Opens and checks a segment by name without attaching: the descriptor,
/// the header copy and the mapped header page.
fn open_checked(name: &str) -> Result<(OwnedFd, HeaderCopy, HeaderPage), SetupError> {
    let Some((fd, len)) = open_existing(name)? else {
        return Err(SetupError::NotFound {
            name: name.to_string(),
        });
    };
    if len < HEADER_BYTES as u64 {
        return Err(SetupError::NotInitialized {
            name: name.to_string(),
        });
    }
    let page = HeaderPage::map(&fd, name)?;
    // SAFETY: `page` is the mapped first page, HEADER_BYTES long.
    let header = unsafe { read_header(page.0.as_ptr(), len, name) }?;
    Ok((fd, header, page))
}

/// Opens the checked segment behind `checked` again, for writing; `None`
/// when the name is gone or leads to another file by now (it could have
/// been replaced between the two opens). The new descriptor passes the
/// owner checks again.
pub(crate) fn open_same_for_writing(
    checked: &OwnedFd,
    name: &str,
) -> Result<Option<OwnedFd>, SetupError> {
    let fd = match shm_open(
        c_name(name).as_c_str(),
        open_flags(Access::Write),
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(None),
        Err(e) => return Err(os_err("open", name)(e)),
    };
    if !same_file(checked, &fd, name)? {
        return Ok(None);
    }
    check_owner(&fd, name)?;
    Ok(Some(fd))
}

/// Opens the segment of `config` as its consumer: checks ownership, layout
/// and identity, takes the consumer's lock, maps it twice.
///
/// Least privilege: the consumer writes only the control block (in the
/// header page); it reads the descriptors and the payload. So the header
/// page is mapped read-write from a writable descriptor, everything else
/// read-only from the read-only descriptor the checks were made on, and the
/// writable descriptor is closed before returning: the consumer keeps no
/// descriptor through which it could resize the file under the producer,
/// and no mapping of the table or payload that `mprotect` could make
/// writable. Its liveness lock is a read lock, which the read-only
/// descriptor can hold.
pub(crate) fn open(config: &StreamConfig) -> Result<(RingMem, String), SetupError> {
    config.validate()?;
    let name = config.segment_name()?;
    let (fd, header, _page) = open_checked(&name)?;
    for (i, (field, expected)) in config.names().iter().enumerate() {
        if header.names[i] != *expected {
            return Err(SetupError::IdentityMismatch {
                field,
                expected: expected.to_string(),
                found: header.names[i].clone(),
            });
        }
    }
    let Some(writable) = open_same_for_writing(&fd, &name)? else {
        return Err(SetupError::ForeignSegment {
            name,
            reason: "it was removed or replaced while it was being opened".to_string(),
        });
    };
    // One consumer at a time gets past the attach lock (a write lock on
    // the writable description, which its header-page mapping keeps alive
    // after the descriptor closes below: held until we unmap); past it, a
    // consumer lock held by anyone means another consumer is attached.
    let lock_err = |e| io_err("lock", &name, e);
    let attached = !take_lock(&writable, Lock::Write, LOCK_BYTE_ATTACH).map_err(lock_err)?
        || lock_state(&fd, LOCK_BYTE_CONSUMER)
            .map_err(lock_err)?
            .is_some()
        || !take_lock(&fd, Lock::Read, LOCK_BYTE_CONSUMER).map_err(lock_err)?;
    if attached {
        return Err(SetupError::ConsumerAlreadyAttached { name });
    }
    let geometry = header.geometry;
    let (base, reserved) =
        map_double(&writable, &geometry, Some(&fd)).map_err(|e| io_err("map", &name, e))?;
    drop(writable);
    let mut segment = Segment {
        base,
        reserved,
        fd: ForkFd::new(fd, base.as_ptr(), reserved),
        geometry,
        in_process: false,
        owned_name: None,
        hand_over: AtomicBool::new(false),
        inherited_name: None,
    };
    // Whether the producer went before us and left the name to us: the
    // swap pairs with its exchange in `Segment::drop` (one of the two
    // removes the name).
    if crate::protocol::handover::consumer_attaches(segment.consumer_pid(), std::process::id()) {
        segment.inherited_name = Some(name.clone());
    }
    Ok((Arc::new(segment).ring(), name))
}

/// A nameless segment (a memfd) for both sides of an in-process stream:
/// the same layout and the same double mapping as a named one, so stacked
/// views work across the wrap here too.
pub(crate) fn anonymous(config: &StreamConfig) -> Result<(RingMem, RingMem), SetupError> {
    let geometry = config.validate()?;
    let name = "(in-process)";
    let fd = nix::sys::memfd::memfd_create(c"shmstream", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(os_err("create", name))?;
    nix::unistd::ftruncate(&fd, geometry.total_bytes as libc::off_t)
        .map_err(os_err("size", name))?;
    let (base, reserved) = map_double(&fd, &geometry, None).map_err(|e| io_err("map", name, e))?;
    let segment = Arc::new(Segment {
        base,
        reserved,
        fd: ForkFd::new(fd, base.as_ptr(), reserved),
        geometry,
        in_process: true,
        owned_name: None,
        hand_over: AtomicBool::new(false),
        inherited_name: None,
    });
    Ok((segment.ring(), segment.ring()))
}

/// A segment's state as seen from outside, for tools: identity, layout,
/// cursors and whether each peer lives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The shared-memory name.
    pub name: String,
    /// The stream's identity as stored in the segment.
    pub identity: StreamId,
    /// Items the ring holds at most.
    pub capacity: u64,
    /// Bytes a registration without a size reserves.
    pub item_bytes: u64,
    /// Bytes of the payload ring.
    pub payload_bytes: u64,
    /// Payload bytes from the start of the oldest unreleased reservation to
    /// the end of the newest (as the descriptors say; 0 when none waits).
    pub bytes_in_use: u64,
    /// Process id recorded by the producer.
    pub producer_pid: u32,
    /// Process id recorded by the consumer (0 before one attached, also
    /// for a hub stream whose producer went first and left it to the
    /// worker, or whose worker went first without adopting it).
    pub consumer_pid: u32,
    /// Ids registered so far.
    pub registered: u64,
    /// Positions the consumer released.
    pub released: u64,
    /// The producer signalled done.
    pub done: bool,
    /// The producer holds its lock (is alive).
    pub producer_alive: bool,
    /// A consumer holds its lock.
    pub consumer_alive: bool,
    /// A consumer attached at some point.
    pub consumer_attached: bool,
}

/// Reads a segment's state without attaching to it.
///
/// # Errors
///
/// As opening a segment: not found, foreign, not initialised, bad layout.
pub fn inspect(name: &str) -> Result<SegmentInfo, SetupError> {
    let (fd, header, page) = open_checked(name)?;
    let g = header.geometry;
    let control = page.control();
    let flags = control.flags.load(Ordering::Acquire);
    let registered = control.registered.load(Ordering::Acquire);
    let released = control.released.load(Ordering::Acquire);
    // The reservation (offset, len) of `position`, read from its descriptor
    // (a plain read of the file: the values are only reported).
    let reservation = |position: u64| -> (u64, u64) {
        let at = g.descriptors_offset
            + (position & (g.capacity - 1)) * DESCRIPTOR_BYTES as u64
            + std::mem::offset_of!(Descriptor, offset) as u64;
        let mut words = [0u8; 16];
        match nix::sys::uio::pread(&fd, &mut words, at as libc::off_t) {
            Ok(16) => {
                let word = |i: usize| u64::from_ne_bytes(words[i..i + 8].try_into().unwrap());
                (word(0), word(8))
            }
            _ => (0, 0),
        }
    };
    // From the start of the oldest unreleased reservation to the end of
    // the newest.
    let bytes_in_use = if released < registered {
        let (newest, len) = reservation(registered - 1);
        newest
            .saturating_add(len)
            .saturating_sub(reservation(released).0)
    } else {
        0
    };
    Ok(SegmentInfo {
        name: name.to_string(),
        identity: {
            let [request_id, edge_name, from_partition] = header.names;
            StreamId {
                request_id,
                edge_name,
                from_partition,
            }
        },
        capacity: g.capacity,
        item_bytes: g.item_bytes,
        payload_bytes: g.payload_bytes,
        bytes_in_use,
        producer_pid: header.producer_pid,
        // A hand-over mark is not a pid: no consumer attached yet.
        consumer_pid: match page.consumer_pid().load(Ordering::Relaxed) {
            HANDED_OVER | WORKER_CLOSED => 0,
            pid => pid,
        },
        registered,
        released,
        done: flags & FLAG_DONE != 0,
        producer_alive: peer_holds_lock(&fd, Side::Producer),
        consumer_alive: peer_holds_lock(&fd, Side::Consumer),
        consumer_attached: flags & FLAG_CONSUMER_ATTACHED != 0,
    })
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

/// Removes `name`, which the producer of the file behind `checked` (a
/// descriptor of it that passed the owner checks) handed over to us: the
/// exchange on `consumer_pid` made it ours, so its producer's lock is not
/// asked (the producer may still be closing its descriptor). Under the
/// reclaim lock (byte 2, which every reclaimer takes before it unlinks),
/// the name is checked to still lead to that file and then unlinked:
/// nobody can put another file under the name in between. Returns whether
/// it removed the name.
pub(crate) fn remove_handed_over(name: &str, checked: &OwnedFd) -> Result<bool, SetupError> {
    let Some(fd) = open_same_for_writing(checked, name)? else {
        return Ok(false);
    };
    let lock_err = |e| io_err("lock", name, e);
    // Another reclaimer holds it for a moment (and backs off: our file's
    // producer may still hold its lock, or is dead and then it removes
    // the name itself): try again, yielding.
    let mut locked = false;
    for _ in 0..CLAIM_ATTEMPTS {
        if take_lock(&fd, Lock::Write, LOCK_BYTE_RECLAIM).map_err(lock_err)? {
            locked = true;
            break;
        }
        std::thread::yield_now();
    }
    if !locked || !names_file(name, &fd)? {
        return Ok(false);
    }
    match shm_unlink(c_name(name).as_c_str()) {
        Ok(()) => Ok(true),
        Err(nix::Error::ENOENT) => Ok(false),
        Err(e) => Err(os_err("remove", name)(e)),
    }
    // `fd` closes here, releasing the lock after the unlink.
}

/// Removes the segment a hub entry's identity names (prefix, request_id,
/// edge_name, from_partition) if its producer is dead: what a producer
/// killed between claiming the entry and publishing it may have created.
pub(crate) fn remove_stale(identity: [String; 4]) {
    let [prefix, request_id, edge_name, from_partition] = identity;
    let id = crate::config::StreamId {
        request_id,
        edge_name,
        from_partition,
    };
    if let Ok(name) = StreamConfig::new(id).with_prefix(&prefix).segment_name() {
        let _ = remove_if_dead(&name);
    }
}

/// Whether `name` exists (an error opening it counts as existing).
pub(crate) fn exists(name: &str) -> bool {
    !matches!(open_existing(name), Ok(None))
}

/// Removes every stream segment under `prefix` (except hubs, named
/// `<prefix>hub-...`) whose producer is dead and which this process
/// consumed or whose worker closed without adopting it: what producers
/// killed after a worker's set let go of their streams leave behind. Never
/// a live producer's file, nor one handed over to a worker yet to adopt it.
/// Returns how many it removed. O(files in /dev/shm).
pub(crate) fn remove_orphans(prefix: &str) -> usize {
    let Ok(names) = list_segments(prefix) else {
        return 0;
    };
    let hubs = format!("/{prefix}hub-");
    names
        .iter()
        .filter(|name| !name.starts_with(&hubs))
        .filter(|name| remove_if_dead_consumed_by(name, Some(std::process::id())).unwrap_or(false))
        .count()
}

/// Items the ring of segment `name` holds, from its checked header,
/// without attaching.
///
/// # Errors
///
/// As opening a segment.
pub(crate) fn capacity(name: &str) -> Result<u64, SetupError> {
    let (_fd, header, _page) = open_checked(name)?;
    Ok(header.geometry.capacity)
}

/// The worker's side of the hand-over when its set goes without having
/// adopted the announced stream `name` of the producer `producer_pid`
/// (see `handover.rs`): marks the segment `WORKER_CLOSED` so that its
/// producer removes the name itself when it goes, or, if the producer
/// went first and handed the name over, removes it; a producer found dead
/// (killed) after the mark leaves its name to `remove_if_dead`, here. A
/// file of another producer under the name by now is left alone. Returns
/// whether this call removed the name.
///
/// # Errors
///
/// OS errors; a missing name is `Ok(false)`.
pub(crate) fn close_unadopted(name: &str, producer_pid: u32) -> Result<bool, SetupError> {
    let (fd, header, _page) = match open_checked(name) {
        Ok(opened) => opened,
        Err(SetupError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if header.producer_pid != producer_pid {
        return Ok(false);
    }
    let Some(writable) = open_same_for_writing(&fd, name)? else {
        return Ok(false);
    };
    let page = HeaderPage::map_with(&writable, name, libc::PROT_READ | libc::PROT_WRITE)?;
    drop(writable);
    match crate::protocol::handover::worker_closes(page.consumer_pid()) {
        Close::WorkerRemoves => remove_handed_over(name, &fd),
        Close::ProducerRemoves => remove_if_dead(name),
        Close::NotOurs => Ok(false),
    }
}

/// Removes the segment `name` if its producer is dead; returns whether it
/// did. A live segment, or another user's, is never removed, nor one whose
/// producer is starting: the file is locked and checked to be the one the
/// name leads to before the name is removed (see `reclaim`).
///
/// # Errors
///
/// As opening a segment, except that a missing one is `Ok(false)`.
pub fn remove_if_dead(name: &str) -> Result<bool, SetupError> {
    remove_if_dead_consumed_by(name, None)
}

/// As [`remove_if_dead`], removing only a file whose consumer is `pid`
/// (see `reclaim_consumed_by`): what a hub worker calls for a stream it
/// read whose producer was killed, which can never take a segment handed
/// over to a consumer that has not opened it yet.
pub(crate) fn remove_if_dead_consumed_by(
    name: &str,
    consumer: Option<u32>,
) -> Result<bool, SetupError> {
    for _ in 0..CLAIM_ATTEMPTS {
        match reclaim_consumed_by(name, consumer)? {
            Reclaim::Removed => return Ok(true),
            // Another reclaimer is at it: not removed by this call.
            Reclaim::Alive(_) | Reclaim::Busy => return Ok(false),
            // Gone, or another file under the name by now: look again.
            Reclaim::Changed => {
                if open_existing(name)?.is_none() {
                    return Ok(false);
                }
            }
        }
    }
    Ok(false)
}
