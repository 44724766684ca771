//! One process's mapping of a segment: the header page, the descriptor and
//! side tables, and the payload mapped twice back to back, as the ring's
//! [`Backing`]; the peer's liveness is its lock, and the producer's drop
//! removes its name unless it handed the name over.

use crate::os::fork::ForkFd;
use crate::os::lock::{lock_state, LOCK_BYTE_CONSUMER, LOCK_BYTE_PRODUCER};
use crate::os::reclaim::remove_handed_over;
use crate::os::shm::{c_name, names_file};
use crate::protocol::descriptor::{Descriptor, SideEntry};
use crate::protocol::handover::Leave;
use crate::protocol::layout::{Control, Geometry, Header, CONTROL_OFFSET, HEADER_BYTES};
use crate::protocol::ring::{Backing, RingMem, Side};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use nix::sys::mman::shm_unlink;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::{addr_of, NonNull};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
/// One process's mapping of a segment. The payload is mapped twice, back
/// to back, right after the descriptor table.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base: NonNull<u8>,
    pub(crate) reserved: usize,
    /// The producer's: read-write, holding the producer lock. The
    /// consumer's: read-only, holding the consumer lock (its writable
    /// descriptor was closed right after mapping the header page). A forked
    /// child's copy is a placeholder (see `fork.rs`).
    pub(crate) fd: ForkFd,
    pub(crate) geometry: Geometry,
    /// An anonymous segment both of whose sides live in this process.
    pub(crate) in_process: bool,
    /// The producer's: the name to remove when the segment goes, if it
    /// still names this file.
    pub(crate) owned_name: Option<String>,
    /// A hub stream's producer: when it goes before any consumer attached,
    /// it leaves the name to the worker instead of removing it (see
    /// [`Segment::drop`]). Set once, before the producer is handed out.
    pub(crate) hand_over: AtomicBool,
    /// A consumer that attached to a segment its producer had left to it
    /// (a hub stream whose producer went first): the name it removes when
    /// it goes.
    pub(crate) inherited_name: Option<String>,
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

    fn peer_elsewhere(&self) -> bool {
        !self.in_process
    }

    fn cancel_hand_over(&self) {
        self.hand_over.store(false, Ordering::Relaxed);
    }
}

/// Whether `peer` holds its lock on the segment behind `fd`. An error of
/// the test itself is not evidence of death.
pub(crate) fn peer_holds_lock(fd: &OwnedFd, peer: Side) -> bool {
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
    pub(crate) fn unmap(&mut self) {
        self.fd.forget_mapping();
        // SAFETY: `base..base + reserved` is the reservation made in
        // `map_double`; no reference into it survives the ring handles,
        // which hold the `Arc` this value lives in.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.reserved);
        }
    }

    pub(crate) fn header_ptr(&self) -> *mut Header {
        self.base.as_ptr().cast::<Header>()
    }

    pub(crate) fn magic(&self) -> &AtomicU64 {
        // SAFETY: the mapping starts with the header page and lives as long
        // as `self`; only the atomic field is borrowed, never the whole
        // `Header`, whose plain fields the peer could write.
        unsafe { &*addr_of!((*self.header_ptr()).magic) }
    }

    pub(crate) fn consumer_pid(&self) -> &AtomicU32 {
        // SAFETY: as in `magic`.
        unsafe { &*addr_of!((*self.header_ptr()).consumer_pid) }
    }

    pub(crate) fn ring(self: &Arc<Self>) -> RingMem {
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

/// One fixed mapping inside the reservation: `len` bytes at `at`, of the
/// file behind `fd` from `offset`.
pub(crate) struct Piece<'a> {
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
pub(crate) fn map_double(
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
