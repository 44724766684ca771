//! Rust errors as the Python exceptions of `shmstream._errors` (one
//! hierarchy under `shmstream.StreamError`), each message naming the stream.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use shmstream::policy::PolicyError;
use shmstream::{SetupError, StreamError, StreamId};

/// Raises `shmstream._errors.<class>(message)`.
pub(crate) fn raise(py: Python<'_>, class: &'static str, message: String) -> PyErr {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import("shmstream._errors").map(Bound::unbind));
    let class: PyResult<Bound<'_, PyType>> = module
        .and_then(|m| m.bind(py).getattr(class))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, message),
        Err(e) => e,
    }
}

/// The class for a stream error.
fn stream_class(e: &StreamError) -> &'static str {
    match e {
        StreamError::Full { .. } => "RingFull",
        StreamError::Timeout { .. } => "StreamTimeout",
        StreamError::AfterDone => "AfterDone",
        StreamError::ConsumerGone => "ConsumerGone",
        StreamError::ProducerGone => "ProducerGone",
        StreamError::BadId { .. } => "BadId",
        StreamError::DuplicateId { .. } => "DuplicateId",
        StreamError::UnknownId { .. } => "UnknownId",
        StreamError::TooLarge { .. }
        | StreamError::ExceedsPayload { .. }
        | StreamError::SizeMismatch { .. }
        | StreamError::TooManyDims { .. }
        | StreamError::ShapeOverflow => "BadTensor",
        StreamError::UnknownDType { .. } => "BadDType",
        StreamError::Abandoned { .. } => "Abandoned",
        StreamError::Unpublished { .. } => "StreamError",
        StreamError::Corrupt(_) => "CorruptStream",
        StreamError::NotReady => "NotReady",
        _ => "StreamError",
    }
}

/// A running stream's error, naming the stream.
pub(crate) fn stream_err(py: Python<'_>, id: &StreamId, e: &StreamError) -> PyErr {
    let hint = match e {
        StreamError::UnknownId { .. } => " (register it first with pre_read_register)",
        _ => "",
    };
    raise(py, stream_class(e), format!("stream {id}: {e}{hint}"))
}

/// A setup error, naming the stream.
pub(crate) fn setup_err(py: Python<'_>, id: &StreamId, e: &SetupError) -> PyErr {
    let class = match e {
        SetupError::NotFound { .. } => "StreamNotFound",
        SetupError::AlreadyExists { .. } => "StreamExists",
        SetupError::InvalidName { .. }
        | SetupError::InvalidConfig(_)
        | SetupError::WindowExceedsCapacity { .. } => "BadConfig",
        SetupError::NoSpace { .. } => "SetupFailed",
        SetupError::HubFull { .. } => "HubFull",
        SetupError::TooManyProducers { .. } => "TooManyProducers",
        SetupError::WorkerGone { .. } => "WorkerGone",
        SetupError::NotAnnounced { .. } => "NotAnnounced",
        SetupError::IdentityMismatch { .. }
        | SetupError::LayoutMismatch { .. }
        | SetupError::LayoutFingerprintMismatch { .. }
        | SetupError::NotInitialized { .. }
        | SetupError::ForeignSegment { .. }
        | SetupError::ConsumerAlreadyAttached { .. } => "SetupFailed",
        _ => "SetupFailed",
    };
    raise(py, class, format!("stream {id}: {e}"))
}

/// A policy that cannot be built.
pub(crate) fn policy_err(py: Python<'_>, name: &str, e: &PolicyError) -> PyErr {
    raise(py, "BadPolicy", format!("chunk policy {name:?}: {e}"))
}
