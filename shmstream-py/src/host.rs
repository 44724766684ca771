//! The fields of a host tensor read in Rust, for the drop-in's `put`: an
//! exact `torch.Tensor` or `numpy.ndarray` whose dtype was seen before.
//! Anything else (a first dtype, a subclass, a CUDA or non-contiguous
//! tensor, a list) goes the Python way (`_tensors.host_array`), which
//! raises the errors and teaches this module the dtype.
//!
//! Why: `host_array` and the call that passes its five results cost about
//! 1 us per item, most of it in Python frames and in building the
//! `(dtype, shape, ...)` tuple; read here, a torch tensor costs its five
//! attribute reads and a numpy array none.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple};
use pyo3::{ffi, intern};
use shmstream::{DType, MAX_DIMS};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// What a copy needs of a host tensor: its dtype, shape and address (its
/// bytes are the product of the shape times the element size, contiguous).
#[derive(Debug)]
pub(crate) struct HostTensor {
    pub(crate) dtype: DType,
    dims: [u64; MAX_DIMS],
    ndim: usize,
    pub(crate) ptr: usize,
}

impl HostTensor {
    pub(crate) fn shape(&self) -> &[u64] {
        &self.dims[..self.ndim]
    }
}

/// dtype objects (torch dtypes, numpy descrs) by address. Each one's
/// reference is kept for ever, so an address never comes to name another
/// object; there are a few per process (bounded by `MAX_DTYPES`).
static DTYPES: Mutex<Vec<(usize, DType)>> = Mutex::new(Vec::new());
const MAX_DTYPES: usize = 64;

/// The exact types read here: `torch.Tensor`, `numpy.ndarray` (0: not
/// seen yet). Type objects of imported modules live as long as the
/// process; a reference is kept anyway.
static TORCH_TENSOR: AtomicUsize = AtomicUsize::new(0);
static NDARRAY: AtomicUsize = AtomicUsize::new(0);

/// The dtype of the dtype object at `address`, if [`learn`] saw it.
fn known_dtype(address: usize) -> Option<DType> {
    let known = DTYPES.lock().unwrap_or_else(|e| e.into_inner());
    known.iter().find(|(a, _)| *a == address).map(|(_, d)| *d)
}

/// The fields of `item` when it is an exact torch tensor or numpy array
/// of a dtype [`learn`]t before; `None`: take the Python way.
pub(crate) fn read(py: Python<'_>, item: &Bound<'_, PyAny>) -> Option<HostTensor> {
    let ty = item.get_type().as_ptr() as usize;
    if ty == TORCH_TENSOR.load(Ordering::Relaxed) {
        read_torch(py, item)
    } else if ty == NDARRAY.load(Ordering::Relaxed) {
        read_numpy(item)
    } else {
        None
    }
}

fn read_torch(py: Python<'_>, item: &Bound<'_, PyAny>) -> Option<HostTensor> {
    let dtype = known_dtype(item.getattr(intern!(py, "dtype")).ok()?.as_ptr() as usize)?;
    let yes = PyBool::new(py, true);
    // A CUDA pointer or a strided/expanded view would be read wrongly (or
    // out of bounds) as `numel` contiguous host bytes: the Python way
    // raises for those.
    if !item.getattr(intern!(py, "is_cpu")).ok()?.is(&*yes) {
        return None;
    }
    if !item
        .call_method0(intern!(py, "is_contiguous"))
        .ok()?
        .is(&*yes)
    {
        return None;
    }
    let shape = item.getattr(intern!(py, "shape")).ok()?;
    let shape = shape.cast::<PyTuple>().ok()?; // torch.Size is a tuple
    let ndim = shape.len();
    if ndim > MAX_DIMS {
        return None;
    }
    let mut dims = [0u64; MAX_DIMS];
    for (d, dim) in dims.iter_mut().zip(shape.iter()) {
        *d = dim.extract().ok()?;
    }
    let ptr = item
        .call_method0(intern!(py, "data_ptr"))
        .ok()?
        .extract()
        .ok()?;
    Some(HostTensor {
        dtype,
        dims,
        ndim,
        ptr,
    })
}

/// numpy's `PyArrayObject_fields` up to `flags`, the layout its C API
/// macros (`PyArray_DATA`, `PyArray_NDIM`, `PyArray_DIMS`,
/// `PyArray_FLAGS`) compile into every extension, unchanged from numpy 1
/// to 2. Used only once [`numpy_fields_agree`] checked it on this numpy.
#[repr(C)]
struct ArrayFields {
    head: ffi::PyObject,
    data: *mut u8,
    nd: libc_int,
    dimensions: *const isize,
    strides: *const isize,
    base: *mut ffi::PyObject,
    descr: *mut ffi::PyObject,
    flags: libc_int,
}

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

/// `NPY_ARRAY_C_CONTIGUOUS`.
const C_CONTIGUOUS: libc_int = 0x0001;

/// The fields of an ndarray.
///
/// # Safety
///
/// `array` is a `numpy.ndarray` (or a subclass, which extends the same C
/// struct) whose layout [`numpy_fields_agree`] confirmed.
unsafe fn fields<'a>(array: &'a Bound<'_, PyAny>) -> (usize, &'a [isize], libc_int, usize) {
    // SAFETY: per the contract, `array` points to an `ArrayFields`-shaped
    // object, alive (borrowed) for the returned lifetime; `dimensions`
    // holds `nd` entries owned by the array.
    unsafe {
        let f = &*array.as_ptr().cast::<ArrayFields>();
        let dims = if f.nd <= 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(f.dimensions, f.nd as usize)
        };
        (f.data as usize, dims, f.flags, f.descr as usize)
    }
}

/// Whether the fields read from arrays of this numpy agree with what its
/// Python attributes say, on a contiguous and a non-contiguous array
/// (checked once per process).
fn numpy_fields_agree(py: Python<'_>) -> bool {
    static AGREE: OnceLock<bool> = OnceLock::new();
    *AGREE.get_or_init(|| check_numpy_fields(py).unwrap_or(false))
}

fn check_numpy_fields(py: Python<'_>) -> PyResult<bool> {
    let np = py.import("numpy")?;
    let base = np
        .call_method1("arange", (24,))?
        .call_method1("reshape", ((2, 3, 4),))?;
    let sliced = base.get_item(1)?; // an offset into `base`
    let transposed = base.getattr("T")?;
    for array in [base, sliced, transposed] {
        // SAFETY: `array` is a numpy.ndarray (numpy made it); the layout
        // is what this check is about, and only these leading fields,
        // present in every numpy version, are read.
        let (data, dims, flags, descr) = unsafe { fields(&array) };
        let interface = array.getattr("__array_interface__")?;
        let expected_data: usize = interface.get_item("data")?.get_item(0)?.extract()?;
        let shape: Vec<isize> = array.getattr("shape")?.extract()?;
        let contiguous: bool = array.getattr("flags")?.getattr("c_contiguous")?.extract()?;
        let expected_descr = array.getattr("dtype")?.as_ptr() as usize;
        if data != expected_data
            || dims != shape.as_slice()
            || (flags & C_CONTIGUOUS != 0) != contiguous
            || descr != expected_descr
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_numpy(item: &Bound<'_, PyAny>) -> Option<HostTensor> {
    if !NUMPY_FIELDS.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: `item`'s type is exactly numpy.ndarray (checked by `read`),
    // and `learn` set `NUMPY_FIELDS` only once `numpy_fields_agree`.
    let (ptr, shape, flags, descr) = unsafe { fields(item) };
    if flags & C_CONTIGUOUS == 0 || shape.len() > MAX_DIMS {
        return None;
    }
    let dtype = known_dtype(descr)?;
    let mut dims = [0u64; MAX_DIMS];
    for (d, &dim) in dims.iter_mut().zip(shape) {
        *d = u64::try_from(dim).ok()?;
    }
    Some(HostTensor {
        dtype,
        dims,
        ndim: shape.len(),
        ptr,
    })
}

/// Whether numpy arrays are read here (their layout checked).
static NUMPY_FIELDS: AtomicBool = AtomicBool::new(false);

/// Remembers, after the Python way accepted `item` with dtype `dtype`,
/// its type (if an exact torch tensor or numpy array) and its dtype
/// object, so that the next such item is read here.
pub(crate) fn learn(py: Python<'_>, item: &Bound<'_, PyAny>, dtype: DType) {
    let ty = item.get_type();
    let Ok(dtype_object) = item.getattr(intern!(py, "dtype")) else {
        return;
    };
    let is = |module: &str, name: &str| {
        py.import(module)
            .and_then(|m| m.getattr(name))
            .is_ok_and(|t| t.is(&ty))
    };
    let torch_loaded = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|m| m.contains("torch"))
        .unwrap_or(false);
    let address = ty.as_ptr() as usize;
    let kind = if torch_loaded && is("torch", "Tensor") {
        &TORCH_TENSOR
    } else if is("numpy", "ndarray") && numpy_fields_agree(py) {
        NUMPY_FIELDS.store(true, Ordering::Relaxed);
        &NDARRAY
    } else {
        return;
    };
    if kind.load(Ordering::Relaxed) != address {
        keep(ty.as_any());
        kind.store(address, Ordering::Relaxed);
    }
    let mut known = DTYPES.lock().unwrap_or_else(|e| e.into_inner());
    let address = dtype_object.as_ptr() as usize;
    if known.len() < MAX_DTYPES && !known.iter().any(|(a, _)| *a == address) {
        keep(&dtype_object);
        known.push((address, dtype));
    }
}

/// Keeps a reference to `object` for the rest of the process, so that its
/// address names it alone.
fn keep(object: &Bound<'_, PyAny>) {
    std::mem::forget(object.clone().unbind());
}
