//! A drop-in buffer (its producer in this process) that
//! was built without sizes moves its stream to a bigger ring instead of
//! raising `RingFull` or `BadTensor` (issue 26; the core's
//! `StreamBuffer::grow`, docs/design.md "Growing the in-process buffer").

use crate::errors::stream_err;
use crate::locks::lock;
use crate::producer_state::SharedProducer;
use crate::shared::Shared;
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

/// Moves the stream of a growing drop-in buffer (its producer `state`, its
/// buffer `shared`) to a bigger ring with room for one more registration
/// of `nbytes` (`tensor_id` None) or for the put of `nbytes` to the
/// pending `tensor_id`; false when that put fits already or the id is not
/// pending (growing would not help: the caller raises its own error).
pub(crate) fn grow(
    py: Python<'_>,
    state: &SharedProducer,
    shared: &Shared,
    tensor_id: Option<&str>,
    nbytes: u64,
) -> PyResult<bool> {
    let id = &shared.id;
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
