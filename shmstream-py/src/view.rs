//! `_View`: a tensor in a chunk's slots or a producer's slot, as numpy
//! (`__array_interface__`) and DLPack (`__dlpack__`) see it, and the
//! checks of the DLPack keyword arguments every exporter shares.

use crate::dlpack::{self, KeepAlive, Strided};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A tensor in a chunk's slots (or a producer's slot): numpy reads it
/// through `__array_interface__` (keeping this object as the array's
/// base), torch and numpy through `__dlpack__`.
#[pyclass(module = "shmstream._shmstream", name = "_View", frozen)]
pub(crate) struct View {
    pub(crate) t: Strided,
    pub(crate) keep: KeepAlive,
    pub(crate) writable: bool,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "_View({} {:?})", self.t.dtype, self.t.shape())
    }
}

/// numpy's type string of a dtype (`None` for bf16, which numpy reads as
/// `u16` and views as `ml_dtypes.bfloat16`).
pub(crate) fn typestr(dtype: shmstream::DType) -> &'static str {
    use shmstream::DType::*;
    match dtype {
        Bool => "|b1",
        U8 => "|u1",
        I8 => "|i1",
        I16 => "<i2",
        U16 | BF16 => "<u2",
        I32 => "<i4",
        U32 => "<u4",
        I64 => "<i8",
        U64 => "<u8",
        F16 => "<f2",
        F32 => "<f4",
        F64 => "<f8",
    }
}

#[pymethods]
impl View {
    /// numpy's array interface (version 3), read-only for a chunk's view.
    #[getter]
    pub(crate) fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(why) = dlpack::beyond_int64(self.t.dtype, self.t.shape(), self.t.strides()) {
            return Err(pyo3::exceptions::PyBufferError::new_err(why));
        }
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("typestr", typestr(self.t.dtype))?;
        d.set_item("shape", PyTuple::new(py, self.t.shape())?)?;
        d.set_item("strides", PyTuple::new(py, self.t.strides())?)?;
        d.set_item("data", (self.t.ptr as usize, !self.writable))?;
        Ok(d)
    }

    /// The element type's name (`"f32"`, `"bf16"`, ...).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.t.dtype.name()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.t.shape())
    }

    /// Strides in bytes.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.t.strides())
    }

    /// Address of the first element.
    #[getter]
    fn data_ptr(&self) -> usize {
        self.t.ptr as usize
    }

    #[getter]
    fn readonly(&self) -> bool {
        !self.writable
    }

    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let versioned = dlpack_args(stream.as_ref(), max_version, dl_device, copy)?;
        dlpack::capsule(
            py,
            self.t.as_ref(),
            self.keep.clone(),
            versioned,
            !self.writable,
        )
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        dlpack::CPU_DEVICE
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstream view {} {:?}{}>",
            self.t.dtype,
            self.t.shape(),
            if self.writable { "" } else { " read-only" }
        )
    }
}

/// Checks the DLPack keyword arguments (host memory, no copy asked for)
/// and says whether the caller takes a versioned (DLPack 1.x) capsule.
pub(crate) fn dlpack_args(
    stream: Option<&Bound<'_, PyAny>>,
    max_version: Option<(u32, u32)>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<bool> {
    if let Some(s) = stream {
        if !s.is_none() && s.extract::<i64>().map_or(true, |v| v != -1) {
            // The CPU has no streams; the array API asks producers to
            // accept None (and -1) and refuse others.
            return Err(pyo3::exceptions::PyValueError::new_err(
                "shmstream tensors live in host memory: __dlpack__ takes stream=None",
            ));
        }
    }
    if let Some(dev) = dl_device {
        if dev != dlpack::CPU_DEVICE {
            return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "shmstream tensors live in host memory (device (1, 0)); device {dev:?} needs a copy"
            )));
        }
    }
    if copy == Some(true) {
        return Err(pyo3::exceptions::PyBufferError::new_err(
            "shmstream exports views of shared memory, never copies (copy=True); copy the result instead",
        ));
    }
    Ok(max_version.is_some_and(|(major, _)| major >= 1))
}
