//! [`LeftContext`]: `chunk` new items after up to `context` already shown.

use super::error::{positive, PolicyError};
use super::ChunkPolicy;
use std::fmt;

/// Chunks of `chunk` new items, each after the last `context` items of the
/// chunk before: `[0..10)`, `[8..20)`, `[18..30)`, ... for chunk 10,
/// context 2.
///
/// The first chunk shows `chunk` items and advances by `chunk - context`;
/// every later one shows `chunk + context` items and advances by `chunk`.
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, LeftContext};
///
/// let mut policy = LeftContext::new(10, 2)?;
/// assert_eq!((policy.window(), policy.stride()), (10, 8));
/// policy.register_chunk(8);
/// assert!(!policy.is_ready(11));
/// assert_eq!((policy.window(), policy.stride()), (12, 10));
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftContext {
    /// At least 1.
    chunk: usize,
    /// In `0..chunk`.
    context: usize,
    /// Whether the first chunk was registered.
    started: bool,
}

impl LeftContext {
    /// A left-context policy of `chunk` new items after `context` old ones.
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotPositive`] when `chunk` is 0,
    /// [`PolicyError::ContextOutOfRange`] when `context` is not below `chunk`.
    pub fn new(chunk: usize, context: usize) -> Result<Self, PolicyError> {
        positive("left-context chunk", chunk)?;
        if context >= chunk {
            return Err(PolicyError::ContextOutOfRange { context, chunk });
        }
        Ok(Self {
            chunk,
            context,
            started: false,
        })
    }

    /// The number of new items per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The number of items of the previous chunk shown again.
    pub fn context(&self) -> usize {
        self.context
    }
}

impl ChunkPolicy for LeftContext {
    fn is_ready(&self, available: usize) -> bool {
        available >= ChunkPolicy::window(self)
    }
    fn window(&self) -> usize {
        if self.started {
            self.chunk.saturating_add(self.context)
        } else {
            self.chunk
        }
    }
    fn stride(&self) -> usize {
        if self.started {
            self.chunk
        } else {
            self.chunk - self.context
        }
    }
    fn register_chunk(&mut self, _advanced: usize) {
        self.started = true;
    }
    fn max_window(&self) -> usize {
        self.chunk.saturating_add(self.context)
    }
}

impl fmt::Display for LeftContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "left-context:chunk={},context={}",
            self.chunk, self.context
        )
    }
}
