//! A one-argument converter called from Rust (`torch._C._from_dlpack`):
//! straight to its C function when it is a builtin taking one argument
//! (`METH_O`), as the interpreter's own call does, with no argument tuple
//! and no dispatch (about 25 ns of a chunk's `data`, issue 24); any other
//! callable through an ordinary call.

use pyo3::ffi;
use pyo3::prelude::*;

#[derive(Debug)]
pub(crate) struct Converter {
    callable: Py<PyAny>,
    /// The builtin's C function and its `self`, for a `METH_O` builtin.
    direct: Option<(ffi::PyCFunction, *mut ffi::PyObject)>,
}

// SAFETY: the function pointer is static code; `self` is an object that
// `callable` keeps alive, used only with the GIL held.
unsafe impl Send for Converter {}
// SAFETY: as for `Send`.
unsafe impl Sync for Converter {}

/// `METH_METHOD` (CPython's `methodobject.h`; not in the limited API's
/// headers that pyo3 mirrors for 3.10).
const METH_METHOD: std::ffi::c_int = 0x0200;

/// The calling conventions a builtin's flags may name.
const CONVENTIONS: std::ffi::c_int = ffi::METH_VARARGS
    | ffi::METH_KEYWORDS
    | ffi::METH_NOARGS
    | ffi::METH_O
    | ffi::METH_FASTCALL
    | METH_METHOD;

impl Converter {
    pub(crate) fn new(callable: Bound<'_, PyAny>) -> Converter {
        let f = callable.as_ptr();
        // SAFETY: `f` is a live object; the getters are called only on a
        // builtin function object (checked first) and set no exception then.
        let direct = unsafe {
            if ffi::PyCFunction_Check(f) != 0
                && ffi::PyCFunction_GetFlags(f) & CONVENTIONS == ffi::METH_O
            {
                ffi::PyCFunction_GetFunction(f).map(|m| (m, ffi::PyCFunction_GetSelf(f)))
            } else {
                None
            }
        };
        Converter {
            callable: callable.unbind(),
            direct,
        }
    }

    pub(crate) fn call(&self, py: Python<'_>, arg: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some((f, slf)) = self.direct else {
            return self.callable.call1(py, (arg,));
        };
        // SAFETY: a `METH_O` builtin's C function takes its `self` and one
        // borrowed argument and returns a new reference or NULL with an
        // exception set; `self` lives as long as `self.callable`.
        let out = unsafe { f(slf, arg.as_ptr()) };
        if out.is_null() {
            Err(PyErr::fetch(py))
        } else {
            // SAFETY: a new, owned reference.
            Ok(unsafe { Bound::from_owned_ptr(py, out) }.unbind())
        }
    }
}
