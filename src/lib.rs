//! # shmstream
//!
//! Moves tensors between two processes on one host through a lock-free,
//! single-producer single-consumer ring of tensor slots in shared memory,
//! and cuts the stream into chunks the way a streaming model needs them.
//!
//! - The producer (the process that receives tensors, e.g. over RDMA)
//!   [`register`](Producer::register)s each tensor id in stream order; the
//!   bytes then land straight in the reserved [`Slot`], and slots are
//!   committed in any order.
//! - The consumer sees only the in-order available prefix. A
//!   [`StreamBuffer`] applies a [chunk policy](policy) and hands out
//!   [`StreamChunk`]s whose items are read in place; a window of same-shaped
//!   items is one stacked [`TensorView`], also across the ring's wrap
//!   (the payload is mapped twice back to back).
//!
//! ```
//! use shmstream::{in_process_buffer, policy::Fixed, DType, StreamConfig, StreamId, TensorMeta};
//! let cfg = StreamConfig::new(StreamId { request_id: "req-7".into(), edge_name: "codec_tokens".into(), from_partition: "talker".into() }).with_capacity(8).with_item_bytes(512);
//! let (producer, mut buffer) = in_process_buffer::<()>(&cfg, Fixed::new(2).unwrap()).unwrap();
//! for i in 0..3i64 {
//!     let frame: Vec<u8> = (0..7).flat_map(|k| (i * 10 + k).to_le_bytes()).collect();
//!     producer.register(&format!("t{i}")).unwrap()
//!         .write(TensorMeta::new(DType::I64, &[7]).unwrap(), &frame).unwrap();
//! }
//! producer.signal_done();
//! let chunk = buffer.next_chunk().unwrap().unwrap();
//! let view = chunk.stacked().unwrap();            // [2, 7] i64, zero copy
//! assert_eq!(view.shape(), &[2, 7]);
//! assert_eq!(view.item(1).unwrap()[..8], 10i64.to_le_bytes());
//! drop(chunk);
//! let last = buffer.next_chunk().unwrap().unwrap();
//! assert!(last.is_final() && last.len() == 1);
//! ```
//!
//! Across processes, the producer calls [`Producer::create`] and the
//! consumer [`StreamBuffer::open`] (or [`Consumer::open`]) with the same
//! [`StreamConfig`].

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// Segment geometry (up to 1 TiB of payload, 64-bit offsets) is turned into
// addresses with `as usize`; on a narrower target that would truncate.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("shmstream supports 64-bit targets only: segment offsets and sizes are 64-bit and are used as addresses");

// The layers, lowest first; each folder's `mod.rs` says what it may use,
// `tests/layering.rs` checks it, and docs/design.md draws the picture.
//
// 1. error.rs   the error types every layer returns
// 2. sync/      the atomics (std or loom) and the doorbell (futex, membarrier)
// 3. protocol/  the segment's bytes and the rules for changing them: no OS calls
// 4. config.rs  what names and sizes a stream
// 5. policy/    chunk policies and the chunker: pure counting
// 6. os/        shared-memory segments, liveness locks, fork
// 7. (top)      the handles: producer, consumer, buffer, chunk, view, lease, batch, open
// 8. hub/       a worker's many streams and one wake-up
//    binding/   beside them: the shared layer of every language binding
mod config;
mod error;
#[cfg(not(loom))]
mod os;
pub mod policy;
mod protocol;
mod sync;

mod batch;
mod buffer;
mod chunk;
mod consumer;
mod grow;
mod lease;
mod open;
mod pending;
mod producer;
mod view;

mod hub;

pub mod binding;
#[cfg(all(feature = "fuzzing", not(loom)))]
#[doc(hidden)]
pub mod fuzzing;

// The loom models run the hand-over decision itself (not part of the API).
#[cfg(loom)]
#[doc(hidden)]
pub use protocol::handover;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use batch::{BatchError, BatchItem};
pub use buffer::{NewBufferError, StreamBuffer};
pub use chunk::StreamChunk;
pub use config::{StreamConfig, StreamId, DEFAULT_PREFIX, MAX_PREFIX_LEN};
pub use consumer::Consumer;
pub use error::{AbandonReason, Resource, SetupError, StreamError, MAX_REASON_LEN};
pub use grow::{Grown, Need};
pub use hub::bell_wait::BellWait;
pub use hub::producer::Hub;
pub use hub::stream_set::{Adopter, StreamKey, StreamSet, WATCH_SLICE};
pub use lease::{ChunkLease, ForeignLease};
pub use open::{in_process, in_process_buffer};
#[cfg(not(loom))]
pub use os::hub_segment::{hub_name, inspect_hub, HubInfo, HubStreamInfo, MAX_WORKER_LEN};
#[cfg(not(loom))]
pub use os::inspect::{inspect, SegmentInfo};
#[cfg(not(loom))]
pub use os::reclaim::{is_dead, remove_if_dead};
#[cfg(not(loom))]
pub use os::shm::list_segments;
pub use producer::{CommitError, Producer, Slot};
pub use protocol::hub_layout::{
    DEFAULT_HUB_ENTRIES, MAX_HUB_ENTRIES, MAX_HUB_PRODUCERS, MIN_HUB_ENTRIES,
};
pub use protocol::layout::{
    placement_align, MAX_ALIGN, MAX_CAPACITY, MAX_ID_LEN, MAX_NAME_LEN, MAX_PAYLOAD_BYTES,
    MIN_ALIGN,
};
pub use protocol::tensor::{DType, TensorMeta, MAX_DIMS};
pub use view::{Element, ItemView, TensorView};
