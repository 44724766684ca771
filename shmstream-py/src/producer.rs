//! The producer's side: `_Producer` and its `Slot`s, whose memory Python
//! fills in place (numpy through `__array_interface__`, torch through
//! `__dlpack__`), then commits.

use crate::consumer::{dlpack_args, try_lock, View, SLICE};
use crate::dlpack::{self, KeepAlive, Strided};
use crate::errors::{raise, stream_err};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmstream::{BatchItem, DType, Producer, Slot, StreamError, StreamId, TensorMeta};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The producer and the slots Python holds, behind one mutex.
pub(crate) struct State {
    /// Declared first: dropped before the producer they borrow.
    slots: HashMap<u64, Slot<'static>>,
    next_token: u64,
    producer: Box<Producer>,
}

// SAFETY: `Producer` and `Slot` are not `Sync` (their `RefCell`s), so a
// `Slot` (which holds a `&Producer`) is not `Send`. Here the producer and
// every slot that borrows it live together in one `State`, and every
// access to any of them goes through the `Mutex<State>` that owns it, with
// the guard held for the whole access: a slot is committed, and dropped
// (which publishes it as abandoned through the producer's ring), before
// the guard that took it out of `slots` goes (`PySlot::abandon` and its
// `Drop`). So no two threads touch the `RefCell`s at once, and moving the
// whole `State` to another thread moves every reference with its referent.
//
// No deadlock with the GIL (not part of the safety argument, but of the
// binding's): the lock is only ever taken inside Rust-only sections
// (`with_state`, or a `detach` closure) that never call into Python and
// never wait for the GIL while they hold it (they let the lock go before
// `detach` takes the GIL back). So a thread that holds the GIL and waits
// for the lock (a `Slot` collected by the GC, in `Drop`) waits for a
// holder that needs nothing from it, and no collection can run inside a
// section of the thread holding the lock and drop a `Slot` of this
// producer there. Every hold ends within one wait slice ([`SLICE`]) plus
// a copy.
unsafe impl Send for State {}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("producer", &self.producer)
            .field("open_slots", &self.slots.len())
            .finish()
    }
}

pub(crate) type SharedProducer = Arc<Mutex<State>>;

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on the locked state for a thread that holds the GIL: at once
/// when the lock is free, else without the GIL (another thread may hold
/// the lock through a wait slice; the other Python threads run meanwhile).
/// The lock is let go before the GIL is taken back: a thread never waits
/// for the GIL while it holds the lock (see `State`'s safety argument).
fn with_state<T: Send>(
    py: Python<'_>,
    m: &Mutex<State>,
    f: impl FnOnce(&mut State) -> T + Send,
) -> T {
    match try_lock(m) {
        Some(mut g) => f(&mut g),
        None => py.detach(|| f(&mut lock(m))),
    }
}

pub(crate) fn shared(producer: Producer) -> SharedProducer {
    Arc::new(Mutex::new(State {
        slots: HashMap::new(),
        next_token: 0,
        producer: Box::new(producer),
    }))
}

impl State {
    /// Registers `id` and keeps its slot under a new token.
    fn register(
        &mut self,
        id: &str,
        nbytes: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<(u64, usize, u64, u64, u64), StreamError> {
        // SAFETY: the producer is boxed (it does not move while `State`
        // moves) and outlives every slot: `slots` is dropped first, and a
        // slot leaves `slots` only to be committed or dropped while the
        // state (and so the producer) is locked and alive.
        let producer: &'static Producer = unsafe { &*(&*self.producer as *const Producer) };
        let nbytes = nbytes.unwrap_or_else(|| producer.item_bytes());
        let mut slot = producer.register_sized_timeout(id, nbytes, timeout)?;
        let ptr = slot.payload_mut().as_mut_ptr() as usize;
        let token = self.next_token;
        self.next_token += 1;
        let out = (
            token,
            ptr,
            slot.len(),
            slot.position(),
            slot.payload_offset(),
        );
        self.slots.insert(token, slot);
        Ok(out)
    }
}

/// The longest single wait of a call that waits up to `timeout`: at most
/// [`SLICE`], and a whole fraction of `timeout`, so that whole slices add
/// up to it (0.05 s is three of 16.7 ms with the 20 ms [`SLICE`]).
/// `None` (for ever): [`SLICE`].
pub(crate) fn slice_of(timeout: Option<Duration>) -> Duration {
    shmstream::binding::wait_slice(timeout, SLICE)
}

/// Parses a dtype name and a shape into metadata.
pub(crate) fn meta(
    py: Python<'_>,
    id: &StreamId,
    dtype: &str,
    shape: &[u64],
) -> PyResult<TensorMeta> {
    let meta = shmstream::binding::tensor_meta(dtype, shape).map_err(|e| stream_err(py, id, &e))?;
    // Refused here rather than at the consumer, where numpy and DLPack
    // could not show it (their shapes are int64).
    match crate::dlpack::beyond_int64(meta.dtype(), meta.shape(), &[]) {
        None => Ok(meta),
        Some(why) => Err(raise(py, "BadTensor", format!("stream {id}: {why}"))),
    }
}

/// Registers with the waits of `timeout` cut into slices (Ctrl-C).
pub(crate) fn register(
    py: Python<'_>,
    state: &SharedProducer,
    id: &StreamId,
    tensor_id: &str,
    nbytes: Option<u64>,
    timeout: Option<Duration>,
) -> PyResult<(u64, usize, u64, u64, u64)> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        let r = py.detach(|| lock(state).register(tensor_id, nbytes, Some(slice)));
        match r {
            Err(StreamError::Timeout { .. }) if deadline.is_none_or(|d| Instant::now() < d) => {
                py.check_signals()?;
            }
            Err(StreamError::Timeout { .. }) => {
                let (capacity, payload) = with_state(py, state, |s| {
                    (s.producer.capacity(), s.producer.payload_bytes())
                });
                return Err(raise(
                    py,
                    "RingFull",
                    format!(
                        "stream {id}: the ring is full ({capacity} items, {payload} payload bytes) and the consumer released nothing within {:.3} s; pop chunks (and drop them) to make room",
                        timeout.unwrap_or_default().as_secs_f64()
                    ),
                ));
            }
            Err(e) => return Err(stream_err(py, id, &e)),
            Ok(v) => return Ok(v),
        }
    }
}

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
        let timeout = crate::seconds(py, timeout)?;
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
        let (token, ptr, len, position, offset) =
            register(py, &self.state, &self.id, tensor_id, nbytes, timeout)?;
        Ok(PySlot {
            state: self.state.clone(),
            id: self.id.clone(),
            tensor_id: tensor_id.to_string(),
            token,
            ptr,
            len,
            position,
            offset,
        })
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
        // The wait for room runs without the GIL, one slice (the core
        // producer's configured timeout, see `create`) at a time, with
        // Ctrl-C checked in between and the mutex free for other threads.
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            let r = py.detach(|| {
                let s = lock(&self.state);
                match nbytes {
                    Some(n) => s.producer.pre_read_register_sized(tensor_id, n),
                    None => s.producer.pre_read_register(tensor_id),
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
                        (s.producer.capacity(), s.producer.payload_bytes())
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
            let slot = state.slots.remove(&token).expect("just registered");
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
            s.producer.put_in_place(tensor_id, meta)
        });
        r.map_err(|e| stream_err(py, &self.id, &e))
    }

    /// The producer's last word: nothing more will be registered.
    fn signal_done(&self, py: Python<'_>) {
        with_state(py, &self.state, |s| s.producer.signal_done());
    }

    /// Waits until the consumer released every item (GIL released).
    #[pyo3(signature = (timeout=None))]
    fn wait_drained(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = crate::seconds(py, timeout)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            match py.detach(|| lock(&self.state).producer.wait_drained(Some(slice))) {
                Err(StreamError::Timeout { .. }) if deadline.is_none_or(|d| Instant::now() < d) => {
                    py.check_signals()?;
                }
                Err(StreamError::Timeout { what, .. }) => {
                    return Err(raise(
                        py,
                        "StreamTimeout",
                        format!(
                            "stream {}: waited {:.3} s for {what}",
                            self.id,
                            timeout.unwrap_or_default().as_secs_f64()
                        ),
                    ))
                }
                r => return r.map_err(|e| stream_err(py, &self.id, &e)),
            }
        }
    }

    #[getter]
    fn capacity(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer.capacity())
    }

    #[getter]
    fn item_bytes(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer.item_bytes())
    }

    #[getter]
    fn payload_bytes(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer.payload_bytes())
    }

    #[getter]
    fn registered(&self, py: Python<'_>) -> u64 {
        with_state(py, &self.state, |s| s.producer.registered())
    }

    /// `(address, length)` of the payload mapping.
    #[getter]
    fn payload_region(&self, py: Python<'_>) -> (usize, usize) {
        with_state(py, &self.state, |s| {
            let (p, n) = s.producer.payload_region();
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
            state.producer.put(tensor_id, meta, bytes)
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
                    .producer
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
                                (s.producer.capacity(), s.producer.payload_bytes())
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
            t => crate::seconds(py, t),
        }
    }
}

/// A reserved slot: fill its memory in place (`numpy.asarray(slot)` is a
/// writable `uint8` array of its `len` bytes; `slot.__dlpack__` for torch),
/// then `commit(dtype, shape)`. Dropped uncommitted, the position is
/// published as abandoned (the consumer reports it).
#[pyclass(module = "shmstream", name = "Slot", frozen)]
#[derive(Debug)]
pub(crate) struct PySlot {
    state: SharedProducer,
    id: StreamId,
    /// The id the slot was registered for.
    #[pyo3(get)]
    tensor_id: String,
    token: u64,
    ptr: usize,
    /// Bytes reserved.
    #[pyo3(get)]
    len: u64,
    /// Stream position.
    #[pyo3(get)]
    position: u64,
    /// Offset in the payload region.
    #[pyo3(get)]
    offset: u64,
}

impl PySlot {
    /// Whether the slot is open: its `Slot` is in the state's `slots`
    /// until committed or given up, both under the state's lock.
    fn open(&self, py: Python<'_>) -> bool {
        with_state(py, &self.state, |s| s.slots.contains_key(&self.token))
    }

    fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.open(py) {
            Ok(())
        } else {
            Err(raise(
                py,
                "SlotClosed",
                format!(
                    "stream {}: slot {:?} (position {}) was committed or abandoned; its memory belongs to the consumer now",
                    self.id, self.tensor_id, self.position
                ),
            ))
        }
    }

    fn view(&self, py: Python<'_>) -> PyResult<View> {
        self.check_open(py)?;
        let keep: KeepAlive = self.state.clone();
        Ok(View {
            t: Strided {
                ptr: self.ptr as *mut u8,
                dtype: DType::U8,
                shape: vec![self.len],
                strides: vec![1],
            },
            keep,
            writable: true,
        })
    }
}

#[pymethods]
impl PySlot {
    /// numpy's array interface: the slot's bytes, writable `uint8`.
    #[getter]
    fn __array_interface__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        self.view(py)?.__array_interface__(py)
    }

    /// The slot's memory as a writable numpy array of `dtype` and `shape`
    /// (default: all its bytes as `uint8`); write the tensor there, then
    /// `commit`. Do not write through it after the commit.
    #[pyo3(signature = (dtype=None, shape=None))]
    fn numpy(
        slf: &Bound<'_, Self>,
        dtype: Option<Bound<'_, PyAny>>,
        shape: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        static ARRAY: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        Ok(ARRAY
            .import(py, "shmstream._tensors", "slot_array")?
            .call1((slf, dtype, shape))?
            .unbind())
    }

    /// The slot's bytes as a writable view object (numpy/DLPack).
    fn _view(&self, py: Python<'_>) -> PyResult<View> {
        self.view(py)
    }

    /// Address of the slot's first byte.
    #[getter]
    fn data_ptr(&self) -> usize {
        self.ptr
    }

    /// Publishes the tensor: `dtype` (`"f32"`, ...) and `shape` describe
    /// the bytes written from the slot's start.
    fn commit(&self, py: Python<'_>, dtype: &Bound<'_, PyAny>, shape: Vec<u64>) -> PyResult<()> {
        self.check_open(py)?;
        let name: String = match dtype.extract::<String>() {
            Ok(s) => s,
            Err(_) => {
                static NAME: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
                NAME.import(py, "shmstream._tensors", "dtype_name")?
                    .call1((dtype,))?
                    .extract()?
            }
        };
        let meta = meta(py, &self.id, &name, &shape)?;
        // Taken out, committed or put back under one hold of the lock;
        // Python (the errors) only after it.
        let token = self.token;
        let committed = with_state(py, &self.state, |state| {
            state.slots.remove(&token).map(|slot| {
                slot.commit(meta).map_err(|refused| {
                    state.slots.insert(token, refused.slot);
                    refused.error
                })
            })
        });
        match committed {
            Some(r) => r.map_err(|e| stream_err(py, &self.id, &e)),
            // Committed or abandoned by another thread since the check.
            None => self.check_open(py),
        }
    }

    /// Gives the position up (the consumer reports it as abandoned); no
    /// effect on a slot committed or given up already.
    fn abandon(&self, py: Python<'_>) {
        let token = self.token;
        with_state(py, &self.state, |state| {
            // Dropping it publishes the abandonment through the producer's
            // ring: under the lock (the safety argument of `State`).
            drop(state.slots.remove(&token));
        });
    }

    /// Whether the slot is still open (not committed nor abandoned).
    #[getter]
    fn is_open(&self, py: Python<'_>) -> bool {
        self.open(py)
    }

    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        dlpack_args(stream.as_ref(), dl_device, copy)?;
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        let v = self.view(py)?;
        dlpack::capsule(py, &v.t, v.keep.clone(), versioned, false)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        dlpack::CPU_DEVICE
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Leaving a `with` block without a commit abandons the slot.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.abandon(py);
        false
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Slot({:?}, position={}, len={}, {})",
            self.tensor_id,
            self.position,
            self.len,
            if self.open(py) { "open" } else { "closed" }
        )
    }
}

impl Drop for PySlot {
    /// A slot collected open is abandoned, as `abandon()` does it: with the
    /// lock held while the slot is dropped. This waits for the lock with
    /// the GIL held (no GIL release inside a deallocator); the holder needs
    /// neither the GIL nor this thread, and lets go within a wait slice.
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        let slot = state.slots.remove(&self.token);
        drop(slot);
        drop(state);
    }
}
