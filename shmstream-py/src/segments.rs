//! This user's segments in `/dev/shm`: listing them, and removing those
//! whose owner died (what `ipc-demo clean` does, for a Python operator or
//! a test session after a crash).

use crate::errors::raise;
use pyo3::prelude::*;

/// Names (with their leading `/`) of this user's segments whose name starts
/// with `prefix` (default: the library's prefix), sorted.
#[pyfunction]
#[pyo3(signature = (prefix=None))]
pub(crate) fn list_segments(py: Python<'_>, prefix: Option<String>) -> PyResult<Vec<String>> {
    let prefix = prefix.unwrap_or_else(|| shmstream::DEFAULT_PREFIX.to_string());
    py.detach(|| shmstream::list_segments(&prefix))
        .map_err(|e| raise(py, "SetupFailed", format!("cannot list /dev/shm: {e}")))
}

/// Removes each of this user's segments starting with `prefix` whose
/// producer (or hub worker) is dead, and returns the removed names. A live
/// or starting owner's segment is never removed: the test is the owner's
/// file lock, which the kernel drops when the process dies, so a reused
/// pid cannot fool it. A segment that cannot be checked is left alone.
#[pyfunction]
#[pyo3(signature = (prefix=None))]
pub(crate) fn remove_dead_segments(
    py: Python<'_>,
    prefix: Option<String>,
) -> PyResult<Vec<String>> {
    let names = list_segments(py, prefix)?;
    Ok(py.detach(|| {
        names
            .into_iter()
            .filter(|name| shmstream::remove_if_dead(name).unwrap_or(false))
            .collect()
    }))
}
