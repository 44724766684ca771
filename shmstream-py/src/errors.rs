//! Rust errors as the Python exceptions of `shmstream._errors` (one
//! hierarchy under `shmstream.StreamError`), each message naming the stream.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use shmstream::policy::PolicyError;
use shmstream::{AbandonReason, SetupError, StreamError, StreamId};

/// The class `shmstream._errors.<class>`.
fn class_of<'py>(py: Python<'py>, class: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module =
        MODULE.get_or_try_init(py, || py.import("shmstream._errors").map(Bound::unbind))?;
    module
        .bind(py)
        .getattr(class)
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from))
}

/// Raises `shmstream._errors.<class>(message)`.
pub(crate) fn raise(py: Python<'_>, class: &'static str, message: String) -> PyErr {
    match class_of(py, class) {
        Ok(class) => PyErr::from_type(class, message),
        Err(e) => e,
    }
}

/// Whether `e` is a `shmstream._errors.<class>` (or of a subclass).
pub(crate) fn is_a(py: Python<'_>, e: &PyErr, class: &'static str) -> bool {
    class_of(py, class).is_ok_and(|c| e.is_instance(py, &c))
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
    let message = format!("stream {id}: {}", python_message(e));
    match e {
        StreamError::Abandoned {
            position,
            id,
            reason,
        } => abandoned(py, message, *position, id, reason),
        _ => raise(py, stream_class(e), message),
    }
}

/// `Abandoned(message)` with the position, the tensor id and the
/// producer's reason as attributes, so a caller need not parse the text.
fn abandoned(
    py: Python<'_>,
    message: String,
    position: u64,
    id: &str,
    reason: &AbandonReason,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let class = py.import("shmstream._errors")?.getattr("Abandoned")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("position", position)?;
        kwargs.set_item("tensor_id", id)?;
        kwargs.set_item("reason", reason.text())?;
        kwargs.set_item("code", reason.code())?;
        Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
    })();
    made.unwrap_or_else(|e| e)
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
