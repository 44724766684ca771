//! The worker hub from Python (issue 12), the producer's side: `_Hub`, a
//! producer process's attachment to a worker's hub, which creates streams
//! for the worker and announces them.

use crate::errors::setup_err;
use crate::locks::lock;
use crate::producer::PyProducer;
use crate::producer_state::shared as shared_producer;
use crate::stream_set::stream_id;
use crate::timeout::{seconds, slice_of};
use pyo3::prelude::*;
use shmstream::{Hub, StreamConfig};
use std::sync::Mutex;

/// A producer process's attachment to a worker's hub (wrapped by
/// `shmstream.Hub`).
#[pyclass(module = "shmstream._shmstream", name = "_Hub", frozen)]
#[derive(Debug)]
pub(crate) struct PyHub {
    hub: Mutex<Hub>,
    name: String,
    prefix: String,
}

#[pymethods]
impl PyHub {
    #[staticmethod]
    #[pyo3(signature = (worker, prefix=None))]
    fn attach(py: Python<'_>, worker: &str, prefix: Option<String>) -> PyResult<Self> {
        let prefix = prefix.unwrap_or_else(|| shmstream::DEFAULT_PREFIX.to_string());
        let hub_id = stream_id(format!("hub-{worker}"), String::new(), String::new());
        let hub = py
            .detach(|| Hub::attach(worker, &prefix))
            .map_err(|e| setup_err(py, &hub_id, &e))?;
        Ok(PyHub {
            name: hub.name().to_string(),
            hub: Mutex::new(hub),
            prefix,
        })
    }

    /// Creates a stream for the worker and announces it in the hub.
    #[pyo3(signature = (request_id, edge_name, from_partition, capacity, item_bytes, payload_bytes=None, prefix=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_stream(
        &self,
        py: Python<'_>,
        request_id: String,
        edge_name: String,
        from_partition: String,
        capacity: u64,
        item_bytes: u64,
        payload_bytes: Option<u64>,
        prefix: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<PyProducer> {
        let id = stream_id(request_id, edge_name, from_partition);
        let timeout = seconds(py, timeout)?;
        // As `_Producer.create`: the core waits one slice per call, the
        // binding loops over slices checking for Ctrl-C.
        let mut cfg = StreamConfig::new(id.clone())
            .with_capacity(capacity)
            .with_item_bytes(item_bytes)
            .with_timeout(Some(slice_of(timeout)))
            .with_prefix(prefix.as_deref().unwrap_or(&self.prefix));
        if let Some(p) = payload_bytes {
            cfg = cfg.with_payload_bytes(p);
        }
        let producer = py
            .detach(|| lock(&self.hub).create_stream(&cfg))
            .map_err(|e| setup_err(py, &id, &e))?;
        Ok(PyProducer {
            state: shared_producer(producer),
            id,
            timeout,
            grows: None,
        })
    }

    /// The hub's segment name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn prefix(&self) -> &str {
        &self.prefix
    }
}
