//! `StreamBuffer`: the consumer's per-request, per-edge buffer of SPEC
//! sections 2 and 4, on the shared-memory ring.

use crate::chunk::StreamChunk;
use crate::chunker::Chunker;
use crate::consumer::Consumer;
use crate::error::{SetupError, StreamError};
use crate::policy::ChunkPolicy;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// The consumer's stream buffer: collects the stream's tensors in
/// registration order and cuts them into chunks by its policy. `E` is the
/// caller's graph-edge type for the waiting-edge FIFO.
///
/// # Examples
///
/// ```
/// use shmstream::{in_process_buffer, policy::Sliding, DType, StreamConfig, TensorMeta};
/// let cfg = StreamConfig::new("req-7", "codec", "talker").capacity(8);
/// let (producer, mut buffer) = in_process_buffer::<()>(&cfg, Sliding::new(4, 2).unwrap()).unwrap();
/// for i in 0..7u32 {
///     let slot = producer.register(&format!("t{i}")).unwrap();
///     slot.write(TensorMeta::new(DType::F32, &[1]).unwrap(), &(i as f32).to_le_bytes()).unwrap();
/// }
/// producer.signal_done();
/// let mut windows = vec![];
/// while let Some(chunk) = buffer.next_chunk(None).unwrap() {
///     windows.push((chunk.start_offset(), chunk.len(), chunk.context_items(), chunk.is_final()));
/// }
/// assert_eq!(windows, [(0, 4, 0, false), (2, 4, 2, false), (4, 3, 2, true)]);
/// ```
pub struct StreamBuffer<E = ()> {
    consumer: Consumer,
    chunker: Chunker,
    edges: VecDeque<E>,
    names: [String; 3],
}

impl<E> fmt::Debug for StreamBuffer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamBuffer")
            .field("request_id", &self.names[0])
            .field("edge_name", &self.names[1])
            .field("from_partition", &self.names[2])
            .field("policy", &self.chunker.policy())
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl<E> StreamBuffer<E> {
    /// A buffer over an opened consumer handle.
    ///
    /// # Errors
    ///
    /// [`SetupError::WindowExceedsCapacity`] when the policy's largest window
    /// does not fit in the ring.
    pub fn new(
        consumer: Consumer,
        names: [String; 3],
        policy: impl ChunkPolicy + 'static,
    ) -> Result<Self, SetupError> {
        let window = policy.max_window();
        if window as u64 > consumer.capacity() {
            return Err(SetupError::WindowExceedsCapacity {
                window,
                capacity: consumer.capacity(),
            });
        }
        Ok(StreamBuffer {
            consumer,
            chunker: Chunker::new(Box::new(policy)),
            edges: VecDeque::new(),
            names,
        })
    }

    /// The request this stream belongs to.
    pub fn request_id(&self) -> &str {
        &self.names[0]
    }

    /// The graph edge it carries.
    pub fn edge_name(&self) -> &str {
        &self.names[1]
    }

    /// The partition it comes from.
    pub fn from_partition(&self) -> &str {
        &self.names[2]
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
    /// `None` once the final chunk was popped. `timeout` bounds the wait
    /// (`None`: the configured timeout of the stream).
    ///
    /// # Errors
    ///
    /// [`StreamError::Timeout`], [`StreamError::ProducerGone`], and as
    /// [`Consumer::poll`].
    pub fn next_chunk(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<StreamChunk<'_>>, StreamError> {
        if self.chunker.finished() {
            return Ok(None);
        }
        let timeout = timeout.or(self.consumer.timeout);
        let chunker = &self.chunker;
        let snap = self.consumer.wait_until(timeout, |s| {
            chunker.is_ready(s.available as usize, s.all_in)
        })?;
        self.pop_planned(snap.available).map(Some)
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
