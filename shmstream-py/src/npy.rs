//! numpy arrays of a chunk's tensors made through numpy's C API (the
//! `_ARRAY_API` function table that every numpy C extension calls, looked
//! up once): `PyArray_NewFromDescr` over the slots' memory, read-only,
//! with a capsule holding the keep-alive (the chunk's lease, its `Arc`'s
//! own pointer) as the array's base. `numpy.asarray` of a view's
//! `__array_interface__` costs about 2 us per chunk (a dict of tuples,
//! parsed back), `numpy.from_dlpack` about 0.5 us; this about 0.1 us
//! (issue 24, docs/benchmarks.md).

use crate::dlpack::{beyond_int64, TensorRef};
use crate::view::typestr;
use pyo3::ffi;
use pyo3::prelude::*;
use shmstream::DType;
use std::ffi::{c_int, c_uint, c_void, CStr};
use std::sync::Arc;

type NpyIntp = isize;

type NewFromDescr = unsafe extern "C" fn(
    *mut ffi::PyTypeObject,
    *mut ffi::PyObject,
    c_int,
    *const NpyIntp,
    *const NpyIntp,
    *mut c_void,
    c_int,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
type SetBaseObject = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> c_int;
type FeatureVersion = unsafe extern "C" fn() -> c_uint;

// Slots of the table (numpy's `__multiarray_api.h`, unchanged since
// numpy 1.7 and kept by numpy 2: compiled extensions index it).
const ARRAY_TYPE: usize = 2;
const NEW_FROM_DESCR: usize = 94;
const FEATURE_VERSION: usize = 211;
const SET_BASE_OBJECT: usize = 282;
/// numpy 1.7's C API, the first with `PyArray_SetBaseObject`.
const API_1_7: c_uint = 7;

const MAX_NDIM: usize = shmstream::MAX_DIMS + 1;
const KEEP_NAME: &CStr = c"shmstream.keepalive";

/// What the table gives, looked up once.
struct Api {
    array_type: *mut ffi::PyTypeObject,
    new_from_descr: NewFromDescr,
    set_base: SetBaseObject,
    /// numpy's dtype of each of our dtypes, by code (None for bf16, which
    /// numpy lacks: the general path views it as `ml_dtypes.bfloat16`).
    descrs: Vec<Option<Py<PyAny>>>,
}

// SAFETY: the pointers are numpy's static type object and C functions,
// never written and valid for the process (an extension module is never
// unloaded); the dtype objects are used only with the GIL held.
unsafe impl Send for Api {}
// SAFETY: as for `Send`.
unsafe impl Sync for Api {}

/// The table, or None when numpy (or its C API table) is not there; the
/// general path then says what is missing.
fn api(py: Python<'_>) -> Option<&'static Api> {
    static API: pyo3::sync::PyOnceLock<Option<Api>> = pyo3::sync::PyOnceLock::new();
    API.get_or_init(py, || load(py).ok().flatten()).as_ref()
}

fn load(py: Python<'_>) -> PyResult<Option<Api>> {
    let module = py
        .import("numpy._core._multiarray_umath")
        .or_else(|_| py.import("numpy.core._multiarray_umath"))?;
    let capsule = module.getattr("_ARRAY_API")?;
    // SAFETY: `capsule` is a live object; `PyCapsule_IsValid` sets no
    // exception and checks that it is a capsule with no name, numpy's.
    let table = unsafe {
        if ffi::PyCapsule_IsValid(capsule.as_ptr(), std::ptr::null()) != 1 {
            return Ok(None);
        }
        ffi::PyCapsule_GetPointer(capsule.as_ptr(), std::ptr::null()) as *const *const c_void
    };
    if table.is_null() {
        return Ok(None);
    }
    // SAFETY: numpy's table has these slots in every numpy >= 1.7 (the
    // version is checked before the later slot is read); a slot holds the
    // address of the function (or type object) of that signature.
    let api = unsafe {
        let version: FeatureVersion = std::mem::transmute(*table.add(FEATURE_VERSION));
        if version() < API_1_7 {
            return Ok(None);
        }
        Api {
            array_type: (*table.add(ARRAY_TYPE)).cast_mut().cast(),
            new_from_descr: std::mem::transmute::<*const c_void, NewFromDescr>(
                *table.add(NEW_FROM_DESCR),
            ),
            set_base: std::mem::transmute::<*const c_void, SetBaseObject>(
                *table.add(SET_BASE_OBJECT),
            ),
            descrs: Vec::new(),
        }
    };
    let dtype = py.import("numpy")?.getattr("dtype")?;
    let codes = DType::ALL
        .iter()
        .map(|d| d.code() as usize)
        .max()
        .unwrap_or(0)
        + 1;
    let mut descrs: Vec<Option<Py<PyAny>>> = (0..codes).map(|_| None).collect();
    for d in DType::ALL {
        if d != DType::BF16 {
            descrs[d.code() as usize] = Some(dtype.call1((typestr(d),))?.unbind());
        }
    }
    Ok(Some(Api { descrs, ..api }))
}

/// The base capsule's destructor: drops the `Arc<K>` whose raw pointer
/// `array` stored (a thin pointer: no box around it).
unsafe extern "C" fn drop_keep<K>(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with a live capsule; a valid capsule of this
    // name holds the pointer of an `Arc<K>` (`array` made it with this
    // destructor's `K`), whose reference is given up here, once.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, KEEP_NAME.as_ptr()) == 1 {
            let keep = ffi::PyCapsule_GetPointer(capsule, KEEP_NAME.as_ptr());
            drop(Arc::from_raw(keep.cast::<K>()));
        }
    }
}

/// A read-only numpy array of `t`, its base holding `keep`; None when
/// numpy's C API is not there or numpy has no such dtype (bf16): take the
/// general path.
pub(crate) fn array<K: Send + Sync + 'static>(
    py: Python<'_>,
    t: TensorRef<'_>,
    keep: Arc<K>,
) -> PyResult<Option<Py<PyAny>>> {
    let Some(api) = api(py) else {
        return Ok(None);
    };
    let Some(descr) = api
        .descrs
        .get(t.dtype.code() as usize)
        .and_then(Option::as_ref)
    else {
        return Ok(None);
    };
    if let Some(why) = beyond_int64(t.dtype, t.shape, t.strides) {
        return Err(pyo3::exceptions::PyBufferError::new_err(why));
    }
    let mut dims = [0 as NpyIntp; MAX_NDIM];
    let mut strides = [0 as NpyIntp; MAX_NDIM];
    for (d, (&n, &s)) in t.shape.iter().zip(t.strides).enumerate() {
        // In range: `beyond_int64` checked both.
        dims[d] = n as NpyIntp;
        strides[d] = s as NpyIntp;
    }
    let raw = Arc::into_raw(keep);
    // SAFETY: `raw` is non-null, the name static, the destructor matches
    // the pointer's type.
    let base = unsafe {
        ffi::PyCapsule_New(
            raw.cast_mut().cast(),
            KEEP_NAME.as_ptr(),
            Some(drop_keep::<K>),
        )
    };
    if base.is_null() {
        // SAFETY: the capsule was not made; the reference is still ours.
        drop(unsafe { Arc::from_raw(raw) });
        return Err(PyErr::fetch(py));
    }
    // SAFETY: numpy's functions with their documented contracts:
    // `PyArray_NewFromDescr` steals a reference to the descriptor (one is
    // added for it) and, given `data`, neither copies nor owns the memory;
    // flags 0 make it read-only (the flags of alignment and contiguity are
    // computed from the strides given). The memory (`t.ptr`, the dims and
    // byte strides of the view) stays valid as long as `keep`, which the
    // base holds. `PyArray_SetBaseObject` steals the base's reference,
    // also when it fails.
    unsafe {
        ffi::Py_IncRef(descr.as_ptr());
        let arr = (api.new_from_descr)(
            api.array_type,
            descr.as_ptr(),
            t.shape.len() as c_int,
            dims.as_ptr(),
            strides.as_ptr(),
            t.ptr.cast(),
            0,
            std::ptr::null_mut(),
        );
        if arr.is_null() {
            ffi::Py_DecRef(base);
            return Err(PyErr::fetch(py));
        }
        let arr = Bound::from_owned_ptr(py, arr);
        if (api.set_base)(arr.as_ptr(), base) < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Some(arr.unbind()))
    }
}
