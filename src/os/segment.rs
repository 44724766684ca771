//! Creating and opening a stream's segment: the producer claims the name
//! (`O_EXCL`, its lock at once, a dead producer's name reclaimed), sizes,
//! writes and maps the segment; the consumer opens it, checks the header
//! and attaches (the hand-over word of a hub stream decides who removes
//! the name); and the in-process stream on an anonymous file.

use crate::config::StreamConfig;
use crate::error::SetupError;
use crate::os::fork::ForkFd;
use crate::os::header::{open_checked, open_same_for_writing};
use crate::os::lock::{
    lock_state, take_lock, Lock, LOCK_BYTE_ATTACH, LOCK_BYTE_CONSUMER, LOCK_BYTE_PRODUCER,
};
use crate::os::mapping::{map_double, Segment};
use crate::os::reclaim::{reclaim, Reclaim, CLAIM_ATTEMPTS};
use crate::os::shm::{c_name, io_err, names_file, open_flags, os_err, reserve, Access};
use crate::protocol::fingerprint::LAYOUT_FINGERPRINT;
use crate::protocol::layout::{
    Geometry, CONTROL_OFFSET, DESCRIPTOR_BYTES, HEADER_BYTES, MAGIC, MAX_ID_LEN, SIDE_ENTRY_BYTES,
    VERSION,
};
use crate::protocol::ring::RingMem;
use crate::protocol::tensor::MAX_DIMS;
use crate::sync::Ordering;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
