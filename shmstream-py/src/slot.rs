//! `Slot`: a position a producer reserved, whose memory Python fills in
//! place (numpy through `__array_interface__`, torch through
//! `__dlpack__`), then commits or abandons.

use crate::dlpack::{self, KeepAlive, Strided};
use crate::errors::raise;
use crate::errors::stream_err;
use crate::locks::lock;
use crate::producer_state::{meta, with_state, SharedProducer};
use crate::view::{dlpack_args, View};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmstream::{AbandonReason, DType, StreamId};

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
    /// The slot `producer_state::register` returned: its token, address,
    /// length, stream position and payload offset.
    pub(crate) fn new(
        state: SharedProducer,
        id: StreamId,
        tensor_id: &str,
        (token, ptr, len, position, offset): (u64, usize, u64, u64, u64),
    ) -> PySlot {
        PySlot {
            state,
            id,
            tensor_id: tensor_id.to_string(),
            token,
            ptr,
            len,
            position,
            offset,
        }
    }

    /// Whether the slot is open: its `Slot` is in the state's `slots`
    /// until committed or given up, both under the state's lock.
    fn open(&self, py: Python<'_>) -> bool {
        with_state(py, &self.state, |s| s.is_open(self.token))
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
            t: Strided::new(self.ptr as *mut u8, DType::U8, &[self.len], &[1]),
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
            state.take_slot(token).map(|slot| {
                slot.commit(meta).map_err(|refused| {
                    state.put_back(token, refused.slot);
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

    /// Gives the position up (the consumer reports it as abandoned, with
    /// `reason` and `code`: its `Abandoned` exception carries them); no
    /// effect on a slot committed or given up already. A reason longer
    /// than `MAX_REASON_LEN` bytes is cut at a character boundary.
    #[pyo3(signature = (reason=None, code=0))]
    fn abandon(&self, py: Python<'_>, reason: Option<&str>, code: i64) -> PyResult<()> {
        let reason = abandon_reason(reason, code)?;
        let token = self.token;
        with_state(py, &self.state, |state| {
            // Giving it up publishes the abandonment through the producer's
            // ring: under the lock (the safety argument of `State`).
            if let Some(slot) = state.take_slot(token) {
                slot.abandon_with(reason);
            }
        });
        Ok(())
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
        let versioned = dlpack_args(stream.as_ref(), max_version, dl_device, copy)?;
        let v = self.view(py)?;
        dlpack::capsule(py, v.t.as_ref(), v.keep.clone(), versioned, false)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        dlpack::CPU_DEVICE
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Leaving a `with` block without a commit abandons the slot.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.abandon(py, None, 0)?;
        Ok(false)
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
        let slot = state.take_slot(self.token);
        drop(slot);
        drop(state);
    }
}

/// The reason a Python caller gives for abandoning a position (`Slot.abandon`,
/// `Producer.abandon`): a code outside 32 bits is refused, naming the range,
/// before anything is given up.
pub(crate) fn abandon_reason(reason: Option<&str>, code: i64) -> PyResult<AbandonReason> {
    let code = i32::try_from(code).map_err(|_| {
        PyValueError::new_err(format!(
            "abandon code {code} is outside the 32-bit range {}..={}",
            i32::MIN,
            i32::MAX
        ))
    })?;
    Ok(AbandonReason::new(code, reason.unwrap_or("")))
}
