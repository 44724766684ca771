//! `StreamChunk`, which owns a lease on its slots.
//!
//! A chunk is popped as a [`ChunkLease`]; the lease lives in a
//! [`LeaseHandle`] behind an `Arc` shared by the chunk object and every
//! view made from it (a `_View`, the base of numpy arrays, and each DLPack
//! capsule's manager context). The last one to go hands the lease back to
//! the buffer ([`Shared::give_back`]), without needing the GIL.

use crate::convert::Converter;
use crate::dlpack::{self, Strided, TensorRef};
use crate::dlpack_room::{self, ExportRoom, HasRoom};
use crate::errors::raise;
use crate::locks::lock;
use crate::npy;
use crate::shared::Shared;
use crate::spare_capsule;
use crate::view::{dlpack_args, View};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shmstream::{ChunkLease, StreamBuffer};
use std::sync::{Arc, Mutex};

/// One chunk's lease, handed back when the last holder goes.
#[derive(Debug)]
pub(crate) struct LeaseHandle {
    shared: Arc<Shared>,
    lease: Mutex<Option<ChunkLease>>,
    /// Where the chunk's `data` tensor is exported from (no allocation).
    room: ExportRoom,
}

impl HasRoom for LeaseHandle {
    fn room(&self) -> &ExportRoom {
        &self.room
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        // The last holder needs no lock (about 10 ns of a hand-back).
        let lease = self
            .lease
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(lease) = lease {
            self.shared.give_back(lease);
        }
    }
}

fn strided_of(view: shmstream::TensorView<'_>) -> Strided {
    let n = view.shape().len();
    Strided::new(
        view.as_ptr().cast_mut(),
        view.dtype(),
        view.shape(),
        &view.strides()[..n],
    )
}

fn item_strided(item: shmstream::ItemView<'_>) -> Strided {
    let shape = item.shape();
    let mut strides = [0usize; shmstream::MAX_DIMS + 1];
    let mut acc = item.dtype().size();
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc = acc.saturating_mul(shape[d] as usize);
    }
    Strided::new(
        item.bytes().as_ptr().cast_mut(),
        item.dtype(),
        shape,
        &strides[..shape.len()],
    )
}

/// Which library `data` makes its tensors with: `_collate`'s word, asked
/// every time (a test may take torch away).
enum Library {
    /// `_collate` has not looked for torch yet; the general path does.
    NotLooked,
    Torch,
    Numpy,
}

fn collate(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static COLLATE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    Ok(COLLATE
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("shmstream._collate")?.unbind())
        })?
        .bind(py))
}

/// Read from the module's dict (a module attribute lookup with its string
/// cost about 90 ns a chunk, measured with perf; this about 15).
fn collate_torch(py: Python<'_>) -> PyResult<Library> {
    static GLOBALS: pyo3::sync::PyOnceLock<Py<PyDict>> = pyo3::sync::PyOnceLock::new();
    let globals = GLOBALS
        .get_or_try_init(py, || -> PyResult<_> { Ok(collate(py)?.dict().unbind()) })?
        .bind(py);
    let torch = globals.get_item(pyo3::intern!(py, "_torch"))?;
    if torch.is_some_and(|t| !t.is_none()) {
        return Ok(Library::Torch);
    }
    let looked = globals.get_item(pyo3::intern!(py, "_looked"))?;
    Ok(match looked {
        Some(l) if l.is_truthy()? => Library::Numpy,
        _ => Library::NotLooked,
    })
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
    held: Mutex<Held>,
}

/// What a chunk holds, under one lock (`data` takes it twice, not four
/// times): its lease (None once released) and its `data` (None until
/// computed, and again once released).
#[derive(Debug, Default)]
struct Held {
    handle: Option<Arc<LeaseHandle>>,
    data: Option<Py<PyAny>>,
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
            held: Mutex::new(Held {
                handle: Some(Arc::new(LeaseHandle {
                    shared: shared.clone(),
                    lease: Mutex::new(Some(lease)),
                    room: ExportRoom::default(),
                })),
                data: None,
            }),
        }
    }

    fn handle(&self, py: Python<'_>) -> PyResult<Arc<LeaseHandle>> {
        let handle = lock(&self.held).handle.clone();
        handle.ok_or_else(|| self.released(py))
    }

    fn released(&self, py: Python<'_>) -> PyErr {
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
    }

    fn view_of(keep: Arc<LeaseHandle>, t: Strided) -> View {
        View {
            t,
            keep,
            writable: false,
        }
    }

    /// The tensor `data` and `__dlpack__` show when the items stack: the
    /// item of a chunk of one, else the stacked view.
    fn shown(&self) -> Option<TensorRef<'_>> {
        let s = self.stacked.as_ref()?;
        Some(if self.len == 1 {
            s.first_row()
        } else {
            s.as_ref()
        })
    }

    /// `data` without Python in between when the items stack (or there are
    /// none): with torch, one versioned, read-only DLPack capsule straight
    /// into `torch._C._from_dlpack`, which is where `torch.from_dlpack` ends
    /// (its Python wrapper costs about a microsecond); without, a numpy
    /// array made through numpy's C API (`npy`). None: take the general
    /// path (`_collate.collate`).
    fn fast_data(&self, py: Python<'_>, handle: Arc<LeaseHandle>) -> PyResult<Option<Py<PyAny>>> {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Cleared for good when the converter refuses a capsule (a torch
        /// without versioned DLPack): the general path then serves.
        static FAST: AtomicBool = AtomicBool::new(true);
        static CONVERT: pyo3::sync::PyOnceLock<Option<Converter>> = pyo3::sync::PyOnceLock::new();
        let key = pyo3::intern!(py, "data");
        let d = PyDict::new(py);
        if self.len == 0 {
            d.set_item(key, py.None())?;
            return Ok(Some(d.into_any().unbind()));
        }
        let Some(t) = self.shown() else {
            return Ok(None);
        };
        let value = match collate_torch(py)? {
            Library::NotLooked => return Ok(None),
            Library::Numpy => match npy::array(py, t, handle)? {
                Some(a) => a,
                None => return Ok(None),
            },
            // Relaxed: a hint; a stale `true` costs one refused conversion.
            Library::Torch if !FAST.load(Ordering::Relaxed) => return Ok(None),
            Library::Torch => {
                let convert = CONVERT.get_or_try_init(py, || -> PyResult<_> {
                    let c = collate(py)?.getattr("capsule_converter")?.call0()?;
                    Ok((!c.is_none()).then(|| Converter::new(c)))
                })?;
                let Some(convert) = convert else {
                    return Ok(None);
                };
                let capsule = dlpack_room::capsule_in(py, t, handle, true)?;
                match convert.call(py, capsule.bind(py)) {
                    Ok(tensor) => {
                        spare_capsule::keep(py, capsule, dlpack::NAME_VERSIONED);
                        tensor
                    }
                    Err(_) => {
                        FAST.store(false, Ordering::Relaxed);
                        return Ok(None);
                    }
                }
            }
        };
        d.set_item(key, value)?;
        Ok(Some(d.into_any().unbind()))
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
        let handle = {
            let held = lock(&this.held);
            if let Some(d) = held.data.as_ref() {
                return Ok(d.clone_ref(py));
            }
            held.handle.clone()
        };
        let handle = handle.ok_or_else(|| this.released(py))?;
        let d = match this.fast_data(py, handle)? {
            Some(d) => d,
            None => {
                static COLLATE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
                let collate = COLLATE.import(py, "shmstream._collate", "collate")?;
                collate.call1((slf,))?.unbind()
            }
        };
        // The first value stored wins, so every caller sees one `data`: a
        // thread may have computed it meanwhile (the general path runs
        // Python, which lets others run). Ours is then dropped after the
        // lock is let go (its deallocation may run Python). A chunk
        // released meanwhile keeps nothing.
        let first = {
            let mut held = lock(&this.held);
            match &held.data {
                Some(first) => Some(first.clone_ref(py)),
                None => {
                    if held.handle.is_some() {
                        held.data = Some(d.clone_ref(py));
                    }
                    None
                }
            }
        };
        Ok(match first {
            Some(first) => {
                drop(d);
                first
            }
            None => d,
        })
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
            // SAFETY: `i < self.len`, the stacked view's first dim.
            Some(s) => unsafe { s.row(i) }.to_owned(),
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
        lock(&self.held).handle.is_some()
    }

    /// Gives up the chunk's lease: its slots go back to the producer once
    /// the views made from it are gone too. `data` and new views are
    /// refused afterwards.
    fn release(&self) {
        // Dropped after the lock is let go: the data's deallocation may
        // run Python.
        let held = std::mem::take(&mut *lock(&self.held));
        drop(held);
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
        let versioned = dlpack_args(stream.as_ref(), max_version, dl_device, copy)?;
        // The capsule's deleter holds the lease, as a view's would; taken
        // before any address into the slots is formed.
        let keep = self.handle(py)?;
        let t = match (self.len, self.shown()) {
            (_, Some(t)) => t,
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
        dlpack::capsule(py, t, keep, versioned, true)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        dlpack::CPU_DEVICE
    }

    fn __repr__(&self) -> String {
        let shape = match &self.stacked {
            Some(t) => format!(" {} {:?}", t.dtype, t.shape()),
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
