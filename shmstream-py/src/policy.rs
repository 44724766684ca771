//! Chunk policies by name: the parse every constructor shares, and the
//! module functions that check a name and ask its largest window.

use crate::errors::policy_err;
use pyo3::prelude::*;
use shmstream::policy::Policy;

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
    use shmstream::policy::ChunkPolicy;
    Ok(parse_policy(py, name)?.max_window())
}
