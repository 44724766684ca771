//! The consumer's side: `_Buffer` (a Rust `StreamBuffer` behind a mutex)
//! and `StreamChunk`, which owns a lease on its slots.
//!
//! A chunk is popped as a [`ChunkLease`]; the lease lives in a
//! [`LeaseHandle`] behind an `Arc` shared by the chunk object and every
//! view made from it (a `_View`, the base of numpy arrays, and each DLPack
//! capsule's manager context). The last one to go hands the lease back to
//! the buffer, without needing the GIL: when the buffer is busy (a wait in
//! another thread), the lease is queued and handed back at the buffer's
//! next step, at most one wait slice later.

use crate::dlpack::{self, KeepAlive, Strided};
use crate::errors::{raise, stream_err};
use crate::stream_set::{SetCore, SetState};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shmstream::{ChunkLease, StreamBuffer, StreamError, StreamId, StreamKey};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// A blocking wait is cut into slices this long, so that Ctrl-C is noticed
/// (`check_signals`) and queued leases are handed back in between. A
/// SIGINT that lands in a slice waits out the rest of it (it goes to any
/// thread, so it need not interrupt the waiting one's futex): 20 ms, one
/// sleep of the core's wait (its `SLEEP_SLICE`, so no extra wake-ups), keeps
/// Ctrl-C within 100 ms with room for scheduling; 50 ms left only half.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// A stream's buffer, where it lives, and the leases waiting to be handed
/// back to it.
#[derive(Debug)]
pub(crate) struct Shared {
    home: Home,
    pub(crate) id: StreamId,
}

#[derive(Debug)]
enum Home {
    /// A buffer of its own (`StreamBuffer(...)`, `StreamBuffer.open`).
    Own {
        buf: Box<Mutex<StreamBuffer>>,
        /// Leases whose last holder went while the buffer was busy.
        pending: Mutex<Vec<ChunkLease>>,
    },
    /// A stream of a `StreamSet`: its buffer lives in the set, behind the
    /// set's lock (`stream_set.rs`).
    Set { core: Arc<SetCore>, key: StreamKey },
}

/// The locked buffer of a [`Shared`].
enum Guard<'a> {
    Own(MutexGuard<'a, StreamBuffer>),
    Set(MutexGuard<'a, SetState>, StreamKey),
}

impl Guard<'_> {
    fn buf(&mut self) -> &mut StreamBuffer {
        match self {
            Guard::Own(b) => b,
            // A `Shared` of a set's stream keeps the stream's buffer in the
            // set (or parked after `remove`) while it lives.
            Guard::Set(s, key) => s.buffer(*key).expect("a set's stream outlives its handles"),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the buffer as consistent as
    // any early return would (every core call checks its own state).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Shared {
    pub(crate) fn new(buf: StreamBuffer, id: StreamId) -> Arc<Self> {
        Arc::new(Shared {
            home: Home::Own {
                buf: Box::new(Mutex::new(buf)),
                pending: Mutex::new(Vec::new()),
            },
            id,
        })
    }

    /// The handle of the stream `key` of a set.
    pub(crate) fn in_set(core: Arc<SetCore>, key: StreamKey, id: StreamId) -> Arc<Self> {
        Arc::new(Shared {
            home: Home::Set { core, key },
            id,
        })
    }

    fn drain(&self, g: &mut Guard<'_>) {
        match (&self.home, g) {
            (Home::Own { pending, .. }, Guard::Own(buf)) => {
                let queued = std::mem::take(&mut *lock(pending));
                for lease in queued {
                    // Every queued lease came from this buffer.
                    let _ = buf.release_lease(lease);
                }
            }
            (Home::Set { core, .. }, Guard::Set(state, _)) => core.drain(state),
            _ => unreachable!("a guard of another home"),
        }
    }

    fn has_pending(&self) -> bool {
        match &self.home {
            Home::Own { pending, .. } => !lock(pending).is_empty(),
            Home::Set { core, .. } => core.has_pending(),
        }
    }

    fn try_buf(&self) -> Option<Guard<'_>> {
        match &self.home {
            Home::Own { buf, .. } => try_lock(buf).map(Guard::Own),
            Home::Set { core, key } => core.try_state().map(|s| Guard::Set(s, *key)),
        }
    }

    fn lock_buf(&self) -> Guard<'_> {
        match &self.home {
            Home::Own { buf, .. } => Guard::Own(lock(buf)),
            Home::Set { core, key } => Guard::Set(core.state(), *key),
        }
    }

    /// Hands a lease back now, or queues it when the buffer is busy. Never
    /// blocks and needs no GIL (it may run in a DLPack deleter).
    fn give_back(&self, lease: ChunkLease) {
        if let Some(mut g) = self.try_buf() {
            let _ = g.buf().release_lease(lease);
            self.drain(&mut g);
            return;
        }
        match &self.home {
            Home::Own { pending, .. } => lock(pending).push(lease),
            Home::Set { core, key } => core.queue(*key, lease),
        }
        // The holder may have unlocked (and looked at the queue) between
        // our try and our push: look again. Either this try succeeds, or
        // someone holds the lock and drains when done.
        if let Some(mut g) = self.try_buf() {
            self.drain(&mut g);
        }
    }

    /// Runs `f` on the buffer: at once when it is free, else waiting for it
    /// without the GIL. Queued leases are handed back first and after.
    pub(crate) fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut StreamBuffer) -> T + Send,
    ) -> T {
        let out = match self.try_buf() {
            Some(mut g) => {
                self.drain(&mut g);
                f(g.buf())
            }
            None => py.detach(|| {
                let mut g = self.lock_buf();
                self.drain(&mut g);
                f(g.buf())
            }),
        };
        if self.has_pending() {
            if let Some(mut g) = self.try_buf() {
                self.drain(&mut g);
            }
        }
        out
    }

    /// Waits (GIL released, Ctrl-C honoured every slice) until `f`
    /// succeeds or fails otherwise than with a timeout of its slice.
    pub(crate) fn wait<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut StreamBuffer, Duration) -> Result<T, StreamError> + Send,
    ) -> PyResult<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            let r = py.detach(|| {
                let mut g = self.lock_buf();
                self.drain(&mut g);
                f(g.buf(), slice)
            });
            match r {
                Err(StreamError::Timeout { what, .. })
                    if deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    let _ = what;
                    py.check_signals()?;
                }
                Err(StreamError::Timeout { what, .. }) => {
                    let waited = timeout.unwrap_or_default();
                    return Err(raise(
                        py,
                        "StreamTimeout",
                        format!(
                            "stream {}: waited {:.3} s for {what}",
                            self.id,
                            waited.as_secs_f64()
                        ),
                    ));
                }
                Err(e) => return Err(stream_err(py, &self.id, &e)),
                Ok(v) => return Ok(v),
            }
        }
    }
}

/// One chunk's lease, handed back when the last holder goes.
#[derive(Debug)]
pub(crate) struct LeaseHandle {
    shared: Arc<Shared>,
    lease: Mutex<Option<ChunkLease>>,
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        let lease = lock(&self.lease).take();
        if let Some(lease) = lease {
            self.shared.give_back(lease);
        }
    }
}

/// A tensor in a chunk's slots (or a producer's slot): numpy reads it
/// through `__array_interface__` (keeping this object as the array's
/// base), torch and numpy through `__dlpack__`.
#[pyclass(module = "shmstream._shmstream", name = "_View", frozen)]
pub(crate) struct View {
    pub(crate) t: Strided,
    pub(crate) keep: KeepAlive,
    pub(crate) writable: bool,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "_View({} {:?})", self.t.dtype, self.t.shape)
    }
}

/// numpy's type string of a dtype (`None` for bf16, which numpy reads as
/// `u16` and views as `ml_dtypes.bfloat16`).
fn typestr(dtype: shmstream::DType) -> &'static str {
    use shmstream::DType::*;
    match dtype {
        Bool => "|b1",
        U8 => "|u1",
        I8 => "|i1",
        I16 => "<i2",
        U16 | BF16 => "<u2",
        I32 => "<i4",
        U32 => "<u4",
        I64 => "<i8",
        U64 => "<u8",
        F16 => "<f2",
        F32 => "<f4",
        F64 => "<f8",
    }
}

#[pymethods]
impl View {
    /// numpy's array interface (version 3), read-only for a chunk's view.
    #[getter]
    pub(crate) fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(why) = dlpack::beyond_int64(self.t.dtype, &self.t.shape, &self.t.strides) {
            return Err(pyo3::exceptions::PyBufferError::new_err(why));
        }
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("typestr", typestr(self.t.dtype))?;
        d.set_item("shape", PyTuple::new(py, &self.t.shape)?)?;
        d.set_item("strides", PyTuple::new(py, &self.t.strides)?)?;
        d.set_item("data", (self.t.ptr as usize, !self.writable))?;
        Ok(d)
    }

    /// The element type's name (`"f32"`, `"bf16"`, ...).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.t.dtype.name()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.t.shape)
    }

    /// Strides in bytes.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.t.strides)
    }

    /// Address of the first element.
    #[getter]
    fn data_ptr(&self) -> usize {
        self.t.ptr as usize
    }

    #[getter]
    fn readonly(&self) -> bool {
        !self.writable
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
        dlpack::capsule(py, &self.t, self.keep.clone(), versioned, !self.writable)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        dlpack::CPU_DEVICE
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstream view {} {:?}{}>",
            self.t.dtype,
            self.t.shape,
            if self.writable { "" } else { " read-only" }
        )
    }
}

/// Checks the DLPack keyword arguments: host memory, no copy asked for.
pub(crate) fn dlpack_args(
    stream: Option<&Bound<'_, PyAny>>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<()> {
    if let Some(s) = stream {
        if !s.is_none() && s.extract::<i64>().map_or(true, |v| v != -1) {
            // The CPU has no streams; the array API asks producers to
            // accept None (and -1) and refuse others.
            return Err(pyo3::exceptions::PyValueError::new_err(
                "shmstream tensors live in host memory: __dlpack__ takes stream=None",
            ));
        }
    }
    if let Some(dev) = dl_device {
        if dev != dlpack::CPU_DEVICE {
            return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "shmstream tensors live in host memory (device (1, 0)); device {dev:?} needs a copy"
            )));
        }
    }
    if copy == Some(true) {
        return Err(pyo3::exceptions::PyBufferError::new_err(
            "shmstream exports views of shared memory, never copies (copy=True); copy the result instead",
        ));
    }
    Ok(())
}

fn strided_of(view: shmstream::TensorView<'_>) -> Strided {
    let n = view.shape().len();
    Strided {
        ptr: view.as_ptr().cast_mut(),
        dtype: view.dtype(),
        shape: view.shape().to_vec(),
        strides: view.strides()[..n].to_vec(),
    }
}

fn item_strided(item: shmstream::ItemView<'_>) -> Strided {
    let shape = item.shape().to_vec();
    let mut strides = vec![0usize; shape.len()];
    let mut acc = item.dtype().size();
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc = acc.saturating_mul(shape[d] as usize);
    }
    Strided {
        ptr: item.bytes().as_ptr().cast_mut(),
        dtype: item.dtype(),
        shape,
        strides,
    }
}

/// Row `i` of a stacked view: item `i` with its own shape.
fn row(s: &Strided, i: usize) -> Strided {
    // SAFETY: callers pass `i < n`: `n` rows of `strides[0]` bytes each
    // lie in the stacked view's span.
    let ptr = unsafe { s.ptr.add(i * s.strides[0]) };
    Strided {
        ptr,
        dtype: s.dtype,
        shape: s.shape[1..].to_vec(),
        strides: s.strides[1..].to_vec(),
    }
}

/// What a popped chunk shows, captured at the pop.
#[derive(Debug)]
pub(crate) struct Popped {
    lease: ChunkLease,
    stacked: Option<Strided>,
}

pub(crate) fn capture(buf: &StreamBuffer, lease: ChunkLease) -> Popped {
    let stacked = buf.lease_stacked(&lease).map(strided_of);
    Popped { lease, stacked }
}

/// A chunk popped from a `StreamBuffer`: the reference's fields, `data`
/// collated as the reference does, views of its slots through
/// `__dlpack__`. Its slots are handed back when the chunk and every view
/// made from it are gone, or at `release()` (views made before keep
/// theirs).
#[pyclass(module = "shmstream", name = "StreamChunk", frozen)]
#[derive(Debug)]
pub(crate) struct Chunk {
    /// How many chunks the buffer popped before this one (0, 1, ...).
    #[pyo3(get)]
    chunk_index: u64,
    /// Stream position of the chunk's first item.
    #[pyo3(get)]
    start_offset: u64,
    /// Whether this is the stream's last chunk (exactly one is, unless the
    /// policy continues after done).
    #[pyo3(get)]
    is_final: bool,
    /// How many leading items an earlier chunk showed already (a sliding
    /// or left-context policy's overlap); skip them to see each item once.
    #[pyo3(get)]
    context_items: usize,
    len: usize,
    stacked: Option<Strided>,
    handle: Mutex<Option<Arc<LeaseHandle>>>,
    data: Mutex<Option<Py<PyAny>>>,
}

impl Chunk {
    pub(crate) fn new(shared: &Arc<Shared>, p: Popped) -> Chunk {
        let lease = p.lease;
        Chunk {
            chunk_index: lease.chunk_index(),
            start_offset: lease.start_offset(),
            is_final: lease.is_final(),
            context_items: lease.context_items(),
            len: lease.len(),
            stacked: p.stacked,
            handle: Mutex::new(Some(Arc::new(LeaseHandle {
                shared: shared.clone(),
                lease: Mutex::new(Some(lease)),
            }))),
            data: Mutex::new(None),
        }
    }

    fn handle(&self, py: Python<'_>) -> PyResult<Arc<LeaseHandle>> {
        lock(&self.handle).clone().ok_or_else(|| {
            raise(
                py,
                "ChunkReleased",
                format!(
                    "chunk {} (items {}..{}) was released; its views made before stay valid",
                    self.chunk_index,
                    self.start_offset,
                    self.start_offset + self.len as u64
                ),
            )
        })
    }

    fn view_of(keep: Arc<LeaseHandle>, t: Strided) -> View {
        View {
            t,
            keep,
            writable: false,
        }
    }

    /// `data` without Python in between when torch is there and the items
    /// stack (or there are none): one versioned, read-only DLPack capsule
    /// straight into `torch._C._from_dlpack`, which is where
    /// `torch.from_dlpack` ends (its Python wrapper costs about a
    /// microsecond). None: take the general path (`_collate.collate`).
    fn fast_data(&self, py: Python<'_>, handle: Arc<LeaseHandle>) -> PyResult<Option<Py<PyAny>>> {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Cleared for good when the converter refuses a capsule (a torch
        /// without versioned DLPack): the general path then serves.
        static FAST: AtomicBool = AtomicBool::new(true);
        static CONVERT: pyo3::sync::PyOnceLock<Option<Py<PyAny>>> = pyo3::sync::PyOnceLock::new();
        let d = PyDict::new(py);
        if self.len == 0 {
            d.set_item("data", py.None())?;
            return Ok(Some(d.into_any().unbind()));
        }
        // Relaxed: a hint; a stale `true` costs one refused conversion.
        let (Some(stacked), true) = (&self.stacked, FAST.load(Ordering::Relaxed)) else {
            return Ok(None);
        };
        static COLLATE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
        let collate = COLLATE.get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("shmstream._collate")?.unbind())
        })?;
        // Whether torch is there is `_collate`'s word, asked every time (a
        // test may take torch away); None until its first look, which the
        // general path makes.
        if collate.bind(py).getattr("_torch")?.is_none() {
            return Ok(None);
        }
        let convert = CONVERT.get_or_try_init(py, || -> PyResult<_> {
            let c = collate.bind(py).getattr("capsule_converter")?.call0()?;
            Ok((!c.is_none()).then(|| c.unbind()))
        })?;
        let Some(convert) = convert else {
            return Ok(None);
        };
        let t = if self.len == 1 {
            row(stacked, 0)
        } else {
            stacked.clone()
        };
        let capsule = dlpack::capsule(py, &t, handle, true, true)?;
        match convert.call1(py, (capsule,)) {
            Ok(tensor) => {
                d.set_item("data", tensor)?;
                Ok(Some(d.into_any().unbind()))
            }
            Err(_) => {
                FAST.store(false, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Reads through the buffer for the lease (the mixed-shape path).
    fn with_lease<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&StreamBuffer, &ChunkLease) -> T + Send,
    ) -> PyResult<T> {
        let handle = self.handle(py)?;
        let shared = handle.shared.clone();
        Ok(shared.with(py, |buf| {
            let lease = lock(&handle.lease);
            f(buf, lease.as_ref().expect("a live handle holds its lease"))
        }))
    }
}

#[pymethods]
impl Chunk {
    /// Items in the chunk.
    fn __len__(&self) -> usize {
        self.len
    }

    /// The reference's `data`: `{"data": None}` for no items, the item for
    /// one, the stacked `[n, *shape]` view for several of one shape, a list
    /// for mixed shapes; torch tensors when torch is importable, numpy
    /// arrays otherwise. Computed once.
    #[getter]
    fn data(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(d) = lock(&this.data).as_ref() {
            return Ok(d.clone_ref(py));
        }
        let handle = this.handle(py)?;
        let d = match this.fast_data(py, handle)? {
            Some(d) => d,
            None => {
                static COLLATE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
                let collate = COLLATE.import(py, "shmstream._collate", "collate")?;
                collate.call1((slf,))?.unbind()
            }
        };
        // A value another thread stored meanwhile is dropped (maybe
        // deallocated, running Python) after the lock is let go.
        let old = lock(&this.data).replace(d.clone_ref(py));
        drop(old);
        Ok(d)
    }

    /// The window as one read-only view `[n, *shape]` when its items share
    /// dtype and shape; None for an empty chunk or mixed shapes.
    fn stacked(&self, py: Python<'_>) -> PyResult<Option<View>> {
        let keep = self.handle(py)?;
        Ok(self.stacked.clone().map(|t| Self::view_of(keep, t)))
    }

    /// Item `i` as a read-only view of its own shape.
    fn item(&self, py: Python<'_>, i: usize) -> PyResult<View> {
        // The lease first: no address into the slots is formed for a
        // chunk that no longer holds them, whatever `i`.
        let keep = self.handle(py)?;
        if i >= self.len {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "item {i} of a chunk of {} items",
                self.len
            )));
        }
        let t = match &self.stacked {
            Some(s) => row(s, i),
            None => {
                let t =
                    self.with_lease(py, |buf, lease| buf.lease_item(lease, i).map(item_strided))?;
                t.ok_or_else(|| {
                    pyo3::exceptions::PyIndexError::new_err(format!("item {i} is not in the chunk"))
                })?
            }
        };
        Ok(Self::view_of(keep, t))
    }

    /// The tensor ids of the window, in order.
    #[getter]
    fn ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_lease(py, |buf, lease| {
            buf.lease_ids(lease).map(str::to_string).collect()
        })
    }

    /// Whether the chunk still holds its lease (not released).
    #[getter]
    fn alive(&self) -> bool {
        lock(&self.handle).is_some()
    }

    /// Gives up the chunk's lease: its slots go back to the producer once
    /// the views made from it are gone too. `data` and new views are
    /// refused afterwards.
    fn release(&self) {
        let data = lock(&self.data).take();
        let handle = lock(&self.handle).take();
        drop((data, handle));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.release();
        false
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
        // The capsule's deleter holds the lease, as a view's would; taken
        // before any address into the slots is formed.
        let keep = self.handle(py)?;
        let t = match (self.len, &self.stacked) {
            (1, Some(t)) => std::borrow::Cow::Owned(row(t, 0)),
            (_, Some(t)) => std::borrow::Cow::Borrowed(t),
            (0, None) => {
                return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                    "chunk {} has no items, so no tensor",
                    self.chunk_index
                )))
            }
            (_, None) => {
                return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "chunk {}'s {} items differ in dtype or shape; take them one by one with item(i)",
                self.chunk_index, self.len
            )))
            }
        };
        dlpack::capsule(py, &t, keep, versioned, true)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        dlpack::CPU_DEVICE
    }

    fn __repr__(&self) -> String {
        let shape = match &self.stacked {
            Some(t) => format!(" {} {:?}", t.dtype, t.shape),
            None if self.len > 0 => " mixed".to_string(),
            None => String::new(),
        };
        format!(
            "StreamChunk(chunk_index={}, start_offset={}, items={}{}, context_items={}, is_final={}{})",
            self.chunk_index,
            self.start_offset,
            self.len,
            shape,
            self.context_items,
            if self.is_final { "True" } else { "False" },
            if self.alive() { "" } else { ", released" }
        )
    }
}
