//! [`Scheduled`]: a schedule of first chunk sizes, then `chunk` new items
//! after up to `context` already shown.

use super::error::{positive, PolicyError};
use super::ChunkPolicy;
use std::fmt;

/// Chunks whose count of new items follows a schedule, each new part preceded
/// by up to `context` items delivered before.
///
/// Chunk `k` brings `new = schedule[k]` new items (`chunk` once the schedule
/// runs out) after `ctx = min(context, delivered)` items already delivered,
/// where `delivered` counts the new items handed out so far, starting at
/// `prime`. Its window is `ctx + new`; its stride leaves the stream
/// `min(context, delivered + new)` items before the next chunk's first new
/// item, so the stride can be 0 while the stream is young. Schedule 4/8/16,
/// chunk 25, context 25 gives windows 4, 12, 28, 50, 50, ... and strides 0,
/// 0, 3, 25, 25, ...
///
/// `prime` lets a stream start with items that count as delivered (padding,
/// say): the first `prime` items are context of the first chunk. The schedule
/// may be empty.
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, Scheduled};
///
/// let mut policy = Scheduled::new(vec![4, 8, 16], 25, 25, 0)?;
/// let mut chunks = Vec::new();
/// for _ in 0..5 {
///     chunks.push((policy.window(), policy.stride()));
///     policy.register_chunk(policy.stride());
/// }
/// assert_eq!(chunks, [(4, 0), (12, 0), (28, 3), (50, 25), (50, 25)]);
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// Every entry at least 1; may be empty.
    schedule: Vec<usize>,
    /// At least 1.
    chunk: usize,
    context: usize,
    /// In `0..=context`.
    prime: usize,
    /// Index of the next chunk, counted up to `schedule.len()` only (beyond
    /// it every chunk brings `chunk` new items).
    next: usize,
    /// New items delivered so far (from `prime` on), counted up to `context`
    /// only (beyond it only `context` matters); so in `0..=context`.
    delivered: usize,
}

impl Scheduled {
    /// A scheduled policy; see the type's documentation for the rules.
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotPositive`] when `chunk` is 0,
    /// [`PolicyError::ZeroScheduleEntry`] when an entry of `schedule` is 0,
    /// [`PolicyError::PrimeOutOfRange`] when `prime` is above `context`.
    pub fn new(
        schedule: Vec<usize>,
        chunk: usize,
        context: usize,
        prime: usize,
    ) -> Result<Self, PolicyError> {
        if let Some(index) = schedule.iter().position(|&entry| entry == 0) {
            return Err(PolicyError::ZeroScheduleEntry { index });
        }
        positive("scheduled chunk", chunk)?;
        if prime > context {
            return Err(PolicyError::PrimeOutOfRange { prime, context });
        }
        Ok(Self {
            schedule,
            chunk,
            context,
            prime,
            next: 0,
            delivered: prime,
        })
    }

    /// The counts of new items of the first chunks.
    pub fn schedule(&self) -> &[usize] {
        &self.schedule
    }

    /// The count of new items of every chunk after the schedule.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The most delivered items shown again before a chunk's new items.
    pub fn context(&self) -> usize {
        self.context
    }

    /// The items counted as delivered before the stream starts.
    pub fn prime(&self) -> usize {
        self.prime
    }

    fn new_items(&self) -> usize {
        self.schedule.get(self.next).copied().unwrap_or(self.chunk)
    }
}

impl ChunkPolicy for Scheduled {
    fn is_ready(&self, available: usize) -> bool {
        available >= ChunkPolicy::window(self)
    }
    fn window(&self) -> usize {
        self.context
            .min(self.delivered)
            .saturating_add(self.new_items())
    }
    fn stride(&self) -> usize {
        let kept = self
            .context
            .min(self.delivered.saturating_add(self.new_items()));
        ChunkPolicy::window(self) - kept
    }
    fn register_chunk(&mut self, _advanced: usize) {
        self.delivered = self
            .context
            .min(self.delivered.saturating_add(self.new_items()));
        self.next = self.schedule.len().min(self.next + 1);
    }
    fn primed(&self) -> usize {
        self.prime
    }
    fn max_window(&self) -> usize {
        // After the schedule, `delivered` grows by `chunk` per chunk, so the
        // window `context + chunk` is reached; inside the schedule each
        // window is computed as the stream would.
        let mut delivered = self.prime;
        let mut largest = self.context.saturating_add(self.chunk);
        for &new in &self.schedule {
            largest = largest.max(self.context.min(delivered).saturating_add(new));
            delivered = delivered.saturating_add(new);
        }
        largest
    }
}

impl fmt::Display for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scheduled:")?;
        if !self.schedule.is_empty() {
            f.write_str("schedule=")?;
            for (i, entry) in self.schedule.iter().enumerate() {
                if i > 0 {
                    f.write_str("/")?;
                }
                write!(f, "{entry}")?;
            }
            f.write_str(",")?;
        }
        write!(f, "chunk={},context={}", self.chunk, self.context)?;
        if self.prime != 0 {
            write!(f, ",prime={}", self.prime)?;
        }
        Ok(())
    }
}
