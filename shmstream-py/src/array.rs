//! `_array_data`: a numpy array's address, read the way numpy's C API
//! does (the producer's copy path asks it for every array it puts).

use pyo3::prelude::*;

/// The address of a numpy array's first element: the `data` field of
/// numpy's `PyArrayObject` (what the C API's `PyArray_DATA` reads), about
/// 1 us cheaper than `__array_interface__`, which formats the dtype.
/// `shmstream._tensors` checks it against `__array_interface__` at import.
#[pyfunction]
pub(crate) fn _array_data(py: Python<'_>, array: &Bound<'_, PyAny>) -> PyResult<usize> {
    static NDARRAY: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    if !array.is_instance(NDARRAY.import(py, "numpy", "ndarray")?)? {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "_array_data takes a numpy.ndarray, not {}",
            array.get_type().name()?
        )));
    }
    let offset = std::mem::size_of::<pyo3::ffi::PyObject>();
    // SAFETY: `array` is a numpy.ndarray (or a subclass, which extends the
    // same C struct), alive for this call: its object starts with numpy's
    // `PyArrayObject_fields { PyObject_HEAD; char *data; ... }`, a layout
    // that numpy's C API macros compile into every extension and so never
    // changes. The pointer-sized field after the object header is read,
    // aligned (the header is pointer-aligned), and never written.
    let data = unsafe { *array.as_ptr().cast::<u8>().add(offset).cast::<usize>() };
    Ok(data)
}
