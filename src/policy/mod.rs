//! Chunk policies: when the items of a stream make a chunk, how many items
//! that chunk shows (its *window*) and how far the stream then advances (its
//! *stride*).
//!
//! Five policies are built in, each a type with a validating constructor and
//! all of them gathered in [`Policy`], which is what a command line, a trace or
//! a configuration file names:
//!
//! | name | policy |
//! | --- | --- |
//! | `fixed:size=30` | [`Fixed`]: chunks of 30 items, no overlap |
//! | `fixed:size=30,continue` | [`Fixed`] that keeps offering empty chunks after the end |
//! | `sliding:window=28,stride=7` | [`Sliding`]: windows of 28 items, 7 apart |
//! | `left-context:chunk=10,context=2` | [`LeftContext`]: 10 new items after 2 already shown |
//! | `ramp:first=4,size=8,growth=2,max=32` | [`Ramp`]: 4, 8, 16, 32, 32, ... items |
//! | `scheduled:schedule=4/8/16,chunk=25,context=25,prime=0` | [`Scheduled`]: 4, 8, 16, then 25 new items, each after up to 25 already shown |
//!
//! Anything else can implement [`ChunkPolicy`] itself.
//!
//! (Layer 5 of 8, **policy**: chunk policies, one a file, their names, and
//! the chunker: pure counting, no memory and no OS. Uses nothing else in
//! the crate.)
//!
//! # Examples
//!
//! ```
//! use shmstream::policy::{ChunkPolicy, Policy, Ramp};
//!
//! let mut ramp: Policy = "ramp:first=4,size=8,growth=2,max=32".parse()?;
//! let mut windows = Vec::new();
//! for _ in 0..5 {
//!     windows.push(ramp.window());
//!     let stride = ramp.stride();
//!     ramp.register_chunk(stride);
//! }
//! assert_eq!(windows, [4, 8, 16, 32, 32]);
//! assert_eq!(Policy::Ramp(Ramp::new(4, 8, 2.0, Some(32))?).to_string(),
//!            "ramp:first=4,size=8,growth=2,max=32");
//! # Ok::<(), shmstream::policy::PolicyError>(())
//! ```

pub(crate) mod chunker;
mod error;
mod fixed;
mod left_context;
mod name;
mod ramp;
mod scheduled;
mod sliding;
mod spelling;

pub use error::PolicyError;
pub use fixed::Fixed;
pub use left_context::LeftContext;
pub use name::Policy;
pub use ramp::Ramp;
pub use scheduled::Scheduled;
pub use sliding::Sliding;

use std::fmt;

/// A chunk policy: it decides when the items in a stream's buffer make a
/// chunk, how many items the chunk shows and how far the stream advances.
///
/// The trait is object safe; a stream holds its policy as
/// `Box<dyn ChunkPolicy>`. A policy is asked about the *next* chunk only and
/// moves on to the chunk after it when [`register_chunk`] is called.
///
/// An implementation should keep `window() <= n` whenever `is_ready(n)` holds,
/// and `stride() <= window()`. A stream does not trust this: it shows at most
/// the items it has and advances at most by the window, so a policy that
/// breaks the rule gets a shorter chunk rather than a crash (and a failed
/// debug assertion in debug builds, to point at the bug).
///
/// [`register_chunk`]: ChunkPolicy::register_chunk
pub trait ChunkPolicy: Send + fmt::Debug {
    /// Is the next chunk ready when `available` items are in the buffer
    /// (arrived in order and not yet discarded)?
    fn is_ready(&self, available: usize) -> bool;

    /// The number of items the next chunk shows; meaningful when
    /// [`is_ready`](ChunkPolicy::is_ready) holds.
    fn window(&self) -> usize;

    /// How far the stream advances after the next chunk. Items of the window
    /// past the stride stay in the buffer and are shown again by the chunk
    /// after. It may be 0 (see [`Scheduled`]).
    fn stride(&self) -> usize;

    /// Told after each chunk is popped how far the stream advanced: the
    /// stride, or on a flush at the end of the stream the number of items
    /// flushed. The policy moves on to its next chunk either way.
    fn register_chunk(&mut self, advanced: usize);

    /// Whether the stream keeps offering empty, never final chunks after the
    /// producer is done and every item was shown; the consumer then decides
    /// itself when to stop. False unless overridden.
    fn continue_after_done(&self) -> bool {
        false
    }

    /// How many items count as already delivered before the stream starts:
    /// the first chunk's leading `primed()` items are reported as context.
    /// 0 unless overridden.
    fn primed(&self) -> usize {
        0
    }

    /// The largest window this policy can ever ask for, over its whole life
    /// from its first chunk on. A stream refuses a policy whose largest
    /// window does not fit its ring.
    fn max_window(&self) -> usize;
}
