//! `_Buffer`: the consumer's `StreamBuffer` from Python (wrapped by
//! `shmstream.StreamBuffer`), opened on a segment, in process with its own
//! producer (the reference's drop-in), or a stream of a `StreamSet`.

use crate::chunk::{capture, Chunk};
use crate::errors::{setup_err, stream_err};
use crate::locks::lock;
use crate::policy::{error_slot, policy_arg, raise_policy_error, PolicyError};
use crate::producer::PyProducer;
use crate::producer_state::{self, SharedProducer};
use crate::shared::Shared;
use crate::timeout::seconds;
use pyo3::prelude::*;
use shmstream::{StreamBuffer, StreamConfig, StreamId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The consumer's stream buffer (wrapped by `shmstream.StreamBuffer`).
#[pyclass(module = "shmstream._shmstream", name = "_Buffer", frozen)]
#[derive(Debug)]
pub(crate) struct PyStreamBuffer {
    pub(crate) shared: Arc<Shared>,
    /// The in-process producer of a drop-in buffer.
    pub(crate) producer: Option<SharedProducer>,
    pub(crate) policy: String,
    pub(crate) edges: Mutex<VecDeque<Py<PyAny>>>,
    /// Where a Python policy's exception waits to be raised (None: the
    /// policy is the core's, by name).
    pub(crate) policy_error: Option<PolicyError>,
    /// The Python policy object (None: a policy by name).
    pub(crate) policy_object: Option<Py<PyAny>>,
}

/// The policy argument when it is a Python object, not a name.
pub(crate) fn python_object(policy: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
    (!policy.is_instance_of::<pyo3::types::PyString>()).then(|| policy.clone().unbind())
}

impl PyStreamBuffer {
    /// Raises what the Python policy raised during the last core call.
    fn checked<T>(&self, r: PyResult<T>) -> PyResult<T> {
        raise_policy_error(self.policy_error.as_ref())?;
        r
    }
}

#[pymethods]
impl PyStreamBuffer {
    /// A drop-in buffer: producer and consumer in this process.
    #[staticmethod]
    #[pyo3(signature = (request_id, edge_name, from_partition, policy, capacity, item_bytes, payload_bytes=None, grow=false))]
    #[allow(clippy::too_many_arguments)]
    fn in_process(
        py: Python<'_>,
        request_id: String,
        edge_name: String,
        from_partition: String,
        policy: &Bound<'_, PyAny>,
        capacity: u64,
        item_bytes: u64,
        payload_bytes: Option<u64>,
        grow: bool,
    ) -> PyResult<(Self, PyProducer)> {
        let id = StreamId {
            request_id,
            edge_name,
            from_partition,
        };
        let error = error_slot();
        let (parsed, name) = policy_arg(py, policy, &error)?;
        // A growing buffer starts with room for the policy's window.
        let capacity = crate::grow::first_capacity(&parsed, capacity, grow);
        // No waits in one process: a full ring is an error at once.
        let mut cfg = StreamConfig::new(id.clone())
            .with_capacity(capacity)
            .with_item_bytes(item_bytes)
            .with_timeout(Some(Duration::ZERO));
        if let Some(p) = payload_bytes {
            cfg = cfg.with_payload_bytes(p);
        }
        let made = shmstream::in_process_buffer::<()>(&cfg, parsed);
        raise_policy_error(Some(&error))?;
        let (producer, buf) = made.map_err(|e| setup_err(py, &id, &e))?;
        let state = producer_state::shared(producer);
        let shared = Shared::new(buf, id.clone());
        Ok((
            PyStreamBuffer {
                shared: shared.clone(),
                producer: Some(state.clone()),
                policy: name,
                edges: Mutex::new(VecDeque::new()),
                policy_error: Some(error),
                policy_object: python_object(policy),
            },
            PyProducer {
                state,
                id,
                timeout: Some(Duration::ZERO),
                grows: grow.then_some(shared),
            },
        ))
    }

    /// Opens a stream a `Producer` created in another process.
    #[staticmethod]
    #[pyo3(signature = (request_id, edge_name, from_partition, policy, prefix=None, timeout=None))]
    fn open(
        py: Python<'_>,
        request_id: String,
        edge_name: String,
        from_partition: String,
        policy: &Bound<'_, PyAny>,
        prefix: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let id = StreamId {
            request_id,
            edge_name,
            from_partition,
        };
        let error = error_slot();
        let (parsed, name) = policy_arg(py, policy, &error)?;
        let mut cfg = StreamConfig::new(id.clone()).with_timeout(seconds(py, timeout)?);
        if let Some(p) = &prefix {
            cfg = cfg.with_prefix(p);
        }
        let buf = py
            .detach(|| StreamBuffer::open(&cfg, parsed))
            .map_err(|e| setup_err(py, &id, &e));
        raise_policy_error(Some(&error))?;
        Ok(PyStreamBuffer {
            shared: Shared::new(buf?, id),
            producer: None,
            policy: name,
            edges: Mutex::new(VecDeque::new()),
            policy_error: Some(error),
            policy_object: python_object(policy),
        })
    }

    /// SPEC section 2's `has_chunk_ready`, on a fresh look at the ring.
    fn has_chunk_ready(&self, py: Python<'_>) -> PyResult<bool> {
        let r = self
            .shared
            .with(py, |b| b.has_chunk_ready())
            .map_err(|e| stream_err(py, &self.shared.id, &e));
        self.checked(r)
    }

    /// Pops the next chunk; `NotReady` when none is ready.
    fn pop_chunk(&self, py: Python<'_>) -> PyResult<Chunk> {
        let popped = self
            .shared
            .with(py, |b| b.pop_lease().map(|l| capture(b, l)))
            .map_err(|e| stream_err(py, &self.shared.id, &e));
        let chunk = popped.map(|p| Chunk::new(&self.shared, p));
        self.checked(chunk)
    }

    /// Waits for the next chunk (GIL released, Ctrl-C honoured); None once
    /// the final chunk was popped. `timeout` in seconds, None for ever.
    #[pyo3(signature = (timeout=None))]
    fn next_chunk(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Chunk>> {
        let timeout = seconds(py, timeout)?;
        let failed = || {
            self.policy_error
                .as_ref()
                .is_some_and(|s| lock(s).is_some())
        };
        let popped = self.shared.wait(py, timeout, |b, slice| {
            if failed() {
                return Ok(None);
            }
            Ok(b.next_lease_timeout(Some(slice))?.map(|l| capture(b, l)))
        });
        let chunk = popped.map(|p| p.map(|p| Chunk::new(&self.shared, p)));
        self.checked(chunk)
    }

    /// Global position of the first item still in the buffer.
    #[getter]
    fn consumed(&self, py: Python<'_>) -> u64 {
        self.shared.with(py, |b| b.consumed())
    }

    /// Items of the available prefix not yet discarded.
    fn available(&self, py: Python<'_>) -> PyResult<u64> {
        let r = self
            .shared
            .with(py, |b| b.available())
            .map_err(|e| stream_err(py, &self.shared.id, &e));
        self.checked(r)
    }

    /// Whether the final chunk was popped.
    #[getter]
    fn finished(&self, py: Python<'_>) -> bool {
        self.shared.with(py, |b| b.is_finished())
    }

    /// Chunks popped whose lease is still held (by the chunk or a view).
    #[getter]
    fn live_chunks(&self, py: Python<'_>) -> usize {
        self.shared.with(py, |b| b.live_leases())
    }

    /// Whether the producer signalled done (at the last look).
    #[getter]
    fn producer_done(&self, py: Python<'_>) -> bool {
        self.shared.with(py, |b| b.consumer().is_all_in())
    }

    /// `(address, length)` of the payload as this process maps it.
    #[getter]
    fn payload_region(&self, py: Python<'_>) -> (usize, usize) {
        self.shared.with(py, |b| {
            let (p, n) = b.consumer().payload_region();
            (p as usize, n)
        })
    }

    #[getter]
    fn capacity(&self, py: Python<'_>) -> u64 {
        self.shared.with(py, |b| b.consumer().capacity())
    }

    #[getter]
    fn request_id(&self) -> &str {
        &self.shared.id.request_id
    }

    #[getter]
    fn edge_name(&self) -> &str {
        &self.shared.id.edge_name
    }

    #[getter]
    #[allow(clippy::wrong_self_convention)] // the reference's field name
    fn from_partition(&self) -> &str {
        &self.shared.id.from_partition
    }

    /// The policy's name (`"sliding:window=28,stride=7"`).
    #[getter]
    fn policy_name(&self) -> &str {
        &self.policy
    }

    /// The reference's `store_uningested_edge`: first in, first out.
    fn store_uningested_edge(&self, edge: Py<PyAny>) {
        self.edges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(edge);
    }

    /// The reference's `pop_waiting_edge`: the oldest edge, or None.
    fn pop_waiting_edge(&self) -> Option<Py<PyAny>> {
        self.edges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// The Python policy object, None for a policy by name.
    #[getter]
    fn policy_object(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.policy_object.as_ref().map(|o| o.clone_ref(py))
    }

    /// Whether this buffer has its own in-process producer.
    #[getter]
    fn in_process_producer(&self) -> bool {
        self.producer.is_some()
    }
}
