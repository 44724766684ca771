//! `list_segments`: this user's shmstream segments, for tools and tests.

use crate::errors::raise;
use pyo3::prelude::*;

/// Lists this user's shmstream segments: `(name, request_id, edge_name,
/// from_partition)` ... as strings (for tools and tests).
#[pyfunction]
#[pyo3(signature = (prefix=None))]
pub(crate) fn list_segments(py: Python<'_>, prefix: Option<String>) -> PyResult<Vec<String>> {
    let prefix = prefix.unwrap_or_else(|| shmstream::DEFAULT_PREFIX.to_string());
    shmstream::list_segments(&prefix)
        .map(|v| v.into_iter().map(|s| format!("{s:?}")).collect())
        .map_err(|e| raise(py, "SetupFailed", e.to_string()))
}
