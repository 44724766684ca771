//! `StreamBuffer`: the consumer's per-request, per-edge buffer of SPEC
//! sections 2 and 4, on the shared-memory ring.

use crate::chunk::StreamChunk;
use crate::config::StreamId;
use crate::consumer::Consumer;
use crate::error::{SetupError, StreamError};
use crate::policy::chunker::Chunker;
use crate::policy::ChunkPolicy;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// The consumer's stream buffer: collects the stream's tensors in
/// registration order and cuts them into chunks by its policy. `E` is the
/// caller's graph-edge type for the waiting-edge FIFO.
///
/// # Examples
///
/// ```
/// use shmstream::{in_process_buffer, policy::Sliding, DType, StreamConfig, StreamId, TensorMeta};
/// let cfg = StreamConfig::new(StreamId { request_id: "req-7".into(), edge_name: "codec".into(), from_partition: "talker".into() }).with_capacity(8);
/// let (producer, mut buffer) = in_process_buffer::<()>(&cfg, Sliding::new(4, 2).unwrap()).unwrap();
/// for i in 0..7u32 {
///     let slot = producer.register(&format!("t{i}")).unwrap();
///     slot.write(TensorMeta::new(DType::F32, &[1]).unwrap(), &(i as f32).to_le_bytes()).unwrap();
/// }
/// producer.signal_done();
/// let mut windows = vec![];
/// while let Some(chunk) = buffer.next_chunk().unwrap() {
///     windows.push((chunk.start_offset(), chunk.len(), chunk.context_items(), chunk.is_final()));
/// }
/// assert_eq!(windows, [(0, 4, 0, false), (2, 4, 2, false), (4, 3, 2, true)]);
/// ```
pub struct StreamBuffer<E = ()> {
    pub(crate) consumer: Consumer,
    pub(crate) chunker: Chunker,
    edges: VecDeque<E>,
    id: StreamId,
    /// Chunks popped as leases (`lease.rs`), not yet handed back.
    pub(crate) leases: Leases,
    /// Rings the stream moved away from (`grow.rs`) while leases of them
    /// were live, oldest first: each goes with its last lease.
    pub(crate) retired: Vec<Retired>,
    /// Whether a move learned the stream's item size from its items (a
    /// default given at creation is not learned).
    pub(crate) learned: bool,
}

/// A ring the stream left (`grow.rs`), kept for the leases popped from it.
#[derive(Debug)]
pub(crate) struct Retired {
    pub(crate) ring: crate::protocol::ring_consumer::ConsumerRing,
    pub(crate) leases: Leases,
}

/// [`StreamBuffer::new`] refused its arguments; the consumer comes back
/// untouched (dropping it would end the stream for good).
#[derive(Debug)]
pub struct NewBufferError {
    /// The consumer handle, still attached and at its position.
    pub consumer: Consumer,
    /// What was wrong.
    pub error: SetupError,
}

impl fmt::Display for NewBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for NewBufferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<E> fmt::Debug for StreamBuffer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamBuffer")
            .field("id", &self.id)
            .field("policy", &self.chunker.policy())
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl<E> StreamBuffer<E> {
    /// A buffer over an opened consumer handle. Its first chunk starts at
    /// the consumer's position (items the consumer already moved past are
    /// not shown again).
    ///
    /// # Errors
    ///
    /// [`SetupError::WindowExceedsCapacity`] when the policy's largest window
    /// does not fit in the ring; the consumer comes back in the error.
    // The error hands the consumer back by value (once per stream, not on
    // a hot path), hence its size.
    #[allow(clippy::result_large_err)]
    pub fn new(
        consumer: Consumer,
        id: StreamId,
        policy: impl ChunkPolicy + 'static,
    ) -> Result<Self, NewBufferError> {
        let window = policy.max_window();
        if window as u64 > consumer.capacity() {
            return Err(NewBufferError {
                error: SetupError::WindowExceedsCapacity {
                    window,
                    capacity: consumer.capacity(),
                },
                consumer,
            });
        }
        let start = consumer.position();
        Ok(StreamBuffer {
            consumer,
            chunker: Chunker::at(Box::new(policy), start),
            edges: VecDeque::new(),
            id,
            leases: Leases::default(),
            retired: Vec::new(),
            learned: false,
        })
    }

    /// The stream's identity.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// The request this stream belongs to.
    pub fn request_id(&self) -> &str {
        &self.id.request_id
    }

    /// The graph edge it carries.
    pub fn edge_name(&self) -> &str {
        &self.id.edge_name
    }

    /// The partition it comes from.
    pub fn from_partition(&self) -> &str {
        &self.id.from_partition
    }

    /// The low-level consumer handle underneath.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Global position of the first item still in the buffer.
    pub fn consumed(&self) -> u64 {
        self.chunker.consumed()
    }

    /// Items of the available prefix not yet discarded (the buffer
    /// length), on a fresh look at the ring.
    ///
    /// # Errors
    ///
    /// As [`Consumer::poll`].
    pub fn available(&mut self) -> Result<u64, StreamError> {
        self.consumer.poll()
    }

    /// Whether a final chunk was popped (no chunk will come again).
    pub fn is_finished(&self) -> bool {
        self.chunker.finished()
    }

    /// Whether the stream has nothing new to give, ever: its policy
    /// continues after done, everything is in and taken, and one empty
    /// chunk was popped since. `pop_chunk` goes on giving that same empty
    /// chunk (the reference's behaviour), but a [`StreamSet`](crate::StreamSet)
    /// no longer reports the stream, so a waiting worker sleeps.
    pub fn is_quiet(&self) -> bool {
        self.chunker.idle()
    }

    /// SPEC section 2's `has_chunk_ready`, on a fresh look at the ring.
    ///
    /// # Errors
    ///
    /// As [`Consumer::poll`].
    pub fn has_chunk_ready(&mut self) -> Result<bool, StreamError> {
        let available = self.consumer.poll()?;
        Ok(self
            .chunker
            .is_ready(available as usize, self.consumer.is_all_in()))
    }

    /// Pops the next chunk (SPEC section 2).
    ///
    /// # Errors
    ///
    /// [`StreamError::NotReady`] when `has_chunk_ready()` is false (nothing
    /// changes), and as [`Consumer::poll`].
    pub fn pop_chunk(&mut self) -> Result<StreamChunk<'_>, StreamError> {
        let available = self.consumer.poll()?;
        self.pop_planned(available)
    }

    fn pop_planned(&mut self, available: u64) -> Result<StreamChunk<'_>, StreamError> {
        let all_in = self.consumer.is_all_in();
        let plan = self
            .chunker
            .pop(available as usize, all_in)
            .ok_or(StreamError::NotReady)?;
        let ring = &mut self.consumer.ring;
        // The chunker and the ring move together, from the same start.
        assert_eq!(
            plan.start_offset,
            ring.consumed(),
            "chunker and ring disagree"
        );
        ring.advance(plan.advance as u64);
        Ok(StreamChunk::new(
            ring,
            plan.chunk_index,
            plan.start_offset,
            plan.window,
            plan.is_final,
            plan.context_items,
        ))
    }

    /// Waits (sleeping, not spinning) until a chunk is ready and pops it;
    /// `None` once the final chunk was popped. Waits at most the stream's
    /// configured timeout ([`StreamConfig::with_timeout`](crate::StreamConfig::with_timeout)).
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`], [`StreamError::ProducerGone`], and as
    /// [`Consumer::poll`].
    pub fn next_chunk(&mut self) -> Result<Option<StreamChunk<'_>>, StreamError> {
        let timeout = self.consumer.timeout;
        self.next_chunk_timeout(timeout)
    }

    /// As [`next_chunk`](Self::next_chunk), waiting at most `timeout`
    /// (`None`: until a chunk, the end, or the producer's death; the same
    /// meaning as in every `*_timeout`/`wait_*` call of the crate).
    ///
    /// # Errors
    ///
    /// As [`next_chunk`](Self::next_chunk).
    pub fn next_chunk_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<StreamChunk<'_>>, StreamError> {
        match self.wait_chunk(timeout)? {
            Some(available) => self.pop_planned(available).map(Some),
            None => Ok(None),
        }
    }

    /// Waits until a chunk is ready, without popping it; the items
    /// available then, or `None` once the final chunk was popped. What an
    /// event loop's helper thread waits on: the loop then pops the chunk
    /// itself, so a wait given up (a cancelled `await`) takes nothing.
    ///
    /// # Errors
    ///
    /// As [`next_chunk_timeout`](Self::next_chunk_timeout).
    pub fn wait_chunk(&mut self, timeout: Option<Duration>) -> Result<Option<u64>, StreamError> {
        if self.chunker.finished() {
            return Ok(None);
        }
        let chunker = &self.chunker;
        let snap = self.consumer.wait_until(timeout, |s| {
            chunker.is_ready(s.available as usize, s.all_in)
        })?;
        Ok(Some(snap.available))
    }

    /// The reference's `store_uningested_edge`: keeps an edge the consumer
    /// could not hand on yet, first in first out.
    pub fn store_uningested_edge(&mut self, edge: E) {
        self.edges.push_back(edge);
    }

    /// The reference's `pop_waiting_edge`: the oldest stored edge.
    pub fn pop_waiting_edge(&mut self) -> Option<E> {
        self.edges.pop_front()
    }
}

/// The buffer's table of live leases.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// By serial: the window `(start, len)` each live lease shows.
    pub(crate) live: BTreeMap<u64, (u64, usize)>,
    /// By start position: how many live, non-empty leases start there. Its
    /// first key is the ring's hold.
    pub(crate) holds: BTreeMap<u64, u32>,
}

impl Leases {
    /// The oldest position a live lease shows (`u64::MAX`: none).
    pub(crate) fn hold(&self) -> u64 {
        self.holds.keys().next().copied().unwrap_or(u64::MAX)
    }

    /// Forgets the live lease with this serial (and its hold).
    pub(crate) fn forget(&mut self, serial: u64) {
        let Some((start, len)) = self.live.remove(&serial) else {
            return;
        };
        if len > 0 {
            if let Some(count) = self.holds.get_mut(&start) {
                *count -= 1;
                if *count == 0 {
                    self.holds.remove(&start);
                }
            }
        }
    }

    /// The window of the live lease with this serial.
    pub(crate) fn window(&self, serial: u64) -> Option<(u64, usize)> {
        self.live.get(&serial).copied()
    }
}
