//! [`Fixed`]: chunks of `size` items, one after another.

use super::error::{positive, PolicyError};
use super::ChunkPolicy;
use std::fmt;

/// Chunks of `size` items, one after another, without overlap.
///
/// Ready when `size` items are in; window and stride are `size`.
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, Fixed};
///
/// let fixed = Fixed::new(30)?;
/// assert!(!fixed.is_ready(29));
/// assert!(fixed.is_ready(30));
/// assert_eq!((fixed.window(), fixed.stride()), (30, 30));
/// assert!(!fixed.continue_after_done());
/// assert!(Fixed::new(0).is_err());
///
/// let endless = Fixed::new(30)?.continuing_after_done();
/// assert!(endless.continue_after_done());
/// assert_eq!(endless.to_string(), "fixed:size=30,continue");
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixed {
    /// At least 1.
    size: usize,
    continue_after_done: bool,
}

impl Fixed {
    /// A fixed policy of `size` items. Its stream ends with a final chunk;
    /// [`continuing_after_done`](Self::continuing_after_done) makes it
    /// endless.
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotPositive`] when `size` is 0.
    pub fn new(size: usize) -> Result<Self, PolicyError> {
        positive("fixed size", size)?;
        Ok(Self {
            size,
            continue_after_done: false,
        })
    }

    /// The same policy, except that once the producer is done and every item
    /// was shown, its stream keeps offering empty, never final chunks (the
    /// consumer decides itself when to stop): the name's `continue` flag.
    #[must_use]
    pub fn continuing_after_done(self) -> Self {
        Self {
            continue_after_done: true,
            ..self
        }
    }

    /// The chunk size.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl ChunkPolicy for Fixed {
    fn is_ready(&self, available: usize) -> bool {
        available >= self.size
    }
    fn window(&self) -> usize {
        self.size
    }
    fn stride(&self) -> usize {
        self.size
    }
    fn register_chunk(&mut self, _advanced: usize) {}
    fn continue_after_done(&self) -> bool {
        self.continue_after_done
    }
    fn max_window(&self) -> usize {
        self.size
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fixed:size={}", self.size)?;
        if self.continue_after_done {
            f.write_str(",continue")?;
        }
        Ok(())
    }
}
