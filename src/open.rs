//! The constructors: a stream in shared memory (two processes) or on the
//! heap (one process; what loom and Miri run).

use crate::buffer::StreamBuffer;
use crate::config::StreamConfig;
use crate::consumer::Consumer;
use crate::error::SetupError;
use crate::policy::ChunkPolicy;
use crate::producer::Producer;
#[cfg(any(loom, miri))]
use crate::protocol::heap::heap_ring;
use crate::protocol::ring::RingMem;
use crate::protocol::ring_consumer::ConsumerRing;
use crate::protocol::ring_producer::ProducerRing;

/// A stream within this process: a producer and a consumer for two threads
/// (or one). Same protocol and layout as a shared segment, in an anonymous
/// memory file mapped twice (on the heap under loom and Miri).
///
/// # Errors
///
/// [`SetupError::InvalidName`] and [`SetupError::InvalidConfig`] for a bad
/// configuration.
pub fn in_process(config: &StreamConfig) -> Result<(Producer, Consumer), SetupError> {
    let (p, c) = in_process_mem(config)?;
    Ok((
        Producer::from_ring(ProducerRing::new(p), config.timeout),
        Consumer::from_ring(ConsumerRing::new(c), config.timeout),
    ))
}

/// The memory of an in-process stream, as the producer's and the
/// consumer's views (also what a growing stream moves to, `grow.rs`).
pub(crate) fn in_process_mem(config: &StreamConfig) -> Result<(RingMem, RingMem), SetupError> {
    let geometry = config.validate()?;
    // Loom and Miri run the protocol on the heap; elsewhere a memfd gives
    // the double mapping, so stacked views work across the wrap.
    #[cfg(any(loom, miri))]
    return Ok(heap_ring(&geometry));
    #[cfg(not(any(loom, miri)))]
    {
        let _ = geometry; // `anonymous` checks the config itself
        crate::os::segment::anonymous(config)
    }
}

/// [`in_process`] with a [`StreamBuffer`] on the consumer's side.
///
/// # Errors
///
/// As [`in_process`], and [`SetupError::WindowExceedsCapacity`].
pub fn in_process_buffer<E>(
    config: &StreamConfig,
    policy: impl ChunkPolicy + 'static,
) -> Result<(Producer, StreamBuffer<E>), SetupError> {
    let (producer, consumer) = in_process(config)?;
    Ok((
        producer,
        StreamBuffer::new(consumer, config.id.clone(), policy).map_err(|e| e.error)?,
    ))
}

#[cfg(not(loom))]
impl Producer {
    /// Creates the stream's shared-memory segment (mode 0600, never through
    /// a symlink, reclaiming one whose owner died) and returns its producer.
    /// The segment is removed when the producer is dropped.
    ///
    /// # Errors
    ///
    /// [`SetupError::AlreadyExists`] when a live process owns the name,
    /// [`SetupError::ForeignSegment`] for another user's, and OS errors.
    pub fn create(config: &StreamConfig) -> Result<Producer, SetupError> {
        let (mem, _name) = crate::os::segment::create(config)?;
        Ok(Producer::from_ring(ProducerRing::new(mem), config.timeout))
    }
}

#[cfg(not(loom))]
impl Consumer {
    /// Opens the stream's segment as its only consumer, after checking its
    /// owner, mode, magic, version, layout and identity.
    ///
    /// # Errors
    ///
    /// [`SetupError::NotFound`], [`SetupError::NotInitialized`] (retry: the
    /// producer is still creating it), [`SetupError::LayoutMismatch`],
    /// [`SetupError::IdentityMismatch`], [`SetupError::ForeignSegment`],
    /// [`SetupError::ConsumerAlreadyAttached`], and OS errors.
    pub fn open(config: &StreamConfig) -> Result<Consumer, SetupError> {
        let (mem, _name) = crate::os::segment::open(config)?;
        Ok(Consumer::from_ring(ConsumerRing::new(mem), config.timeout))
    }
}

#[cfg(not(loom))]
impl<E> StreamBuffer<E> {
    /// Opens the stream's segment (as [`Consumer::open`]) with a policy.
    ///
    /// # Errors
    ///
    /// As [`Consumer::open`], and [`SetupError::WindowExceedsCapacity`].
    pub fn open(
        config: &StreamConfig,
        policy: impl ChunkPolicy + 'static,
    ) -> Result<Self, SetupError> {
        let (mem, _name) = crate::os::segment::open(config)?;
        // Refuse before attaching: a consumer handle that came and went
        // would mark the stream's consumer as gone for good.
        let window = policy.max_window();
        if window as u64 > mem.capacity() {
            return Err(SetupError::WindowExceedsCapacity {
                window,
                capacity: mem.capacity(),
            });
        }
        let consumer = Consumer::from_ring(ConsumerRing::new(mem), config.timeout);
        StreamBuffer::new(consumer, config.id.clone(), policy).map_err(|e| e.error)
    }
}
