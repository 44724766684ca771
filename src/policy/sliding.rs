//! [`Sliding`]: windows `stride` items apart, overlapping.

use super::error::{positive, PolicyError};
use super::ChunkPolicy;
use std::fmt;

/// Windows of `window` items whose starts are `stride` items apart; the last
/// `window - stride` items of one chunk open the next.
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, Sliding};
///
/// let sliding = Sliding::new(28, 7)?;
/// assert!(sliding.is_ready(28));
/// assert_eq!((sliding.window(), sliding.stride()), (28, 7));
/// assert_eq!(
///     Sliding::new(8, 9).unwrap_err().to_string(),
///     "sliding stride 9 must be between 1 and the window 8"
/// );
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sliding {
    /// At least 1.
    window: usize,
    /// In `1..=window`.
    stride: usize,
}

impl Sliding {
    /// A sliding policy of `window` items advancing by `stride`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotPositive`] when `window` is 0,
    /// [`PolicyError::StrideOutOfRange`] when `stride` is 0 or above `window`.
    pub fn new(window: usize, stride: usize) -> Result<Self, PolicyError> {
        positive("sliding window", window)?;
        if stride == 0 || stride > window {
            return Err(PolicyError::StrideOutOfRange { stride, window });
        }
        Ok(Self { window, stride })
    }

    /// The number of items each chunk shows.
    pub fn window(&self) -> usize {
        self.window
    }

    /// How far the stream advances after each chunk.
    pub fn stride(&self) -> usize {
        self.stride
    }
}

impl ChunkPolicy for Sliding {
    fn is_ready(&self, available: usize) -> bool {
        available >= self.window
    }
    fn window(&self) -> usize {
        self.window
    }
    fn stride(&self) -> usize {
        self.stride
    }
    fn register_chunk(&mut self, _advanced: usize) {}
    fn max_window(&self) -> usize {
        self.window
    }
}

impl fmt::Display for Sliding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sliding:window={},stride={}", self.window, self.stride)
    }
}
