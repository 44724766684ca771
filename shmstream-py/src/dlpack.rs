//! DLPack export (hand-written structs of `dlpack.h`, v1.0): a capsule
//! named `dltensor` (or `dltensor_versioned`, read-only flag set for the
//! consumer's views) whose deleter drops a keep-alive, the lease on the
//! slots. The deleter needs no GIL: it only drops Rust values.

use crate::spare_capsule;
use pyo3::ffi;
use pyo3::prelude::*;
use shmstream::DType;
use std::ffi::{c_void, CStr};
use std::sync::Arc;

/// What keeps a view's memory valid (a chunk's lease, a producer's slot).
pub(crate) type KeepAlive = Arc<dyn Send + Sync>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
#[derive(Debug)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
#[derive(Debug)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
#[derive(Debug)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct DLManagedTensorVersioned {
    version: DLPackVersion,
    pub(crate) manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

const KDL_CPU: i32 = 1;
const FLAG_READ_ONLY: u64 = 1;
const MAX_NDIM: usize = shmstream::MAX_DIMS + 1;

/// The DLPack device of every view: the CPU, device 0.
pub(crate) const CPU_DEVICE: (i32, i32) = (KDL_CPU, 0);

const NAME: &CStr = c"dltensor";
pub(crate) const NAME_VERSIONED: &CStr = c"dltensor_versioned";

/// A strided tensor in memory kept alive by `keep`. Its dims are in two
/// vectors: held inline (`MAX_NDIM` of each) they saved the two
/// allocations of a pop but cost more in copies of the bigger struct
/// (measured: a pop 35-50 ns slower, issue 24).
#[derive(Clone, Debug)]
pub(crate) struct Strided {
    pub(crate) ptr: *mut u8,
    pub(crate) dtype: DType,
    shape: Vec<u64>,
    /// Strides in bytes.
    strides: Vec<usize>,
}

impl Strided {
    /// `shape` and `strides` (bytes) have one length, at most `MAX_NDIM`:
    /// an item has at most `MAX_DIMS` dims (the core checks every
    /// descriptor), a stacked view one more.
    pub(crate) fn new(ptr: *mut u8, dtype: DType, shape: &[u64], strides: &[usize]) -> Strided {
        let ndim = shape.len();
        assert!(
            ndim <= MAX_NDIM && strides.len() == ndim,
            "a view of {ndim} dims with {} strides (at most {MAX_NDIM})",
            strides.len()
        );
        Strided {
            ptr,
            dtype,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        }
    }

    pub(crate) fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Strides in bytes.
    pub(crate) fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The tensor as an export reads it.
    pub(crate) fn as_ref(&self) -> TensorRef<'_> {
        TensorRef {
            ptr: self.ptr,
            dtype: self.dtype,
            shape: self.shape(),
            strides: self.strides(),
        }
    }

    /// Row `i` of a stacked tensor: item `i`, with the item's shape. No
    /// allocation (a chunk of one item shows row 0).
    ///
    /// # Safety
    /// `i` is below the first dim: the row lies in the view's span.
    pub(crate) unsafe fn row(&self, i: usize) -> TensorRef<'_> {
        TensorRef {
            // SAFETY: the caller's `i < shape[0]`: `i` rows of `strides[0]`
            // bytes each lie in the view's span.
            ptr: unsafe { self.ptr.add(i * self.strides[0]) },
            dtype: self.dtype,
            shape: &self.shape()[1..],
            strides: &self.strides()[1..],
        }
    }

    /// Row 0 of a stacked tensor (see `row`).
    pub(crate) fn first_row(&self) -> TensorRef<'_> {
        // SAFETY: row 0 starts at the view's own address.
        unsafe { self.row(0) }
    }
}

impl TensorRef<'_> {
    pub(crate) fn to_owned(self) -> Strided {
        Strided::new(self.ptr, self.dtype, self.shape, self.strides)
    }
}

/// A borrowed `Strided` (or a part of one): what an export reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TensorRef<'a> {
    pub(crate) ptr: *mut u8,
    pub(crate) dtype: DType,
    pub(crate) shape: &'a [u64],
    /// Strides in bytes.
    pub(crate) strides: &'a [usize],
}

// SAFETY: a `Strided` is a description (address, shape, strides) of memory
// that its holder keeps alive; sending the description to another thread
// reads nothing.
unsafe impl Send for Strided {}
// SAFETY: as for `Send`: shared references only read the description.
unsafe impl Sync for Strided {}

/// The most numpy and DLPack take for a dimension, a stride or a byte
/// size: theirs are int64.
const INT64_MAX: u64 = i64::MAX as u64;

/// Why a tensor of `dtype` and `shape` (byte `strides`) cannot be shown to
/// numpy or DLPack, or None. Their shapes and strides are int64, so a dim
/// or stride of 2^63 or more would wrap negative; and they compute the
/// byte size of the nonzero dims, so that must fit too (a shape such as
/// `[2^62, 2, 0]` holds no byte, and still overflows it).
pub(crate) fn beyond_int64(dtype: DType, shape: &[u64], strides: &[usize]) -> Option<String> {
    if let Some(s) = strides.iter().find(|&&s| s as u64 > INT64_MAX) {
        return Some(format!(
            "a {dtype} tensor of shape {shape:?} has a stride of {s} bytes, past 2^63 - 1, the most numpy and DLPack (int64 strides) take"
        ));
    }
    let span = shape
        .iter()
        .filter(|&&n| n != 0)
        .try_fold(dtype.size() as u64, |acc, &n| acc.checked_mul(n))
        .filter(|&b| b <= INT64_MAX);
    match span {
        Some(_) => None,
        None => Some(format!(
            "a {dtype} tensor of shape {shape:?}: its nonzero dims span 2^63 bytes or more, past 2^63 - 1, the most numpy and DLPack (int64 shapes and sizes) take"
        )),
    }
}

/// Allocated once per export (or held in a lease handle's export room,
/// `dlpack_room.rs`, which builds on this module): the managed
/// tensor first (its address is the capsule's pointer), then the arrays it
/// points into, then the keep-alive (None in a room: its owner is the
/// keep-alive).
#[repr(C)]
pub(crate) struct Export<M> {
    managed: M,
    shape: [i64; MAX_NDIM],
    strides: [i64; MAX_NDIM],
    keep: Option<KeepAlive>,
}

fn dl_dtype(dtype: DType) -> DLDataType {
    let code = match dtype {
        DType::Bool => 6,
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => 0,
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => 1,
        DType::F16 | DType::F32 | DType::F64 => 2,
        DType::BF16 => 4,
    };
    DLDataType {
        code,
        bits: (dtype.size() * 8) as u8,
        lanes: 1,
    }
}

/// Writes `t`'s shape and strides (in elements; zeros past its dims),
/// which `check` accepted.
///
/// # Safety
/// `shape` and `strides` are valid for writes.
unsafe fn write_dims(t: TensorRef<'_>, shape: *mut [i64; MAX_NDIM], strides: *mut [i64; MAX_NDIM]) {
    let size = t.dtype.size();
    // SAFETY: the caller's; arrays of integers, nothing to drop.
    let (shape, strides) = unsafe {
        shape.write([0; MAX_NDIM]);
        strides.write([0; MAX_NDIM]);
        (&mut *shape, &mut *strides)
    };
    for (d, (&n, &s)) in t.shape.iter().zip(t.strides).enumerate() {
        // In range: `check` ran `beyond_int64`.
        shape[d] = n as i64;
        strides[d] = (s / size) as i64;
    }
}

fn tensor(t: TensorRef<'_>) -> DLTensor {
    DLTensor {
        data: t.ptr.cast(),
        device: DLDevice {
            device_type: KDL_CPU,
            device_id: 0,
        },
        ndim: t.shape.len() as i32,
        dtype: dl_dtype(t.dtype),
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    }
}

unsafe extern "C" fn delete_unversioned(managed: *mut DLManagedTensor) {
    // SAFETY: `managed` is the first field of a leaked `Box<Export<_>>`
    // (repr(C)), and DLPack calls the deleter exactly once.
    drop(unsafe { Box::from_raw(managed.cast::<Export<DLManagedTensor>>()) });
}

unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: as in `delete_unversioned`.
    drop(unsafe { Box::from_raw(managed.cast::<Export<DLManagedTensorVersioned>>()) });
}

/// The capsule's destructor: when no consumer took the tensor (the capsule
/// still has its original name), the tensor's own deleter runs here (a
/// boxed export's, or a room's: `dlpack_room`).
unsafe extern "C" fn destroy_unversioned(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with a live capsule; `PyCapsule_IsValid`
    // sets no exception, and a valid capsule of this name holds one of our
    // exports, not yet deleted (a consumer renames it when it takes it).
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, NAME.as_ptr()) == 1 {
            let managed =
                ffi::PyCapsule_GetPointer(capsule, NAME.as_ptr()).cast::<DLManagedTensor>();
            if let Some(delete) = (*managed).deleter {
                delete(managed);
            }
        }
    }
}

pub(crate) unsafe extern "C" fn destroy_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `destroy_unversioned`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, NAME_VERSIONED.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, NAME_VERSIONED.as_ptr())
                .cast::<DLManagedTensorVersioned>();
            if let Some(delete) = (*managed).deleter {
                delete(managed);
            }
        }
    }
}

/// Why `t` has no DLPack form (checked before any export is written).
fn check(t: TensorRef<'_>) -> PyResult<()> {
    if let Some(why) = beyond_int64(t.dtype, t.shape, t.strides) {
        return Err(pyo3::exceptions::PyBufferError::new_err(why));
    }
    let size = t.dtype.size();
    if t.strides.iter().any(|s| s % size != 0) {
        return Err(pyo3::exceptions::PyBufferError::new_err(format!(
            "a row stride of {:?} bytes is not a whole number of {} elements; DLPack cannot express it",
            t.strides,
            t.dtype
        )));
    }
    Ok(())
}

/// Writes a versioned export of `t` at `at`, in place (no copies of the
/// export through return values: about 20 ns of a chunk's `data`), with
/// the read-only flag when `read_only`, deleted by `deleter` with `ctx` as
/// its manager context (None: `at` itself), its tensor pointing into its
/// own dims. Nothing is written when `t` has no DLPack form.
///
/// # Safety
/// `at` is valid for writes of an export, holds none yet (nothing there is
/// dropped), and does not move until the export's deleter runs.
pub(crate) unsafe fn write_versioned(
    at: *mut Export<DLManagedTensorVersioned>,
    t: TensorRef<'_>,
    read_only: bool,
    keep: Option<KeepAlive>,
    ctx: Option<*mut c_void>,
    deleter: unsafe extern "C" fn(*mut DLManagedTensorVersioned),
) -> PyResult<()> {
    check(t)?;
    // SAFETY: the caller's: `at` is writable and stays put, so pointers
    // into its own arrays stay valid as long as the tensor; fields are
    // written, never assigned over (nothing there to drop).
    unsafe {
        let shape = &raw mut (*at).shape;
        let strides = &raw mut (*at).strides;
        write_dims(t, shape, strides);
        (&raw mut (*at).keep).write(keep);
        let mut tensor = tensor(t);
        tensor.shape = shape.cast();
        tensor.strides = strides.cast();
        (&raw mut (*at).managed).write(DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 0 },
            manager_ctx: ctx.unwrap_or(at.cast()),
            deleter: Some(deleter),
            flags: if read_only { FLAG_READ_ONLY } else { 0 },
            dl_tensor: tensor,
        });
    }
    Ok(())
}

/// A DLPack capsule of `t`: versioned (with the read-only flag when
/// `read_only`) when the caller accepts version 1, else the legacy one.
pub(crate) fn capsule(
    py: Python<'_>,
    t: TensorRef<'_>,
    keep: KeepAlive,
    versioned: bool,
    read_only: bool,
) -> PyResult<Py<PyAny>> {
    if versioned {
        let at = Box::into_raw(Box::<Export<DLManagedTensorVersioned>>::new_uninit())
            .cast::<Export<DLManagedTensorVersioned>>();
        // SAFETY: a leaked, uninitialised box: writable, nothing in it to
        // drop, and it does not move until its deleter frees it.
        let written =
            unsafe { write_versioned(at, t, read_only, Some(keep), None, delete_versioned) };
        if let Err(e) = written {
            // SAFETY: the box leaked above, still uninitialised.
            drop(unsafe {
                Box::from_raw(at.cast::<std::mem::MaybeUninit<Export<DLManagedTensorVersioned>>>())
            });
            return Err(e);
        }
        // SAFETY: `at` is a live versioned export, ours to give.
        return unsafe { wrap(py, at.cast()) };
    }
    check(t)?;
    let export = Box::into_raw(Box::new(Export {
        managed: DLManagedTensor {
            dl_tensor: tensor(t),
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(delete_unversioned),
        },
        shape: [0; MAX_NDIM],
        strides: [0; MAX_NDIM],
        keep: Some(keep),
    }));
    // SAFETY: `export` is a live, leaked box; the arrays it points into
    // live in the same allocation, which does not move.
    unsafe {
        write_dims(t, &raw mut (*export).shape, &raw mut (*export).strides);
        (*export).managed.manager_ctx = export.cast();
        (*export).managed.dl_tensor.shape = (*export).shape.as_mut_ptr();
        (*export).managed.dl_tensor.strides = (*export).strides.as_mut_ptr();
    }
    // SAFETY: `export` is non-null, `NAME` a static C string, and the
    // destructor reads an unversioned export.
    let obj =
        unsafe { ffi::PyCapsule_New(export.cast(), NAME.as_ptr(), Some(destroy_unversioned)) };
    if obj.is_null() {
        // SAFETY: the capsule was not made; the export is still ours.
        unsafe { delete_unversioned(export.cast()) };
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new, owned reference.
    Ok(unsafe { Bound::from_owned_ptr(py, obj) }.unbind())
}

/// A `dltensor_versioned` capsule of the export at `managed`: the spare
/// one when there is one (`spare_capsule`), else a new one.
///
/// # Safety
/// `managed` is a live versioned export, ours to give: the capsule owns it
/// (its deleter runs when no consumer takes it, also when this fails).
pub(crate) unsafe fn wrap(
    py: Python<'_>,
    managed: *mut DLManagedTensorVersioned,
) -> PyResult<Py<PyAny>> {
    // SAFETY: the caller's: `managed` is a live versioned export to give.
    if let Some(cap) = unsafe { spare_capsule::reuse(py, managed.cast(), NAME_VERSIONED) } {
        return Ok(cap);
    }
    // SAFETY: `managed` is non-null, the name a static C string, and the
    // destructor reads a versioned export.
    let obj = unsafe {
        ffi::PyCapsule_New(
            managed.cast(),
            NAME_VERSIONED.as_ptr(),
            Some(destroy_versioned),
        )
    };
    if obj.is_null() {
        // SAFETY: the capsule was not made; the export is still ours, and
        // its deleter is set.
        unsafe {
            if let Some(delete) = (*managed).deleter {
                delete(managed);
            }
        }
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new, owned reference.
    Ok(unsafe { Bound::from_owned_ptr(py, obj) }.unbind())
}
