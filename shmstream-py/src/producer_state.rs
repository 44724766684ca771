//! The core `Producer` and the `Slot`s Python holds, behind one mutex
//! ([`State`], whose `Send` rests on that mutex), and the sliced waits
//! of registering a slot.

use crate::dlpack;
use crate::errors::{raise, stream_err};
use crate::locks::{lock, try_lock};
use crate::timeout::SLICE;
use pyo3::prelude::*;
use shmstream::{DType, Producer, Slot, StreamError, StreamId, TensorMeta};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// Runs `f` on the locked state for a thread that holds the GIL: at once
/// when the lock is free, else without the GIL (another thread may hold
/// the lock through a wait slice; the other Python threads run meanwhile).
/// The lock is let go before the GIL is taken back: a thread never waits
/// for the GIL while it holds the lock (see `State`'s safety argument).
pub(crate) fn with_state<T: Send>(
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
    pub(crate) fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The producer to change (`grow.rs`), when no slot borrows it.
    pub(crate) fn producer_mut(&mut self) -> Option<&mut Producer> {
        self.slots.is_empty().then_some(&mut *self.producer)
    }

    /// Takes the open slot of `token` out; the caller commits or drops it
    /// before it lets the lock go (the safety argument of `State`).
    pub(crate) fn take_slot(&mut self, token: u64) -> Option<Slot<'static>> {
        self.slots.remove(&token)
    }

    /// Puts back a slot a refused commit returned, under the same hold of
    /// the lock that took it out.
    pub(crate) fn put_back(&mut self, token: u64, slot: Slot<'static>) {
        self.slots.insert(token, slot);
    }

    pub(crate) fn is_open(&self, token: u64) -> bool {
        self.slots.contains_key(&token)
    }

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

/// Parses a dtype name and a shape into metadata.
pub(crate) fn meta(
    py: Python<'_>,
    id: &StreamId,
    dtype: &str,
    shape: &[u64],
) -> PyResult<TensorMeta> {
    let dtype = dtype.parse::<DType>().map_err(|e| stream_err(py, id, &e))?;
    meta_of(py, id, dtype, shape)
}

/// [`meta`] of a dtype already parsed (or read from a tensor).
pub(crate) fn meta_of(
    py: Python<'_>,
    id: &StreamId,
    dtype: DType,
    shape: &[u64],
) -> PyResult<TensorMeta> {
    let meta = TensorMeta::new(dtype, shape).map_err(|e| stream_err(py, id, &e))?;
    // Refused here rather than at the consumer, where numpy and DLPack
    // could not show it (their shapes are int64).
    match dlpack::beyond_int64(meta.dtype(), meta.shape(), &[]) {
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
