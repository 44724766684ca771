//! Room for one DLPack export inside the object that keeps its memory
//! alive (a chunk's lease handle): a chunk's `data` tensor is exported from
//! it with no allocation of its own (issue 24). The export holds a strong
//! reference to its owner, so the room outlives every reader of it; a room
//! is taken once and never again, so no export is ever written where an
//! earlier one may still be read. Further exports (a second `__dlpack__`,
//! a race for `data`) are boxed as usual.

use crate::dlpack::{self, DLManagedTensorVersioned, Export, TensorRef};
use pyo3::prelude::*;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(crate) struct ExportRoom {
    taken: AtomicBool,
    export: UnsafeCell<MaybeUninit<Export<DLManagedTensorVersioned>>>,
}

impl Default for ExportRoom {
    fn default() -> Self {
        ExportRoom {
            taken: AtomicBool::new(false),
            export: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

impl std::fmt::Debug for ExportRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRoom")
            .field("taken", &self.taken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// SAFETY: `export` is written once, by the one caller that set `taken`,
// before its address is handed out; afterwards it is only read (and its
// tensor's deleter called once) through that address. Its pointers point
// into itself and at memory its owner keeps alive, whichever thread holds
// the room.
unsafe impl Sync for ExportRoom {}
// SAFETY: as for `Sync`.
unsafe impl Send for ExportRoom {}

/// An owner of an [`ExportRoom`].
pub(crate) trait HasRoom: Send + Sync + Sized + 'static {
    fn room(&self) -> &ExportRoom;
}

/// Drops the owner's reference the export held; the room goes with the
/// owner's last one.
unsafe extern "C" fn delete_in_room<H: HasRoom>(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: the export was made by `capsule_in::<H>`, whose context is
    // an `Arc<H>` turned into a pointer; DLPack calls the deleter once. The
    // pointer is read before the reference goes (the room may go with it).
    unsafe {
        let ctx = (*managed).manager_ctx.cast::<H>();
        drop(Arc::from_raw(ctx));
    }
}

/// A versioned DLPack capsule of `t`, which `owner` keeps alive: exported
/// from `owner`'s room when it is free, else boxed (`dlpack::capsule`).
pub(crate) fn capsule_in<H: HasRoom>(
    py: Python<'_>,
    t: TensorRef<'_>,
    owner: Arc<H>,
    read_only: bool,
) -> PyResult<Py<PyAny>> {
    let room = owner.room();
    // Relaxed: only who writes the room is decided here; its readers get
    // its address from the writer, after the write.
    if room.taken.swap(true, Ordering::Relaxed) {
        return dlpack::capsule(py, t, owner, true, read_only);
    }
    let at = room.export.get().cast::<Export<DLManagedTensorVersioned>>();
    // The room's address is taken before the reference moves into `ctx`.
    let ctx = Arc::into_raw(owner).cast_mut();
    // SAFETY: the room is ours alone (`taken` was clear), never written
    // before, and lies in the owner's allocation, which the reference in
    // `ctx` keeps in place until the export's deleter drops it. The export
    // holds no keep-alive of its own.
    let written = unsafe {
        dlpack::write_versioned(
            at,
            t,
            read_only,
            None,
            Some(ctx.cast()),
            delete_in_room::<H>,
        )
    };
    if let Err(e) = written {
        // SAFETY: the reference made above, which no export holds.
        drop(unsafe { Arc::from_raw(ctx) });
        return Err(e);
    }
    // SAFETY: `at` is a live versioned export, ours to give.
    unsafe { dlpack::wrap(py, at.cast()) }
}
