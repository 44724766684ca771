//! `_Producer`: the writing end of a stream from Python (created by
//! `shmstream.Producer`), which hands out `Slot`s to fill in place or
//! copies a host array in (`put`, `put_many`), waiting for room in
//! slices (Ctrl-C between them).

use crate::errors::{is_a, raise, stream_err};
use crate::host;
use crate::locks::{lock, try_lock};
use crate::producer_state::{meta, meta_of, register, shared, with_state, SharedProducer, State};
use crate::shared::Shared;
use crate::slot::{abandon_reason, PySlot};
use crate::timeout::{seconds, slice_of, sliced, SLICE};
use pyo3::prelude::*;
use shmstream::{BatchItem, Producer, StreamError, StreamId, TensorMeta};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `err` with its message prefixed by the batch item it is about and
/// followed by what became of the batch (same class): "item 3 of the
/// batch: ... (the 3 items before it are published; ...)".
fn batch_context(py: Python<'_>, index: usize, err: PyErr, outcome: &str) -> PyErr {
    let message = err.value(py).to_string();
    let class = err.get_type(py);
    PyErr::from_type(
        class,
        format!("item {index} of the batch: {message} ({outcome})"),
    )
}

/// The writing end of a stream (created by `shmstream.Producer`).
#[pyclass(module = "shmstream._shmstream", name = "_Producer", frozen)]
#[derive(Debug)]
pub(crate) struct PyProducer {
    pub(crate) state: SharedProducer,
    pub(crate) id: StreamId,
    pub(crate) timeout: Option<Duration>,
    /// The buffer of a growing drop-in `StreamBuffer` (built without
    /// sizes): a registration or put that does not fit moves the stream to
    /// a bigger ring and is tried again (`grow.rs`); None for every other
    /// producer, which raises `RingFull` or `BadTensor`.
    pub(crate) grows: Option<Arc<Shared>>,
}

#[pymethods]
impl PyProducer {
    #[staticmethod]
    #[pyo3(signature = (request_id, edge_name, from_partition, capacity, item_bytes, payload_bytes=None, prefix=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        request_id: String,
        edge_name: String,
        from_partition: String,
        capacity: u64,
        item_bytes: u64,
        payload_bytes: Option<u64>,
        prefix: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let id = StreamId {
            request_id,
            edge_name,
            from_partition,
        };
        let timeout = seconds(py, timeout)?;
        // The core producer waits at most one slice per call (its only
        // use of the timeout is `pre_read_register`'s wait for room); the
        // binding loops over slices up to `timeout`, checking for Ctrl-C.
        let mut cfg = shmstream::StreamConfig::new(id.clone())
            .with_capacity(capacity)
            .with_item_bytes(item_bytes)
            .with_timeout(Some(slice_of(timeout)));
        if let Some(p) = payload_bytes {
            cfg = cfg.with_payload_bytes(p);
        }
        if let Some(p) = &prefix {
            cfg = cfg.with_prefix(p);
        }
        let producer = py
            .detach(|| Producer::create(&cfg))
            .map_err(|e| crate::errors::setup_err(py, &id, &e))?;
        Ok(PyProducer {
            state: shared(producer),
            id,
            timeout,
            grows: None,
        })
    }

    /// Reserves the next position for `tensor_id` (`nbytes`, default the
    /// stream's item size) and returns its slot to fill and commit.
    #[pyo3(signature = (tensor_id, nbytes=None, timeout=-1.0))]
    fn register(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        nbytes: Option<u64>,
        timeout: Option<f64>,
    ) -> PyResult<PySlot> {
        let timeout = self.timeout_arg(py, timeout)?;
        let registered = register(py, &self.state, &self.id, tensor_id, nbytes, timeout)?;
        Ok(PySlot::new(
            self.state.clone(),
            self.id.clone(),
            tensor_id,
            registered,
        ))
    }

    /// The reference's `pre_read_register`: reserves the next position for
    /// `tensor_id` until `put` names it; returns its payload offset.
    #[pyo3(signature = (tensor_id, nbytes=None))]
    fn pre_read_register(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        nbytes: Option<u64>,
    ) -> PyResult<u64> {
        // First without waiting, the lock taken at once (as `with_state`):
        // no GIL hand-over, no clock read, for the common case of room.
        if let Some(s) = try_lock(&self.state) {
            let p = s.producer();
            let r = p.try_pre_read_register_sized(tensor_id, nbytes.unwrap_or(p.item_bytes()));
            drop(s); // before any exception is built
            match r {
                Err(StreamError::Full { .. }) => {} // wait for room below
                Err(e) => return Err(stream_err(py, &self.id, &e)),
                Ok(offset) => return Ok(offset),
            }
        }
        // The wait for room runs without the GIL, one slice (the core
        // producer's configured timeout, see `create`) at a time, with
        // Ctrl-C checked in between and the mutex free for other threads.
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            let r = py.detach(|| {
                let s = lock(&self.state);
                match nbytes {
                    Some(n) => s.producer().pre_read_register_sized(tensor_id, n),
                    None => s.producer().pre_read_register(tensor_id),
                }
            });
            match r {
                Err(StreamError::Timeout { .. })
                    if deadline.is_none_or(|d| Instant::now() + SLICE / 10 < d) =>
                {
                    py.check_signals()?;
                }
                Err(StreamError::Timeout { .. }) => {
                    let (capacity, payload) = with_state(py, &self.state, |s| {
                        (s.producer().capacity(), s.producer().payload_bytes())
                    });
                    return Err(raise(
                        py,
                        "RingFull",
                        format!(
                            "stream {}: the ring is full ({capacity} items, {payload} payload bytes) and the consumer released nothing within {:.3} s; pop chunks (and drop them and their views) to make room",
                            self.id,
                            self.timeout.unwrap_or_default().as_secs_f64()
                        ),
                    ));
                }
                Err(e) => return Err(stream_err(py, &self.id, &e)),
                Ok(offset) => return Ok(offset),
            }
        }
    }

    /// The drop-in `StreamBuffer`'s `pre_read_register` (bound to it
    /// without a Python frame): as `pre_read_register`, returning None.
    #[pyo3(signature = (tensor_id, nbytes=None))]
    fn _register_pending(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        nbytes: Option<u64>,
    ) -> PyResult<()> {
        let e = match self.pre_read_register(py, tensor_id, nbytes) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(shared) = &self.grows else {
            return Err(e);
        };
        if !(is_a(py, &e, "RingFull") || is_a(py, &e, "BadTensor")) {
            return Err(e);
        }
        let n = nbytes.unwrap_or_else(|| self.item_bytes(py));
        crate::grow::grow(py, &self.state, shared, None, n)?;
        self.pre_read_register(py, tensor_id, nbytes).map(drop)
    }

    /// The drop-in `StreamBuffer`'s `put` (bound to it without a Python
    /// frame): copies `item` (a contiguous host torch.Tensor or
    /// numpy.ndarray) into the slot `pre_read_register` reserved for
    /// `tensor_id` and commits it. Its fields are read here when `host`
    /// knows its type and dtype, else by `_tensors.host_array`.
    fn _put_item(&self, py: Python<'_>, tensor_id: &str, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(tensor) = host::read(py, item) else {
            return self.put_item_python(py, tensor_id, item);
        };
        let meta = meta_of(py, &self.id, tensor.dtype, tensor.shape())?;
        // `item` stays referenced by the caller for the call: its bytes
        // live until the copy is done.
        self.put_growing(py, tensor_id, meta, tensor.ptr, meta.nbytes() as usize)
    }

    /// Copies `nbytes` from address `ptr` (a contiguous host array the
    /// caller keeps alive) into the slot `pre_read_register` reserved for
    /// `tensor_id`, and commits it.
    fn _put_raw(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        dtype: &str,
        shape: Vec<u64>,
        ptr: usize,
        nbytes: usize,
    ) -> PyResult<()> {
        let meta = meta(py, &self.id, dtype, &shape)?;
        self.put_pending(py, tensor_id, meta, ptr, nbytes)
            .map_err(|e| stream_err(py, &self.id, &e))
    }

    /// `put` by id: into the slot `pre_read_register` reserved for
    /// `tensor_id`, or else (an id not pending) into a newly registered one
    /// of exactly `nbytes` (`_send_raw`), without an exception in between.
    #[pyo3(signature = (tensor_id, dtype, shape, ptr, nbytes, timeout=-1.0))]
    #[allow(clippy::too_many_arguments)]
    fn _put_any_raw(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        dtype: &str,
        shape: Vec<u64>,
        ptr: usize,
        nbytes: usize,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let meta = meta(py, &self.id, dtype, &shape)?;
        match self.put_pending(py, tensor_id, meta, ptr, nbytes) {
            Err(StreamError::UnknownId { .. }) => {
                self._send_raw(py, tensor_id, dtype, shape, ptr, nbytes, timeout)
            }
            r => r.map_err(|e| stream_err(py, &self.id, &e)),
        }
    }

    /// Registers `tensor_id` with exactly `nbytes`, copies `nbytes` from
    /// address `ptr` (a contiguous host array the caller keeps alive) into
    /// the slot and commits it: one copy, without the GIL for large ones.
    #[pyo3(signature = (tensor_id, dtype, shape, ptr, nbytes, timeout=-1.0))]
    #[allow(clippy::too_many_arguments)]
    fn _send_raw(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        dtype: &str,
        shape: Vec<u64>,
        ptr: usize,
        nbytes: usize,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let meta = meta(py, &self.id, dtype, &shape)?;
        shmstream::binding::check_nbytes(&meta, nbytes as u64)
            .map_err(|e| stream_err(py, &self.id, &e))?;
        let timeout = self.timeout_arg(py, timeout)?;
        let (token, dst, _, _, _) = register(
            py,
            &self.state,
            &self.id,
            tensor_id,
            Some(nbytes as u64),
            timeout,
        )?;
        let (src, dst) = (ptr, dst);
        let copy = move |state: &mut State| {
            // The token is this call's alone (no `Slot` object has it).
            let slot = state.take_slot(token).expect("just registered");
            // SAFETY: `src` is the caller's live array of `nbytes` bytes;
            // `dst` is the slot's reservation of exactly `nbytes` bytes,
            // which this handle alone may write until the commit below.
            unsafe {
                std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, nbytes);
            }
            slot.commit(meta).map_err(|refused| refused.error)
        };
        let r = if nbytes >= 1 << 16 {
            py.detach(|| copy(&mut lock(&self.state)))
        } else {
            with_state(py, &self.state, copy)
        };
        r.map_err(|e| stream_err(py, &self.id, &e))
    }

    /// `put_many` of a list of arrays: item `i` is `nbytes[i]` bytes at
    /// address `ptrs[i]` (contiguous host arrays the caller keeps alive),
    /// of `dtypes[i]` and `shapes[i]`, registered under `ids[i]` (`None`:
    /// its stream position). Every item is registered anew, in order, and
    /// published with one doorbell ring per batch (per round that fits).
    #[pyo3(signature = (ids, dtypes, shapes, ptrs, nbytes, timeout=-1.0))]
    #[allow(clippy::too_many_arguments)]
    fn _put_many_raw(
        &self,
        py: Python<'_>,
        ids: Vec<Option<String>>,
        dtypes: Vec<String>,
        shapes: Vec<Vec<u64>>,
        ptrs: Vec<usize>,
        nbytes: Vec<usize>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let n = ids.len();
        if [dtypes.len(), shapes.len(), ptrs.len(), nbytes.len()] != [n; 4] {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "put_many: {n} ids but {} dtypes, {} shapes, {} addresses and {} sizes",
                dtypes.len(),
                shapes.len(),
                ptrs.len(),
                nbytes.len()
            )));
        }
        let mut metas = Vec::with_capacity(n);
        for (i, (dtype, shape)) in dtypes.iter().zip(&shapes).enumerate() {
            metas.push(
                meta(py, &self.id, dtype, shape)
                    .map_err(|e| batch_context(py, i, e, "nothing was published"))?,
            );
        }
        let items: Vec<BatchItem<'_>> = (0..n)
            .map(|i| BatchItem {
                id: ids[i].as_deref(),
                meta: metas[i],
                // SAFETY: each (address, size) is a live contiguous host
                // array the Python caller keeps alive (`host_array`'s
                // keepalive) until this call returns; the slices are only
                // read, by put_many's copy, within this call.
                bytes: unsafe { std::slice::from_raw_parts(ptrs[i] as *const u8, nbytes[i]) },
            })
            .collect();
        let timeout = self.timeout_arg(py, timeout)?;
        self.put_items(py, &items, timeout)
    }

    /// `put_many` of one stacked array: `n = len(ids)` items of
    /// `item_nbytes` bytes each, back to back from address `ptr` (a
    /// contiguous host array `[n, *item_shape]` the caller keeps alive),
    /// each of `dtype` and `item_shape`.
    #[pyo3(signature = (ids, dtype, item_shape, ptr, item_nbytes, timeout=-1.0))]
    #[allow(clippy::too_many_arguments)]
    fn _put_stacked_raw(
        &self,
        py: Python<'_>,
        ids: Vec<Option<String>>,
        dtype: &str,
        item_shape: Vec<u64>,
        ptr: usize,
        item_nbytes: usize,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let meta = meta(py, &self.id, dtype, &item_shape)?;
        let items: Vec<BatchItem<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| BatchItem {
                id: id.as_deref(),
                meta,
                // SAFETY: `ptr` starts the caller's live contiguous array
                // of `len(ids) * item_nbytes` bytes (the wrapper checked its
                // first dimension), kept alive until this call returns; row
                // `i` is the `item_nbytes` bytes from `i * item_nbytes`.
                bytes: unsafe {
                    std::slice::from_raw_parts((ptr as *const u8).add(i * item_nbytes), item_nbytes)
                },
            })
            .collect();
        let timeout = self.timeout_arg(py, timeout)?;
        self.put_items(py, &items, timeout)
    }

    /// Commits the slot of `tensor_id` whose bytes were written in place.
    fn put_in_place(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        dtype: &str,
        shape: Vec<u64>,
    ) -> PyResult<()> {
        let meta = meta(py, &self.id, dtype, &shape)?;
        let r = with_state(py, &self.state, |s| {
            s.producer().put_in_place(tensor_id, meta)
        });
        r.map_err(|e| stream_err(py, &self.id, &e))
    }

    /// Gives up the position `pre_read_register` reserved for `tensor_id`
    /// (the consumer's `Abandoned` carries `reason` and `code`); `UnknownId`
    /// for an id not pending (never registered, put or given up already, or
    /// held as a `Slot`, which is abandoned through the slot).
    #[pyo3(signature = (tensor_id, reason=None, code=0))]
    fn abandon(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        reason: Option<&str>,
        code: i64,
    ) -> PyResult<()> {
        let reason = abandon_reason(reason, code)?;
        // Published through the producer's ring: under the lock (`State`).
        with_state(py, &self.state, |s| s.producer().abandon(tensor_id, reason))
            .map_err(|e| stream_err(py, &self.id, &e))
    }

    /// Adaptive batching (issue 24): `max_items` > 0 stages one-by-one
    /// commits that continue the producer's run (the consumer takes the
    /// run when it looks; every commit still wakes a sleeping consumer);
    /// `None` or 0 turns it off and publishes the held run.
    #[pyo3(signature = (max_items))]
    fn set_batching(&self, py: Python<'_>, max_items: Option<u64>) {
        with_state(py, &self.state, |s| s.producer().set_batching(max_items));
    }

    /// The longest run a commit may stage; `None` when batching is off.
    #[getter]
    fn batching(&self, py: Python<'_>) -> Option<u64> {
        with_state(py, &self.state, |s| s.producer().batching())
    }

    /// Publishes the run held by adaptive batching.
    fn flush(&self, py: Python<'_>) {
        with_state(py, &self.state, |s| s.producer().flush());
    }

    /// The producer's last word: nothing more will be registered.
    fn signal_done(&self, py: Python<'_>) {
        with_state(py, &self.state, |s| s.producer().signal_done());
    }

    /// Waits until the consumer released every item (GIL released).
    #[pyo3(signature = (timeout=None))]
    fn wait_drained(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(py, timeout)?;
        sliced(py, &self.id, timeout, |slice| {
            lock(&self.state).producer().wait_drained(Some(slice))
        })
    }

    #[getter]
    fn capacity(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer().capacity())
    }

    #[getter]
    fn item_bytes(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer().item_bytes())
    }

    #[getter]
    fn payload_bytes(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer().payload_bytes())
    }

    #[getter]
    fn registered(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer().registered())
    }

    /// `(address, length)` of the payload mapping.
    #[getter]
    fn payload_region(&self, py: Python<'_>) -> (usize, usize) {
        with_state(py, &self.state, |s| {
            let (p, n) = s.producer().payload_region();
            (p as usize, n)
        })
    }

    #[getter]
    fn request_id(&self) -> &str {
        &self.id.request_id
    }

    #[getter]
    fn edge_name(&self) -> &str {
        &self.id.edge_name
    }

    #[getter]
    #[allow(clippy::wrong_self_convention)] // the reference's field name
    fn from_partition(&self) -> &str {
        &self.id.from_partition
    }
}

impl PyProducer {
    /// `_put_item` of an item `host` does not read: `host_array` checks it
    /// (and raises what is wrong with it); once put, `host` learns its
    /// type and dtype.
    fn put_item_python(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        item: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        static HOST_ARRAY: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let host_array = HOST_ARRAY.get_or_try_init(py, || {
            py.import("shmstream._tensors")?
                .getattr("host_array")
                .map(Bound::unbind)
        })?;
        let fields = host_array.call1(py, (item,))?;
        // The fifth field keeps the array alive: `item` itself, or the
        // array a numpy scalar became.
        let (dtype, shape, ptr, nbytes, _keep): (String, Vec<u64>, usize, usize, Bound<'_, PyAny>) =
            fields.extract(py)?;
        let meta = meta(py, &self.id, &dtype, &shape)?;
        self.put_growing(py, tensor_id, meta, ptr, nbytes)?;
        host::learn(py, item, meta.dtype());
        Ok(())
    }

    /// [`put_pending`](Self::put_pending); for a growing buffer, an item
    /// larger than its reservation moves the stream to a bigger ring first
    /// (once) and goes in there.
    fn put_growing(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        meta: TensorMeta,
        ptr: usize,
        nbytes: usize,
    ) -> PyResult<()> {
        let e = match self.put_pending(py, tensor_id, meta, ptr, nbytes) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let grown = match (&self.grows, &e) {
            (Some(shared), StreamError::TooLarge { .. } | StreamError::ExceedsPayload { .. }) => {
                crate::grow::grow(py, &self.state, shared, Some(tensor_id), nbytes as u64)?
            }
            _ => false,
        };
        if !grown {
            return Err(stream_err(py, &self.id, &e));
        }
        self.put_pending(py, tensor_id, meta, ptr, nbytes)
            .map_err(|e| stream_err(py, &self.id, &e))
    }

    /// Copies `nbytes` from `ptr` into the slot `pre_read_register` reserved
    /// for `tensor_id` and commits it (without the GIL for large copies).
    fn put_pending(
        &self,
        py: Python<'_>,
        tensor_id: &str,
        meta: TensorMeta,
        ptr: usize,
        nbytes: usize,
    ) -> Result<(), StreamError> {
        shmstream::binding::check_nbytes(&meta, nbytes as u64)?;
        let put = move |state: &mut State| {
            // SAFETY: the Python caller passes the address and size of a
            // contiguous host array it holds a reference to for the call.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, nbytes) };
            state.producer().put(tensor_id, meta, bytes)
        };
        // Large copies run without the GIL.
        if nbytes >= 1 << 16 {
            py.detach(|| put(&mut lock(&self.state)))
        } else {
            with_state(py, &self.state, put)
        }
    }

    /// `-1.0` (the default) means the stream's timeout; `None` for ever.
    /// Publishes `items` with `put_many`, without the GIL, in waits of at
    /// most one slice (Ctrl-C checked between them) up to `timeout`.
    fn put_items(
        &self,
        py: Python<'_>,
        items: &[BatchItem<'_>],
        timeout: Option<Duration>,
    ) -> PyResult<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut done = 0;
        while done < items.len() {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            let rest = &items[done..];
            let r = py.detach(|| {
                lock(&self.state)
                    .producer()
                    .put_many_timeout(rest, Some(slice))
            });
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    done += e.index;
                    match e.error {
                        StreamError::Timeout { .. }
                            if deadline.is_none_or(|d| Instant::now() < d) =>
                        {
                            py.check_signals()?;
                        }
                        StreamError::Timeout { .. } => {
                            let (capacity, payload) = with_state(py, &self.state, |s| {
                                (s.producer().capacity(), s.producer().payload_bytes())
                            });
                            return Err(raise(
                                py,
                                "RingFull",
                                format!(
                                    "stream {}: item {done} of the batch: the ring is full ({capacity} items, {payload} payload bytes) and the consumer released nothing within {:.3} s; the {done} items before it are published, it and the rest are not",
                                    self.id,
                                    timeout.unwrap_or_default().as_secs_f64()
                                ),
                            ));
                        }
                        other => {
                            let before = format!(
                                "the {done} items before it are published; it and the rest are not"
                            );
                            return Err(batch_context(
                                py,
                                done,
                                stream_err(py, &self.id, &other),
                                &before,
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn timeout_arg(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Duration>> {
        match timeout {
            Some(-1.0) => Ok(self.timeout),
            t => seconds(py, t),
        }
    }
}
