//! The OS side of a stream: POSIX shared memory on Linux. Creates, opens,
//! validates, double-maps and removes segments, and tells whether the peer
//! process is alive.
//!
//! Liveness: each side holds an open-file-description lock on one byte of
//! the segment (producer byte 0, consumer byte 1). The kernel drops it when
//! the process dies, however it dies, so a test of the lock is a witness
//! that a reused pid cannot fool.

use crate::config::StreamConfig;
use crate::error::SetupError;
use crate::layout::{
    Control, Descriptor, Geometry, Header, CONTROL_OFFSET, DESCRIPTOR_BYTES,
    FLAG_CONSUMER_ATTACHED, FLAG_DONE, HEADER_BYTES, MAGIC, MAX_DIMS, MAX_ID_LEN, VERSION,
};
use crate::ring::{Backing, RingMem, Side};
use crate::sync::Ordering;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

const LOCK_BYTE_PRODUCER: i64 = 0;
const LOCK_BYTE_CONSUMER: i64 = 1;

/// One process's mapping of a segment. The payload is mapped twice, back
/// to back, right after the descriptor table.
#[derive(Debug)]
pub(crate) struct Segment {
    base: NonNull<u8>,
    reserved: usize,
    fd: OwnedFd,
    geometry: Geometry,
    /// An anonymous segment both of whose sides live in this process.
    in_process: bool,
}

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
}

/// Whether `peer` holds its lock on the segment behind `fd`. An error of
/// the test itself is not evidence of death.
fn peer_holds_lock(fd: &OwnedFd, peer: Side) -> bool {
    let byte = match peer {
        Side::Producer => LOCK_BYTE_PRODUCER,
        Side::Consumer => LOCK_BYTE_CONSUMER,
    };
    lock_held(fd, byte).unwrap_or(true)
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `base..base + reserved` is the reservation made in
        // `map_double`; no reference into it survives the ring handles,
        // which hold the `Arc` this value lives in.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.reserved);
        }
    }
}

impl Segment {
    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a page that holds the header.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    fn ring(self: &Arc<Self>) -> RingMem {
        let g = self.geometry;
        let base = self.base.as_ptr();
        // SAFETY: offsets come from the validated geometry; the mapping
        // covers header, table and two copies of the payload, and lives as
        // long as the `Arc` handed to the ring.
        unsafe {
            RingMem::new(
                NonNull::new_unchecked(base.add(CONTROL_OFFSET).cast::<Control>()),
                NonNull::new_unchecked(
                    base.add(g.descriptors_offset as usize).cast::<Descriptor>(),
                ),
                NonNull::new_unchecked(base.add(g.payload_offset as usize)),
                g.capacity,
                g.slot_bytes,
                true,
                self.clone() as Arc<dyn Backing>,
            )
        }
    }
}

fn os_err<'a>(op: &'static str, name: &'a str) -> impl FnOnce(nix::Error) -> SetupError + 'a {
    move |e| SetupError::Os {
        op,
        name: name.to_string(),
        source: io::Error::from_raw_os_error(e as i32),
    }
}

fn io_err(op: &'static str, name: &str, source: io::Error) -> SetupError {
    SetupError::Os {
        op,
        name: name.to_string(),
        source,
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

/// Takes the write lock on `byte`; false when another description holds it.
fn take_lock(fd: &OwnedFd, byte: i64) -> io::Result<bool> {
    let fl = flock(libc::F_WRLCK as libc::c_short, byte);
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

/// Whether some other open file description holds a lock on `byte`.
fn lock_held(fd: &OwnedFd, byte: i64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
    // SAFETY: F_OFD_GETLK reads and writes the `flock` we pass, which
    // outlives the call.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Reserves address space for the header, the table and two payload copies,
/// then maps the file over the first part and the payload again after it.
fn map_double(fd: &OwnedFd, g: &Geometry) -> io::Result<(NonNull<u8>, usize)> {
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
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_SHARED | libc::MAP_FIXED;
    // SAFETY: both fixed mappings lie inside the reservation we own
    // (`total_bytes + payload_bytes == reserved`), so MAP_FIXED replaces
    // only our own PROT_NONE pages; the file is `total_bytes` long.
    let ok = unsafe {
        libc::mmap(base, g.total_bytes as usize, prot, flags, fd.as_raw_fd(), 0) != libc::MAP_FAILED
            && libc::mmap(
                base.cast::<u8>().add(g.total_bytes as usize).cast(),
                g.payload_bytes as usize,
                prot,
                flags,
                fd.as_raw_fd(),
                g.payload_offset as libc::off_t,
            ) != libc::MAP_FAILED
    };
    if !ok {
        let e = io::Error::last_os_error();
        // SAFETY: undoing our own reservation.
        unsafe { libc::munmap(base, reserved) };
        return Err(e);
    }
    Ok((
        NonNull::new(base.cast()).expect("mmap never returns null on success"),
        reserved,
    ))
}

fn c_name(name: &str) -> CString {
    CString::new(name).expect("segment names are checked to hold no NUL")
}

/// How a segment is opened: created (the producer), read to be checked
/// (anyone, before trusting it), or written (the consumer, after the checks).
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

/// What an existing segment's owner is: alive (with its recorded pid),
/// dead, or someone else's.
enum Owner {
    Alive(u32),
    Dead,
}

fn probe_owner(name: &str) -> Result<Owner, SetupError> {
    let Some((fd, _len)) = open_existing(name)? else {
        return Ok(Owner::Dead);
    };
    let alive =
        lock_held(&fd, LOCK_BYTE_PRODUCER).map_err(|e| io_err("test the lock of", name, e))?;
    if !alive {
        return Ok(Owner::Dead);
    }
    let mut pid = [0u8; 4];
    let offset = std::mem::offset_of!(Header, producer_pid) as libc::off_t;
    // SAFETY: reads 4 bytes into a local buffer of 4 bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), pid.as_mut_ptr().cast(), 4, offset) };
    Ok(Owner::Alive(if n == 4 {
        u32::from_ne_bytes(pid)
    } else {
        0
    }))
}

/// Opens an existing segment read-only (`None` when there is none) and
/// checks its owner and mode; returns it with the file's length. Read-only:
/// a segment is opened for writing only once it passed the checks.
fn open_existing(name: &str) -> Result<Option<(OwnedFd, u64)>, SetupError> {
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

/// Creates the segment of `config` and maps it: the producer's side.
pub(crate) fn create(config: &StreamConfig) -> Result<(RingMem, String), SetupError> {
    let geometry = config.validate()?;
    let name = config.segment_name()?;
    let mut reclaimed = false;
    let fd = loop {
        match shm_open(
            c_name(&name).as_c_str(),
            open_flags(Access::Create),
            Mode::S_IRUSR | Mode::S_IWUSR,
        ) {
            Ok(fd) => break fd,
            Err(nix::Error::EEXIST) if !reclaimed => match probe_owner(&name)? {
                Owner::Alive(owner_pid) => {
                    return Err(SetupError::AlreadyExists { name, owner_pid })
                }
                Owner::Dead => {
                    // Its owner died without removing it: reclaim the name.
                    let _ = shm_unlink(c_name(&name).as_c_str());
                    reclaimed = true;
                }
            },
            Err(e) => return Err(os_err("create", &name)(e)),
        }
    };
    let result = init(fd, geometry, config, &name);
    if result.is_err() {
        let _ = shm_unlink(c_name(&name).as_c_str());
    }
    result.map(|mem| (mem, name))
}

fn init(
    fd: OwnedFd,
    geometry: Geometry,
    config: &StreamConfig,
    name: &str,
) -> Result<RingMem, SetupError> {
    // The umask may only have removed bits; make the mode exactly 0600.
    nix::sys::stat::fchmod(&fd, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(os_err("set the mode of", name))?;
    nix::unistd::ftruncate(&fd, geometry.total_bytes as libc::off_t)
        .map_err(os_err("size", name))?;
    if !take_lock(&fd, LOCK_BYTE_PRODUCER).map_err(|e| io_err("lock", name, e))? {
        return Err(SetupError::AlreadyExists {
            name: name.to_string(),
            owner_pid: 0,
        });
    }
    let (base, reserved) = map_double(&fd, &geometry).map_err(|e| io_err("map", name, e))?;
    let segment = Arc::new(Segment {
        base,
        reserved,
        fd,
        geometry,
        in_process: false,
    });
    // SAFETY: the first page is ours alone until `magic` is published: the
    // consumer refuses a segment whose magic is not set. It was zeroed by
    // ftruncate, and the header fits in it.
    unsafe {
        let h = base.as_ptr().cast::<Header>();
        (*h).version = VERSION;
        (*h).header_bytes = HEADER_BYTES as u32;
        (*h).capacity = geometry.capacity;
        (*h).slot_bytes = geometry.slot_bytes;
        (*h).descriptor_bytes = DESCRIPTOR_BYTES as u32;
        (*h).max_dims = MAX_DIMS as u32;
        (*h).max_id_len = MAX_ID_LEN as u32;
        (*h).control_offset = CONTROL_OFFSET as u32;
        (*h).descriptors_offset = geometry.descriptors_offset;
        (*h).payload_offset = geometry.payload_offset;
        (*h).payload_bytes = geometry.payload_bytes;
        (*h).total_bytes = geometry.total_bytes;
        (*h).producer_pid = std::process::id();
        (*h).producer_uid = nix::unistd::geteuid().as_raw();
        for (i, (_, value)) in config.names().iter().enumerate() {
            (*h).name_lens[i] = value.len() as u32;
            let names = &mut (*h).names;
            names[i][..value.len()].copy_from_slice(value.as_bytes());
        }
    }
    // Release: pairs with the Acquire load in `open`; the header written
    // above is complete for a consumer that sees the magic.
    segment.header().magic.store(MAGIC, Ordering::Release);
    Ok(segment.ring())
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
/// # Safety
///
/// `page` points at `HEADER_BYTES` readable bytes (a mapping of the file).
pub(crate) unsafe fn read_header(
    page: *const u8,
    file_len: u64,
    name: &str,
) -> Result<HeaderCopy, SetupError> {
    // SAFETY: the caller's contract; the header fits in the page.
    let h = unsafe { &*page.cast::<Header>() };
    // Acquire: pairs with the Release store at the end of `init`.
    let magic = h.magic.load(Ordering::Acquire);
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
    // Volatile copies: the fields are read once, here, and only the copies
    // are trusted afterwards.
    macro_rules! get {
        ($f:ident) => {
            // SAFETY: a field of the header inside the mapped page.
            unsafe { std::ptr::read_volatile(std::ptr::addr_of!(h.$f)) }
        };
    }
    let version = get!(version);
    if version != VERSION {
        return Err(mismatch(name, "version", VERSION, version));
    }
    let checks: [(&'static str, u64, u64); 5] = [
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
    let (capacity, slot_bytes) = (get!(capacity), get!(slot_bytes));
    let geometry = Geometry::new(capacity, slot_bytes).map_err(|why| {
        mismatch(
            name,
            "capacity or slot size",
            why,
            format!("{capacity} x {slot_bytes}"),
        )
    })?;
    let offsets: [(&'static str, u64, u64); 4] = [
        (
            "descriptor offset",
            geometry.descriptors_offset,
            get!(descriptors_offset),
        ),
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
        // SAFETY: maps the first page of the file (the callers checked it is
        // at least that long), shared, read-only, at an address of the
        // kernel's choosing.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                HEADER_BYTES,
                libc::PROT_READ,
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

    fn header(&self) -> &Header {
        // SAFETY: the page holds the header at its start and lives as long
        // as `self`; its atomics are only loaded.
        unsafe { &*self.0.as_ptr().cast::<Header>() }
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

/// Opens the checked segment behind `checked` again, for writing, and makes
/// sure the name still leads to the same file (it could have been replaced
/// between the two opens) and that it still passes the owner checks.
fn reopen_for_writing(checked: &OwnedFd, name: &str) -> Result<OwnedFd, SetupError> {
    let fd = match shm_open(
        c_name(name).as_c_str(),
        open_flags(Access::Write),
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => {
            return Err(SetupError::NotFound {
                name: name.to_string(),
            })
        }
        Err(e) => return Err(os_err("open", name)(e)),
    };
    let before = nix::sys::stat::fstat(checked).map_err(os_err("inspect", name))?;
    let after = nix::sys::stat::fstat(&fd).map_err(os_err("inspect", name))?;
    if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino) {
        return Err(SetupError::ForeignSegment {
            name: name.to_string(),
            reason: "it was replaced while it was being opened".to_string(),
        });
    }
    check_owner(&fd, name)?;
    Ok(fd)
}

/// Opens the segment of `config` as its consumer: checks ownership, layout
/// and identity, takes the consumer's lock, maps it twice.
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
    let fd = reopen_for_writing(&fd, &name)?;
    if !take_lock(&fd, LOCK_BYTE_CONSUMER).map_err(|e| io_err("lock", &name, e))? {
        return Err(SetupError::ConsumerAlreadyAttached { name });
    }
    let geometry = header.geometry;
    let (base, reserved) = map_double(&fd, &geometry).map_err(|e| io_err("map", &name, e))?;
    let segment = Arc::new(Segment {
        base,
        reserved,
        fd,
        geometry,
        in_process: false,
    });
    segment
        .header()
        .consumer_pid
        .store(std::process::id(), Ordering::Relaxed);
    Ok((segment.ring(), name))
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
    let (base, reserved) = map_double(&fd, &geometry).map_err(|e| io_err("map", name, e))?;
    let segment = Arc::new(Segment {
        base,
        reserved,
        fd,
        geometry,
        in_process: true,
    });
    Ok((segment.ring(), segment.ring()))
}

/// Removes a segment's name (mappings stay valid until unmapped).
pub(crate) fn unlink(name: &str) {
    let _ = shm_unlink(c_name(name).as_c_str());
}

/// A segment's state as seen from outside, for tools: identity, layout,
/// cursors and whether each peer lives.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The shared-memory name.
    pub name: String,
    /// request_id, edge_name, from_partition.
    pub identity: [String; 3],
    /// Slots.
    pub capacity: u64,
    /// Bytes per slot.
    pub slot_bytes: u64,
    /// Process id recorded by the producer.
    pub producer_pid: u32,
    /// Process id recorded by the consumer (0 before one attached).
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
    Ok(SegmentInfo {
        name: name.to_string(),
        identity: header.names,
        capacity: g.capacity,
        slot_bytes: g.slot_bytes,
        producer_pid: header.producer_pid,
        consumer_pid: page.header().consumer_pid.load(Ordering::Relaxed),
        registered: control.registered.load(Ordering::Acquire),
        released: control.released.load(Ordering::Acquire),
        done: flags & FLAG_DONE != 0,
        producer_alive: peer_holds_lock(&fd, Side::Producer),
        consumer_alive: peer_holds_lock(&fd, Side::Consumer),
        consumer_attached: flags & FLAG_CONSUMER_ATTACHED != 0,
    })
}

/// Names of this user's segments whose name starts with `prefix` (without
/// the leading `/`), from `/dev/shm`.
pub fn list_segments(prefix: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if file.starts_with(prefix) {
            names.push(format!("/{file}"));
        }
    }
    names.sort();
    Ok(names)
}

/// Removes the segment `name` if its producer is dead; returns whether it
/// did. A live segment, or another user's, is never removed.
///
/// # Errors
///
/// As opening a segment, except that a missing one is `Ok(false)`.
pub fn remove_if_dead(name: &str) -> Result<bool, SetupError> {
    match probe_owner(name)? {
        Owner::Alive(_) => Ok(false),
        Owner::Dead => {
            let existed = shm_unlink(c_name(name).as_c_str()).is_ok();
            Ok(existed)
        }
    }
}
