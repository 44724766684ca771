//! [`Ramp`]: chunks that grow from `first` by `growth` up to `max`.

use super::error::{positive, PolicyError};
use super::ChunkPolicy;
use std::fmt;

/// Chunks that grow: `first` items, then `size`, then `size` times `growth`,
/// times `growth` again, ..., up to `max`. Each chunk shows its items without
/// overlap. (The use: a first audio chunk early, for a short time to first
/// sound, then larger chunks.)
///
/// A running size, a real number, starts at `size` and is multiplied by
/// `growth` after every chunk from the second on, capped at `max`; each chunk
/// takes the running size rounded to the nearest integer, ties to even (7.5
/// gives 8, 8.5 gives 8).
///
/// Validation: `first` and `size` are at least 1; `growth` is finite and at
/// least 1; a `growth` above 1 needs a `max`; a `max`, when given, is at
/// least `first` and at least `size` (it is the largest chunk the ramp takes;
/// a smaller one would contradict the first two chunks).
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, Ramp};
///
/// let mut ramp = Ramp::new(4, 5, 1.5, Some(20))?;
/// let mut windows = Vec::new();
/// for _ in 0..6 {
///     windows.push(ramp.window());
///     ramp.register_chunk(ramp.stride());
/// }
/// // running sizes 5, 7.5, 11.25, 16.875, then capped at 20
/// assert_eq!(windows, [4, 5, 8, 11, 17, 20]);
///
/// let endless = Ramp::new(4, 8, 1.0, None)?.continuing_after_done();
/// assert!(endless.continue_after_done());
/// assert_eq!(endless.to_string(), "ramp:first=4,size=8,continue");
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Ramp {
    /// At least 1.
    first: usize,
    /// At least 1.
    size: usize,
    /// Finite, at least 1.
    growth: f64,
    /// At least `first` and `size`; required when `growth > 1`.
    max: Option<usize>,
    continue_after_done: bool,
    /// Chunks registered so far, saturating (only 0, 1 and "more" matter).
    chunks: usize,
    /// The running size for the chunks from the third on: finite, in
    /// `size..=max` (it never changes when `growth` is 1).
    running: f64,
}

impl Ramp {
    /// A ramp policy; see the type's documentation for the rules. Its
    /// stream ends with a final chunk;
    /// [`continuing_after_done`](Self::continuing_after_done) makes it
    /// endless.
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotPositive`] when `first` or `size` is 0,
    /// [`PolicyError::GrowthOutOfRange`] when `growth` is below 1 or not
    /// finite, [`PolicyError::GrowthWithoutMax`] when `growth` is above 1 and
    /// `max` is `None`, [`PolicyError::MaxTooSmall`] when `max` is below
    /// `first` or `size`.
    pub fn new(
        first: usize,
        size: usize,
        growth: f64,
        max: Option<usize>,
    ) -> Result<Self, PolicyError> {
        positive("ramp first", first)?;
        positive("ramp size", size)?;
        // Written so that NaN fails too.
        if !(growth.is_finite() && growth >= 1.0) {
            return Err(PolicyError::GrowthOutOfRange { growth });
        }
        match max {
            None if growth > 1.0 => return Err(PolicyError::GrowthWithoutMax { growth }),
            Some(max) if max < first || max < size => {
                return Err(PolicyError::MaxTooSmall { max, first, size })
            }
            _ => {}
        }
        Ok(Self {
            first,
            size,
            growth,
            max,
            continue_after_done: false,
            chunks: 0,
            running: size as f64,
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

    /// The size of the first chunk.
    pub fn first(&self) -> usize {
        self.first
    }

    /// The size of the second chunk, where the running size starts.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The factor the running size grows by after each chunk from the second on.
    pub fn growth(&self) -> f64 {
        self.growth
    }

    /// The cap on the running size, if any.
    pub fn max(&self) -> Option<usize> {
        self.max
    }

    /// The largest size the running size can reach: the max when `growth`
    /// is above 1 (it then reaches it after finitely many chunks), `size`
    /// when it is 1 (it never moves, whatever the max).
    fn cap(&self) -> usize {
        if self.growth > 1.0 {
            self.max.unwrap_or(self.size)
        } else {
            self.size
        }
    }

    /// The size of the next chunk.
    fn current(&self) -> usize {
        match self.chunks {
            0 => self.first,
            1 => self.size,
            _ => {
                let rounded = self.running.round_ties_even();
                let cap = self.cap();
                // Compared as floats and clamped to `size..=cap` so that sizes
                // beyond f64's 53 bits of precision still give `cap` or
                // `size` exactly.
                if rounded >= cap as f64 {
                    cap
                } else {
                    (rounded as usize).clamp(self.size, cap)
                }
            }
        }
    }
}

impl ChunkPolicy for Ramp {
    fn is_ready(&self, available: usize) -> bool {
        available >= self.current()
    }
    fn window(&self) -> usize {
        self.current()
    }
    fn stride(&self) -> usize {
        self.current()
    }
    fn register_chunk(&mut self, _advanced: usize) {
        if self.chunks >= 1 {
            self.running = (self.running * self.growth).min(self.cap() as f64);
        }
        self.chunks = self.chunks.saturating_add(1);
    }
    fn continue_after_done(&self) -> bool {
        self.continue_after_done
    }
    fn max_window(&self) -> usize {
        self.first.max(self.cap())
    }
}

impl fmt::Display for Ramp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ramp:first={},size={}", self.first, self.size)?;
        // f64's Display prints the shortest text that parses back to the
        // same value, so the name round-trips.
        if self.growth != 1.0 {
            write!(f, ",growth={}", self.growth)?;
        }
        if let Some(max) = self.max {
            write!(f, ",max={max}")?;
        }
        if self.continue_after_done {
            f.write_str(",continue")?;
        }
        Ok(())
    }
}
