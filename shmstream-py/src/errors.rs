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
        StreamError::NotGrown { .. } => "RingFull",
        _ => "StreamError",
    }
}

/// A running stream's error, naming the stream.
pub(crate) fn stream_err(py: Python<'_>, id: &StreamId, e: &StreamError) -> PyErr {
    raise(
        py,
        stream_class(e),
        format!("stream {id}: {}", python_message(e)),
    )
}

/// The core's message in Python's words: it names only Python API, and
/// where the drop-in is stricter than the reference, says what the
/// reference would have done and how to get that.
fn python_message(e: &StreamError) -> String {
    match e {
        StreamError::UnknownId { id } => format!(
            "tensor id {id:?} is not registered (or was already put); register it first with \
             pre_read_register({id:?}). The reference would keep the tensor until the id is \
             registered; here every position is reserved at registration, so register before put"
        ),
        StreamError::AfterDone => "the producer already signalled done; nothing more can be \
             registered. The reference would register it and wait for it again (the stream \
             reopens); here done is final: signal_done() only after the last pre_read_register"
            .to_string(),
        StreamError::NotReady => "no chunk is ready; check has_chunk_ready() first (or wait \
             with next_chunk()). The reference would return the items present as a short chunk \
             and advance by the full stride, so its offsets drift; to take what is there as a \
             last chunk, signal_done() first and the stream flushes it"
            .to_string(),
        StreamError::TooLarge { nbytes, reserved } => format!(
            "a tensor of {nbytes} bytes does not fit in the {reserved} bytes reserved for it; \
             register it with its size: pre_read_register(tensor_id, nbytes), or build the \
             buffer with a larger item_bytes="
        ),
        StreamError::ExceedsPayload {
            nbytes,
            payload_bytes,
        } => format!(
            "a tensor of {nbytes} bytes exceeds the whole payload ring of {payload_bytes} bytes; \
             build the buffer with a larger payload_bytes= (or item_bytes=)"
        ),
        other => other.to_string(),
    }
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
