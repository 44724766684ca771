//! `_Buffer._grow`: a drop-in buffer (its producer in this process) that
//! was built without sizes moves its stream to a bigger ring instead of
//! raising `RingFull` or `BadTensor` (issue 26; the core's
//! `StreamBuffer::grow`, docs/design.md "Growing the in-process buffer").

use crate::buffer::PyStreamBuffer;
use crate::errors::{raise, stream_err};
use crate::locks::lock;
use pyo3::prelude::*;
use shmstream::policy::ChunkPolicy;
use shmstream::{Need, StreamError};

/// The first ring's capacity: a growing buffer's holds the policy's
/// largest window (a fixed one is refused as too small, as before).
pub(crate) fn first_capacity(policy: &impl ChunkPolicy, capacity: u64, grow: bool) -> u64 {
    let window = policy.max_window() as u64;
    if grow && window > capacity {
        window.next_power_of_two()
    } else {
        capacity
    }
}

/// Moves the stream of `buf` to a bigger ring (see `_Buffer._grow`).
pub(crate) fn grow(
    py: Python<'_>,
    buf: &PyStreamBuffer,
    tensor_id: Option<&str>,
    nbytes: u64,
) -> PyResult<bool> {
    let id = &buf.shared.id;
    let Some(state) = &buf.producer else {
        return Err(raise(
            py,
            "StreamError",
            format!("stream {id}: a buffer of another process's stream keeps the size its Producer gave it"),
        ));
    };
    let shared = &buf.shared;
    // The producer's lock, then the buffer's: no other path takes both.
    let r = py.detach(|| {
        let mut st = lock(state);
        let Some(producer) = st.producer_mut() else {
            return Err(StreamError::NotGrown {
                why: "a slot from Producer.register() is open; commit it (or drop it) first".into(),
            });
        };
        let need = match tensor_id {
            Some(t) => match producer.pending_bytes(t) {
                Some(len) if len < nbytes => Need::Put { id: t, nbytes },
                // Not pending, or it fits: growing would not help.
                _ => return Ok(false),
            },
            None => Need::Register { nbytes },
        };
        shared
            .with_detached(|b| b.grow(producer, need))
            .map(|_| true)
    });
    r.map_err(|e| stream_err(py, id, &e))
}
