//! `shmstream._shmstream`: the native half of the Python package
//! `shmstream` (see `python/shmstream/__init__.py` for the Python API).
//! Its modules, each using only those listed before it:
//!
//! - `errors`: the package's exception classes, raised from core errors;
//! - `spare_capsule`: one consumed DLPack capsule object kept for reuse;
//! - `dlpack`: DLPack capsules of strided host tensors;
//! - `dlpack_room`: the room for one export in a chunk's lease handle;
//! - `locks`: poison-tolerant locks;
//! - `timeout`: seconds as durations, and the wait slice (Ctrl-C);
//! - `policy`: chunk policies by name;
//! - `host`: the fields of a torch tensor or numpy array read in Rust;
//! - `view`: `_View`, a tensor for numpy and DLPack;
//! - `npy`: numpy arrays made through numpy's C API (a chunk's `data`
//!   without torch);
//! - `convert`: a one-argument converter (`torch._C._from_dlpack`) called
//!   from Rust;
//! - `shared`: where a stream's buffer lives (its own, or a set's) and how
//!   its leases are handed back;
//! - `chunk`: `StreamChunk`, which owns a lease on its slots;
//! - `producer_state`: the core producer and its open slots behind one
//!   mutex;
//! - `slot`: `Slot`, a reserved position filled in place;
//! - `grow`: a drop-in buffer's move to a bigger ring;
//! - `producer`: `_Producer`, the writing end;
//! - `buffer`: `_Buffer`, the consumer's `StreamBuffer`;
//! - `stream_set`: `_StreamSet` and `StreamKey`, one consumer worker's many
//!   streams and one wait;
//! - `hub`: `_Hub`, a producer's way into a worker's hub;
//! - `segments`, `array`: `list_segments` and `_array_data`;
//! - `aio_uring`: `_SetUring`, a set awaited through an io_uring
//!   `FUTEX_WAIT` made by the event loop's thread (asyncio, no thread);
//! - `aio_wait`: `_StreamWait`, a standalone buffer's or a producer's
//!   await (io_uring, or its fallback's thread);
//! - `aio`: the other waits of `shmstream._aio`: `_SetWatch`, the
//!   fallback's thread per set, and a stream's wait that pops nothing.
//!
//! `tests/layering.rs` holds that no module uses one after it (no circle).

mod aio;
mod aio_uring;
mod aio_wait;
mod array;
mod buffer;
mod chunk;
mod convert;
mod dlpack;
mod dlpack_room;
mod errors;
mod grow;
mod host;
mod hub;
mod locks;
mod npy;
mod policy;
mod producer;
mod producer_state;
mod segments;
mod shared;
mod slot;
mod spare_capsule;
mod stream_set;
mod timeout;
mod view;

use pyo3::prelude::*;

#[pymodule]
fn _shmstream(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(array::_array_data, m)?)?;
    m.add_class::<buffer::PyStreamBuffer>()?;
    m.add_class::<producer::PyProducer>()?;
    m.add_class::<slot::PySlot>()?;
    m.add_class::<chunk::Chunk>()?;
    m.add_class::<view::View>()?;
    m.add_function(wrap_pyfunction!(policy::policy_name, m)?)?;
    m.add_function(wrap_pyfunction!(policy::policy_max_window, m)?)?;
    m.add_function(wrap_pyfunction!(segments::list_segments, m)?)?;
    m.add_function(wrap_pyfunction!(segments::remove_dead_segments, m)?)?;
    stream_set::register(m)?;
    m.add_class::<hub::PyHub>()?;
    aio::register(m)?;
    Ok(())
}
