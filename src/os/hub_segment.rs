//! The OS side of a worker hub: the POSIX shared-memory segment that
//! carries it, created by the consumer worker (mode 0600, `O_EXCL`, never
//! through a symlink) and attached by producer processes after the same
//! owner checks as a stream segment.
//!
//! Locks (open-file-description locks on bytes of the hub file):
//!
//! | byte | who | kind | for |
//! | --- | --- | --- | --- |
//! | 0 | the worker, from its `O_EXCL` create until its set is dropped | write | liveness; the same byte and meaning as a stream's producer lock, so the reclaim of a dead owner's name (`claim`, `remove_if_dead`, `ipc-demo clean`) works on hubs unchanged |
//! | 2 | a reclaimer | write | as for a stream segment |
//! | 64 + k | the producer attachment in slot k | write | its liveness: an entry it claimed and never published is taken over once the lock is free |

use crate::config::{StreamId, MAX_PREFIX_LEN};
use crate::error::SetupError;
use crate::os::fork::ForkFd;
use crate::os::header::open_same_for_writing;
use crate::os::lock::{lock_state, take_lock, Lock};
use crate::os::segment::claim;
use crate::os::shm::{io_err, names_file, open_existing, os_err, reserve};
use crate::protocol::hub::{HubBacking, HubMem};
use crate::protocol::hub_layout::{
    Entry, EntryState, HubControl, HubGeometry, ENTRY_BYTES, HUB_CONTROL_OFFSET, HUB_HEADER_BYTES,
    MAX_HUB_PRODUCERS,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use nix::sys::mman::shm_unlink;
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::{addr_of, addr_of_mut, NonNull};

/// Longest worker name (letters, digits, `-`, `_`, `.`).
pub const MAX_WORKER_LEN: usize = 64;

const HUB_MAGIC: u64 = u64::from_le_bytes(*b"SHMSHUB\0");
const HUB_VERSION: u32 = 1;
const LOCK_BYTE_PRODUCERS: i64 = 64;

/// The hub's first bytes. Written once by the worker before it publishes
/// `magic`; an attaching producer checks every field.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct HubHeader {
    /// `"SHMSHUB\0"`, stored last with Release.
    pub(crate) magic: AtomicU64,
    pub(crate) version: u32,
    pub(crate) header_bytes: u32,
    pub(crate) entries: u32,
    pub(crate) entry_bytes: u32,
    pub(crate) max_producers: u32,
    pub(crate) control_offset: u32,
    pub(crate) ready_offset: u64,
    pub(crate) announce_offset: u64,
    pub(crate) entries_offset: u64,
    pub(crate) total_bytes: u64,
    pub(crate) layout_fingerprint: u64,
    pub(crate) _reserved: u64,
    /// At the offset where a stream segment keeps its producer's pid: the
    /// owner's pid, which the shared reclaim code reports.
    pub(crate) consumer_pid: AtomicU32,
    pub(crate) consumer_uid: u32,
    pub(crate) worker_len: u32,
    pub(crate) _pad: u32,
    pub(crate) worker: [u8; 128],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(HubHeader, magic) == 0);
    assert!(offset_of!(HubHeader, version) == 8);
    assert!(offset_of!(HubHeader, entries) == 16);
    assert!(offset_of!(HubHeader, ready_offset) == 32);
    assert!(offset_of!(HubHeader, total_bytes) == 56);
    assert!(offset_of!(HubHeader, layout_fingerprint) == 64);
    assert!(offset_of!(HubHeader, consumer_pid) == 80);
    assert!(offset_of!(HubHeader, worker) == 96);
    assert!(size_of::<HubHeader>() == 224);
    assert!(size_of::<HubHeader>() <= HUB_CONTROL_OFFSET as usize);
};

/// A hash of what fixes the hub's bytes (sizes and offsets of the header,
/// control block and entry, the limits), so two builds that lay a hub out
/// differently refuse each other.
const HUB_FINGERPRINT: u64 = {
    use core::mem::{offset_of, size_of};
    let parts: [u64; 14] = [
        HUB_MAGIC,
        HUB_VERSION as u64,
        size_of::<HubHeader>() as u64,
        size_of::<HubControl>() as u64,
        offset_of!(HubControl, producers) as u64,
        size_of::<Entry>() as u64,
        offset_of!(Entry, pid) as u64,
        offset_of!(Entry, lens) as u64,
        offset_of!(Entry, text) as u64,
        MAX_HUB_PRODUCERS as u64,
        MAX_PREFIX_LEN as u64,
        crate::protocol::layout::MAX_NAME_LEN as u64,
        cfg!(target_endian = "little") as u64,
        HUB_CONTROL_OFFSET,
    ];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].to_le_bytes();
        let mut j = 0;
        while j < 8 {
            hash ^= bytes[j] as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    hash
};

/// The shared-memory name of `worker`'s hub under `prefix`:
/// `/<prefix>hub-<worker>`.
///
/// # Errors
///
/// [`SetupError::InvalidName`] for an empty or too long worker name or
/// prefix, or one with other characters than letters, digits, `-`, `_`,
/// `.`.
pub fn hub_name(worker: &str, prefix: &str) -> Result<String, SetupError> {
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if worker.is_empty() || worker.len() > MAX_WORKER_LEN || !plain(worker) {
        return Err(SetupError::InvalidName {
            field: "worker",
            value: worker.to_string(),
            reason: format!(
                "a worker name has 1 to {MAX_WORKER_LEN} letters, digits, '-', '_' or '.'"
            ),
        });
    }
    if prefix.len() > MAX_PREFIX_LEN || !plain(prefix) {
        return Err(SetupError::InvalidName {
            field: "prefix",
            value: prefix.to_string(),
            reason: format!(
                "a prefix has at most {MAX_PREFIX_LEN} letters, digits, '-', '_' or '.'"
            ),
        });
    }
    Ok(format!("/{prefix}hub-{worker}"))
}

/// One process's mapping of a hub.
#[derive(Debug)]
struct HubSegment {
    base: NonNull<u8>,
    len: usize,
    /// Read-write; the worker's holds the owner lock, a producer's its
    /// slot lock. A forked child does not keep it (nor the mapping): the
    /// locks stay the process's that attached (`fork.rs`).
    fd: ForkFd,
    name: String,
    /// The worker's: remove the name when the hub goes, if it still leads
    /// to this file.
    owned: bool,
}

// SAFETY: the mapping is owned by this value until drop; all access to it
// goes through atomics.
unsafe impl Send for HubSegment {}
// SAFETY: as above; `&HubSegment` allows only lock calls on the fd.
unsafe impl Sync for HubSegment {}

fn slot_lock(fd: &OwnedFd, kind: libc::c_int, slot: usize) -> io::Result<bool> {
    // SAFETY: `flock` is plain old data; all zeroes is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LOCK_BYTE_PRODUCERS + slot as i64;
    fl.l_len = 1;
    // SAFETY: F_OFD_SETLK reads the `flock` we pass, which outlives the call.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        Ok(true)
    } else {
        Err(io::Error::last_os_error())
    }
}

impl HubBacking for HubSegment {
    fn name(&self) -> &str {
        &self.name
    }

    fn try_lock_slot(&self, slot: usize) -> bool {
        take_lock(&self.fd, Lock::Write, LOCK_BYTE_PRODUCERS + slot as i64).unwrap_or(false)
    }

    fn unlock_slot(&self, slot: usize) {
        let _ = slot_lock(&self.fd, libc::F_UNLCK, slot);
    }

    fn slot_locked(&self, slot: usize) -> bool {
        // An error of the test itself is not evidence of death.
        lock_state(&self.fd, LOCK_BYTE_PRODUCERS + slot as i64).map_or(true, |l| l.is_some())
    }

    fn owner_alive(&self) -> bool {
        // The worker's own mapping: it is alive. Others test its lock.
        self.owned || lock_state(&self.fd, 0).map_or(true, |l| l.is_some())
    }
}

impl Drop for HubSegment {
    fn drop(&mut self) {
        if self.owned && names_file(&self.name, &self.fd).unwrap_or(false) {
            // Still under our owner lock (the fd closes after this), as a
            // stream segment's producer does.
            let _ = shm_unlink(c_name(&self.name).as_c_str());
        }
        // Before the unmap: a fork after it must not map over what reuses
        // the addresses.
        self.fd.forget_mapping();
        // SAFETY: `base..base + len` is our mapping; no reference into it
        // survives the `HubMem` that owns this value.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn c_name(name: &str) -> CString {
    CString::new(name).expect("hub names are checked to hold no NUL")
}

fn map(fd: &OwnedFd, len: usize, name: &str) -> Result<NonNull<u8>, SetupError> {
    map_prot(fd, len, name, libc::PROT_READ | libc::PROT_WRITE)
}

fn map_prot(
    fd: &OwnedFd,
    len: usize,
    name: &str,
    prot: libc::c_int,
) -> Result<NonNull<u8>, SetupError> {
    // SAFETY: a fresh shared mapping of `len` bytes of the file, at an
    // address of the kernel's choosing; the callers checked the length.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io_err("map", name, io::Error::last_os_error()));
    }
    Ok(NonNull::new(base.cast()).expect("mmap never returns null on success"))
}

fn hub_mem(segment: HubSegment, g: HubGeometry) -> HubMem {
    let base = segment.base.as_ptr();
    // SAFETY: the offsets come from the checked geometry, whose total is
    // the mapping's length; the mapping lives as long as `segment`, which
    // the `HubMem` owns.
    unsafe {
        HubMem::new(
            NonNull::new_unchecked(base.add(HUB_CONTROL_OFFSET as usize).cast()),
            NonNull::new_unchecked(base.add(g.ready_offset as usize).cast()),
            NonNull::new_unchecked(base.add(g.announce_offset as usize).cast()),
            NonNull::new_unchecked(base.add(g.entries_offset as usize).cast()),
            g,
            Box::new(segment),
        )
    }
}

/// Creates `worker`'s hub of `entries` streams (the worker's side),
/// reclaiming the name of a worker that died.
pub(crate) fn create(worker: &str, prefix: &str, entries: u32) -> Result<HubMem, SetupError> {
    let g = HubGeometry::new(entries).map_err(SetupError::InvalidConfig)?;
    let name = hub_name(worker, prefix)?;
    let fd = claim(&name)?;
    let unlink = |fd: &OwnedFd| {
        if names_file(&name, fd).unwrap_or(false) {
            let _ = shm_unlink(c_name(&name).as_c_str());
        }
    };
    let prepared = nix::sys::stat::fchmod(&fd, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(os_err("chmod", &name))
        .and_then(|()| reserve(&fd, g.total_bytes, &name))
        .and_then(|()| map(&fd, g.total_bytes as usize, &name));
    let base = match prepared {
        Ok(base) => base,
        Err(e) => {
            unlink(&fd);
            return Err(e);
        }
    };
    let h = base.as_ptr().cast::<HubHeader>();
    // SAFETY: field-by-field writes through a raw pointer into our fresh,
    // zero-filled mapping (posix_fallocate), which nobody else uses until
    // `magic` is published; the header fits in the first page.
    unsafe {
        addr_of_mut!((*h).version).write(HUB_VERSION);
        addr_of_mut!((*h).header_bytes).write(HUB_HEADER_BYTES as u32);
        addr_of_mut!((*h).entries).write(g.entries);
        addr_of_mut!((*h).entry_bytes).write(ENTRY_BYTES as u32);
        addr_of_mut!((*h).max_producers).write(MAX_HUB_PRODUCERS as u32);
        addr_of_mut!((*h).control_offset).write(HUB_CONTROL_OFFSET as u32);
        addr_of_mut!((*h).ready_offset).write(g.ready_offset);
        addr_of_mut!((*h).announce_offset).write(g.announce_offset);
        addr_of_mut!((*h).entries_offset).write(g.entries_offset);
        addr_of_mut!((*h).total_bytes).write(g.total_bytes);
        addr_of_mut!((*h).layout_fingerprint).write(HUB_FINGERPRINT);
        addr_of_mut!((*h).consumer_uid).write(nix::unistd::geteuid().as_raw());
        addr_of_mut!((*h).worker_len).write(worker.len() as u32);
        std::ptr::copy_nonoverlapping(
            worker.as_ptr(),
            addr_of_mut!((*h).worker).cast::<u8>(),
            worker.len(),
        );
        (*addr_of!((*h).consumer_pid)).store(std::process::id(), Ordering::Relaxed);
        // Release: pairs with the Acquire load in `attach`: the header
        // written above is complete for a producer that sees the magic.
        (*addr_of!((*h).magic)).store(HUB_MAGIC, Ordering::Release);
    }
    Ok(hub_mem(
        HubSegment {
            base,
            len: g.total_bytes as usize,
            fd: ForkFd::new(fd, base.as_ptr(), g.total_bytes as usize),
            name,
            owned: true,
        },
        g,
    ))
}

/// Attaches to `worker`'s hub (a producer's side): the owner checks, the
/// worker's liveness, then every header field.
pub(crate) fn attach(worker: &str, prefix: &str) -> Result<HubMem, SetupError> {
    let name = hub_name(worker, prefix)?;
    let Some((checked, len)) = open_existing(&name)? else {
        return Err(SetupError::NotFound { name });
    };
    if len < HUB_HEADER_BYTES {
        return Err(SetupError::NotInitialized { name });
    }
    let Some(fd) = open_same_for_writing(&checked, &name)? else {
        return Err(SetupError::NotFound { name });
    };
    drop(checked);
    let owner = lock_state(&fd, 0).map_err(|e| io_err("test the lock of", &name, e))?;
    if owner.is_none() {
        return Err(SetupError::WorkerGone { name });
    }
    let base = map(&fd, len as usize, &name)?;
    let segment = HubSegment {
        base,
        len: len as usize,
        fd: ForkFd::new(fd, base.as_ptr(), len as usize),
        name,
        owned: false,
    };
    let g = check_header(&segment, len)?;
    Ok(hub_mem(segment, g))
}

/// Checks a mapped hub's header against this build and the file's length.
fn check_header(segment: &HubSegment, len: u64) -> Result<HubGeometry, SetupError> {
    let name = &segment.name;
    let h = segment.base.as_ptr().cast::<HubHeader>();
    // SAFETY: the mapping is at least a page long, the header fits in it;
    // only the atomic field is borrowed.
    let magic = unsafe { &*addr_of!((*h).magic) }.load(Ordering::Acquire);
    if magic == 0 {
        return Err(SetupError::NotInitialized { name: name.clone() });
    }
    let mismatch = |field: &'static str, expected: u64, found: u64| SetupError::LayoutMismatch {
        name: name.clone(),
        field,
        expected: expected.to_string(),
        found: found.to_string(),
    };
    macro_rules! get {
        ($field:ident) => {
            // SAFETY: a volatile read of a plain field inside the mapped
            // header (a copy; the worker may rewrite it at any time).
            unsafe { addr_of!((*h).$field).read_volatile() }
        };
    }
    if magic != HUB_MAGIC {
        return Err(mismatch("magic", HUB_MAGIC, magic));
    }
    let checks: [(&'static str, u64, u64); 5] = [
        ("version", HUB_VERSION as u64, get!(version) as u64),
        ("header bytes", HUB_HEADER_BYTES, get!(header_bytes) as u64),
        ("entry bytes", ENTRY_BYTES as u64, get!(entry_bytes) as u64),
        (
            "producer slots",
            MAX_HUB_PRODUCERS as u64,
            get!(max_producers) as u64,
        ),
        (
            "control offset",
            HUB_CONTROL_OFFSET,
            get!(control_offset) as u64,
        ),
    ];
    for (field, expected, found) in checks {
        if expected != found {
            return Err(mismatch(field, expected, found));
        }
    }
    let fingerprint = get!(layout_fingerprint);
    if fingerprint != HUB_FINGERPRINT {
        return Err(SetupError::LayoutFingerprintMismatch {
            name: name.clone(),
            expected: HUB_FINGERPRINT,
            found: fingerprint,
        });
    }
    let entries = get!(entries);
    let g = HubGeometry::new(entries).map_err(|reason| SetupError::LayoutMismatch {
        name: name.clone(),
        field: "entries",
        expected: reason,
        found: entries.to_string(),
    })?;
    let offsets: [(&'static str, u64, u64); 4] = [
        ("ready offset", g.ready_offset, get!(ready_offset)),
        ("announce offset", g.announce_offset, get!(announce_offset)),
        ("entries offset", g.entries_offset, get!(entries_offset)),
        ("total bytes", g.total_bytes, get!(total_bytes)),
    ];
    for (field, expected, found) in offsets {
        if expected != found {
            return Err(mismatch(field, expected, found));
        }
    }
    if len != g.total_bytes {
        return Err(mismatch("file length", g.total_bytes, len));
    }
    Ok(g)
}

/// A stream announced in a hub (see [`HubInfo`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubStreamInfo {
    /// The hub entry it occupies.
    pub entry: u32,
    /// Its identity (`None` for an in-process stream, which has no text).
    pub identity: Option<StreamId>,
    /// The segment prefix it was created under.
    pub prefix: String,
    /// The pid of the producer that announced it.
    pub producer_pid: u32,
}

/// A worker hub's state as seen from outside, for tools.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubInfo {
    /// The shared-memory name.
    pub name: String,
    /// The worker's name as stored in the hub.
    pub worker: String,
    /// The worker's process id.
    pub worker_pid: u32,
    /// The worker holds its lock (is alive).
    pub worker_alive: bool,
    /// Streams the hub holds at most.
    pub entries: u32,
    /// Streams announced and not removed by the worker.
    pub streams: Vec<HubStreamInfo>,
    /// Entries claimed by a producer that has not published them (yet).
    pub claimed: u32,
    /// Pids of the producer attachments that hold a slot.
    pub producer_pids: Vec<u32>,
}

/// Reads a worker hub's state without attaching to it (a read-only
/// mapping; no lock taken).
///
/// # Errors
///
/// As [`Hub::attach`](crate::Hub::attach), except that a dead worker's hub
/// is read too.
pub fn inspect_hub(name: &str) -> Result<HubInfo, SetupError> {
    let Some((fd, len)) = open_existing(name)? else {
        return Err(SetupError::NotFound {
            name: name.to_string(),
        });
    };
    if len < HUB_HEADER_BYTES {
        return Err(SetupError::NotInitialized {
            name: name.to_string(),
        });
    }
    let base = map_prot(&fd, len as usize, name, libc::PROT_READ)?;
    let worker_alive = lock_state(&fd, 0).map_or(true, |l| l.is_some());
    let segment = HubSegment {
        base,
        len: len as usize,
        fd: ForkFd::new(fd, base.as_ptr(), len as usize),
        name: name.to_string(),
        owned: false,
    };
    let g = check_header(&segment, len)?;
    let h = base.as_ptr().cast::<HubHeader>();
    // SAFETY: volatile copies of plain header fields inside the mapping
    // (checked to be at least a page long); the worker length is bounded
    // before the name is sliced.
    let (worker, worker_pid) = unsafe {
        let worker_len = (addr_of!((*h).worker_len).read_volatile() as usize).min(MAX_WORKER_LEN);
        let bytes = addr_of!((*h).worker).read_volatile();
        (
            String::from_utf8_lossy(&bytes[..worker_len]).into_owned(),
            (*addr_of!((*h).consumer_pid)).load(Ordering::Relaxed),
        )
    };
    let hub = hub_mem(segment, g);
    let mut streams = Vec::new();
    let mut claimed = 0;
    for entry in 0..hub.entries() {
        match hub.state(entry) {
            EntryState::Published { .. } => {
                let text = hub.identity(entry).ok().flatten();
                let (identity, prefix) = match text {
                    Some([prefix, request_id, edge_name, from_partition]) => (
                        Some(StreamId {
                            request_id,
                            edge_name,
                            from_partition,
                        }),
                        prefix,
                    ),
                    None => (None, String::new()),
                };
                streams.push(HubStreamInfo {
                    entry,
                    identity,
                    prefix,
                    producer_pid: hub.entry(entry).pid.load(Ordering::Relaxed),
                });
            }
            EntryState::Claimed { .. } => claimed += 1,
            _ => {}
        }
    }
    let producer_pids = (0..MAX_HUB_PRODUCERS)
        .filter_map(|slot| hub.slot_holder(slot))
        .collect();
    Ok(HubInfo {
        name: name.to_string(),
        worker,
        worker_pid,
        worker_alive,
        entries: g.entries,
        streams,
        claimed,
        producer_pids,
    })
}
