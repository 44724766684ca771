//! Chunk policies: by name (the parse every constructor shares, and the
//! module functions that check a name and ask its largest window), or a
//! Python object with the reference's `ChunkPolicy` methods, called with
//! the GIL.

use crate::errors::{policy_err, raise};
use crate::locks::lock;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmstream::policy::{ChunkPolicy, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The policy a name spells (`"sliding:window=28,stride=7"`), or
/// `BadPolicy` naming what was wrong.
pub(crate) fn parse_policy(py: Python<'_>, name: &str) -> PyResult<Policy> {
    name.parse::<Policy>().map_err(|e| policy_err(py, name, &e))
}

/// Checks a policy name; returns its canonical form.
#[pyfunction]
pub(crate) fn policy_name(py: Python<'_>, name: &str) -> PyResult<String> {
    Ok(parse_policy(py, name)?.to_string())
}

/// The largest window the policy ever asks for.
#[pyfunction]
pub(crate) fn policy_max_window(py: Python<'_>, name: &str) -> PyResult<usize> {
    Ok(parse_policy(py, name)?.max_window())
}

/// Where a Python policy's exception waits until the binding call that
/// consulted it can raise it (the core asks its policy from inside, where
/// no error can pass).
pub(crate) type PolicyError = Arc<Mutex<Option<PyErr>>>;

/// Raises the exception a Python policy left in `slot`, if any.
pub(crate) fn raise_policy_error(slot: Option<&PolicyError>) -> PyResult<()> {
    match slot.and_then(|s| lock(s).take()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A stream's policy: one the core knows by name, or a Python object with
/// the reference's methods (`is_ready(buffer_len)`, `window_size()`,
/// `next_chunk_size(buffer_len)`, `register_chunk(n)`,
/// `continue_after_producer_done()`), called with the GIL.
#[derive(Debug)]
pub(crate) enum AnyPolicy {
    Named(Policy),
    Python(PyPolicy),
}

/// A Python policy object as a core policy.
#[derive(Debug)]
pub(crate) struct PyPolicy {
    obj: Py<PyAny>,
    /// The length the last `is_ready` was asked about: the core asks
    /// `is_ready` before `window` and `stride`, and the reference passes
    /// the buffer's length to `next_chunk_size`.
    last_len: AtomicUsize,
    error: PolicyError,
}

impl PyPolicy {
    /// Calls `method(*args)` and extracts a `T`; on an exception (the
    /// first one is kept for the binding to raise) returns `fallback`.
    fn call<T>(
        &self,
        method: &str,
        args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>,
        fallback: T,
    ) -> T
    where
        T: for<'a, 'py> FromPyObject<'a, 'py>,
    {
        Python::attach(|py| {
            let r = args(py)
                .and_then(|a| self.obj.bind(py).call_method1(method, a))
                .and_then(|v| {
                    v.extract::<T>().map_err(|e| {
                        let e: PyErr = e.into();
                        raise(
                            py,
                            "BadPolicy",
                            format!(
                                "chunk policy {}: {method}() returned {}: {e}",
                                self.describe(py),
                                v.repr().map(|r| r.to_string()).unwrap_or_default()
                            ),
                        )
                    })
                });
            r.unwrap_or_else(|e| {
                self.fail(e);
                fallback
            })
        })
    }

    fn fail(&self, e: PyErr) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn failed(&self) -> bool {
        lock(&self.error).is_some()
    }

    fn describe(&self, py: Python<'_>) -> String {
        self.obj
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "(a Python policy)".to_string())
    }
}

/// The policy `policy` stands for: a name (`"fixed:size=4"`) the core
/// parses, or a Python object (a `ChunkPolicy` subclass) it calls, whose
/// exceptions go to `error`. Returns the policy and its name.
pub(crate) fn policy_arg(
    py: Python<'_>,
    policy: &Bound<'_, PyAny>,
    error: &PolicyError,
) -> PyResult<(AnyPolicy, String)> {
    if let Ok(name) = policy.extract::<String>() {
        let parsed = parse_policy(py, &name)?;
        let canonical = parsed.to_string();
        return Ok((AnyPolicy::Named(parsed), canonical));
    }
    for method in [
        "is_ready",
        "window_size",
        "next_chunk_size",
        "register_chunk",
    ] {
        if !policy.hasattr(method)? {
            return Err(raise(
                py,
                "BadPolicy",
                format!(
                    "chunk policy {}: a policy is a name like 'fixed:size=30' or an object with \
                     the reference's ChunkPolicy methods (is_ready, window_size, \
                     next_chunk_size, register_chunk); this one has no {method}",
                    policy.repr()?
                ),
            ));
        }
    }
    let name = format!("python:{}", policy.get_type().qualname()?);
    Ok((
        AnyPolicy::Python(PyPolicy {
            obj: policy.clone().unbind(),
            last_len: AtomicUsize::new(0),
            error: error.clone(),
        }),
        name,
    ))
}

/// A fresh error slot.
pub(crate) fn error_slot() -> PolicyError {
    Arc::new(Mutex::new(None))
}

impl ChunkPolicy for PyPolicy {
    fn is_ready(&self, available: usize) -> bool {
        self.last_len.store(available, Ordering::Relaxed);
        !self.failed() && self.call("is_ready", |py| PyTuple::new(py, [available]), false)
    }

    fn window(&self) -> usize {
        let window = self.call("window_size", |py| Ok(PyTuple::empty(py)), 0usize);
        let len = self.last_len.load(Ordering::Relaxed);
        if window > len && !self.failed() {
            Python::attach(|py| {
                let e = raise(
                    py,
                    "BadPolicy",
                    format!(
                        "chunk policy {}: is_ready({len}) was true but window_size() is {window}",
                        self.describe(py)
                    ),
                );
                self.fail(e);
            });
        }
        window
    }

    fn stride(&self) -> usize {
        let len = self.last_len.load(Ordering::Relaxed);
        self.call("next_chunk_size", |py| PyTuple::new(py, [len]), 0usize)
    }

    fn register_chunk(&mut self, advanced: usize) {
        Python::attach(|py| {
            if let Err(e) = self
                .obj
                .bind(py)
                .call_method1("register_chunk", (advanced,))
            {
                self.fail(e);
            }
        });
    }

    fn continue_after_done(&self) -> bool {
        Python::attach(|py| {
            let obj = self.obj.bind(py);
            match obj.hasattr("continue_after_producer_done") {
                Ok(true) => {}
                _ => return false,
            }
            obj.call_method0("continue_after_producer_done")
                .and_then(|v| v.is_truthy())
                .unwrap_or_else(|e| {
                    self.fail(e);
                    false
                })
        })
    }

    fn max_window(&self) -> usize {
        Python::attach(|py| {
            let obj = self.obj.bind(py);
            let asked = match obj.getattr("max_window") {
                Ok(v) if !v.is_none() => v,
                _ => return self.call("window_size", |py| Ok(PyTuple::empty(py)), 0usize),
            };
            let asked = if asked.is_callable() {
                asked.call0()
            } else {
                Ok(asked)
            };
            asked
                .and_then(|v| v.extract::<usize>())
                .unwrap_or_else(|e| {
                    self.fail(e);
                    0
                })
        })
    }
}

impl ChunkPolicy for AnyPolicy {
    fn is_ready(&self, available: usize) -> bool {
        match self {
            AnyPolicy::Named(p) => p.is_ready(available),
            AnyPolicy::Python(p) => p.is_ready(available),
        }
    }
    fn window(&self) -> usize {
        match self {
            AnyPolicy::Named(p) => p.window(),
            AnyPolicy::Python(p) => p.window(),
        }
    }
    fn stride(&self) -> usize {
        match self {
            AnyPolicy::Named(p) => p.stride(),
            AnyPolicy::Python(p) => p.stride(),
        }
    }
    fn register_chunk(&mut self, advanced: usize) {
        match self {
            AnyPolicy::Named(p) => p.register_chunk(advanced),
            AnyPolicy::Python(p) => p.register_chunk(advanced),
        }
    }
    fn continue_after_done(&self) -> bool {
        match self {
            AnyPolicy::Named(p) => p.continue_after_done(),
            AnyPolicy::Python(p) => p.continue_after_done(),
        }
    }
    fn primed(&self) -> usize {
        match self {
            AnyPolicy::Named(p) => p.primed(),
            AnyPolicy::Python(p) => p.primed(),
        }
    }
    fn max_window(&self) -> usize {
        match self {
            AnyPolicy::Named(p) => p.max_window(),
            AnyPolicy::Python(p) => p.max_window(),
        }
    }
}
