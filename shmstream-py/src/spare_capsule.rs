//! One spare DLPack capsule object, reused for the next export: a chunk's
//! `data` hands torch a capsule that torch only renames (`used_...`) and
//! lets go of, so the object itself is kept and repointed rather than
//! freed and made anew (about 10-20 ns of a chunk's `data`, issue 24).
//!
//! A capsule is kept only when nobody else holds it and a consumer took
//! its export (its name is no longer the export's): its pointer is then
//! stale, and its destructor, which checks the name, never reads it. It is
//! repointed and renamed before anyone else sees it.

use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The spare capsule, owned (one reference), or null.
static SPARE: AtomicPtr<ffi::PyObject> = AtomicPtr::new(null_mut());

/// The spare capsule pointing at `export` under `name`, or None when there
/// is no spare.
///
/// # Safety
/// `export` is what a capsule named `name` holds with the destructor the
/// spare was made with (`keep`'s caller made it so), ours to give.
pub(crate) unsafe fn reuse(
    py: Python<'_>,
    export: *mut std::ffi::c_void,
    name: &'static CStr,
) -> Option<Py<PyAny>> {
    // Swapped, not read: whoever takes it has it alone.
    let cap = SPARE.swap(null_mut(), Ordering::Acquire);
    if cap.is_null() {
        return None;
    }
    // SAFETY: `cap` is a live capsule nobody else holds (see `keep`), and
    // `export` is non-null; the pointer is set before the name makes the
    // capsule valid again. Neither call fails on a valid capsule.
    unsafe {
        ffi::PyCapsule_SetPointer(cap, export);
        ffi::PyCapsule_SetName(cap, name.as_ptr());
        Some(Bound::from_owned_ptr(py, cap).unbind())
    }
}

/// Keeps `cap`, a capsule `dlpack::wrap` made (named `name`, with its
/// destructor), as the spare when it is the last reference and a consumer
/// took its export (it is no longer valid under `name`); else drops it.
pub(crate) fn keep(py: Python<'_>, cap: Py<PyAny>, name: &'static CStr) {
    let p = cap.as_ptr();
    // SAFETY: `p` is live (we hold it); with the GIL held its count is
    // exact, and `PyCapsule_IsValid` sets no exception.
    let spent = unsafe { ffi::Py_REFCNT(p) == 1 && ffi::PyCapsule_IsValid(p, name.as_ptr()) == 0 };
    if !spent {
        return;
    }
    let old = SPARE.swap(cap.into_ptr(), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: the old spare's one reference, ours now; the GIL is held.
        drop(unsafe { Bound::from_owned_ptr(py, old) });
    }
}
