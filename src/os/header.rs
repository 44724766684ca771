//! A segment's header page as another process wrote it: copied once and
//! checked field by field (magic, version, layout fingerprint, geometry,
//! identity) before anything in it is trusted.

use crate::error::SetupError;
use crate::os::shm::{
    c_name, check_owner, io_err, open_existing, open_flags, os_err, same_file, Access,
};
use crate::protocol::fingerprint::LAYOUT_FINGERPRINT;
use crate::protocol::layout::{
    Control, Geometry, Header, CONTROL_OFFSET, DESCRIPTOR_BYTES, HEADER_BYTES, MAGIC, MAX_ID_LEN,
    SIDE_ENTRY_BYTES, VERSION,
};
use crate::protocol::tensor::MAX_DIMS;
use crate::sync::{AtomicU32, Ordering};
use nix::sys::mman::shm_open;
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::{addr_of, NonNull};
/// A copy of a segment's header, checked.
#[derive(Clone, Debug)]
pub(crate) struct HeaderCopy {
    pub(crate) geometry: Geometry,
    pub(crate) producer_pid: u32,
    pub(crate) names: [String; 3],
}

pub(crate) fn mismatch(
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
pub(crate) struct HeaderPage(NonNull<u8>);

impl HeaderPage {
    pub(crate) fn map(fd: &OwnedFd, name: &str) -> Result<HeaderPage, SetupError> {
        Self::map_with(fd, name, libc::PROT_READ)
    }

    /// `prot` is `PROT_READ`, or `PROT_READ | PROT_WRITE` from a writable
    /// descriptor for a caller that writes a word of the header (only
    /// then may `consumer_pid` be written through).
    pub(crate) fn map_with(
        fd: &OwnedFd,
        name: &str,
        prot: libc::c_int,
    ) -> Result<HeaderPage, SetupError> {
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

    pub(crate) fn consumer_pid(&self) -> &AtomicU32 {
        // SAFETY: the page holds the header at its start and lives as long
        // as `self`; only the atomic field is borrowed, never the `Header`.
        unsafe { &*addr_of!((*self.0.as_ptr().cast::<Header>()).consumer_pid) }
    }

    pub(crate) fn control(&self) -> &Control {
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
pub(crate) fn open_checked(name: &str) -> Result<(OwnedFd, HeaderCopy, HeaderPage), SetupError> {
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
