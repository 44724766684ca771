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

use std::error::Error;
use std::fmt;
use std::str::FromStr;

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

// ---------------------------------------------------------------------------
// Errors

/// Why a chunk policy could not be built or parsed.
///
/// Every variant's `Display` is a sentence naming the wrong value and the
/// limit it broke.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PolicyError {
    /// A count that must be at least 1 was 0.
    NotPositive {
        /// The parameter, with its policy, as in `"fixed size"`.
        parameter: &'static str,
    },
    /// An entry of a [`Scheduled`] schedule was 0.
    ZeroScheduleEntry {
        /// Its position in the schedule, counting from 0.
        index: usize,
    },
    /// A [`Sliding`] stride was outside `1..=window`.
    StrideOutOfRange {
        /// The stride given.
        stride: usize,
        /// The window it must not exceed.
        window: usize,
    },
    /// A [`LeftContext`] context was not below its chunk.
    ContextOutOfRange {
        /// The context given.
        context: usize,
        /// The chunk it must stay below.
        chunk: usize,
    },
    /// A [`Ramp`] growth was below 1, infinite or not a number.
    GrowthOutOfRange {
        /// The growth given.
        growth: f64,
    },
    /// A [`Ramp`] growth above 1 came without a max.
    GrowthWithoutMax {
        /// The growth given.
        growth: f64,
    },
    /// A [`Ramp`] max was below its first or its size.
    MaxTooSmall {
        /// The max given.
        max: usize,
        /// The ramp's first chunk size.
        first: usize,
        /// The ramp's second chunk size.
        size: usize,
    },
    /// A [`Scheduled`] prime was larger than its context.
    PrimeOutOfRange {
        /// The prime given.
        prime: usize,
        /// The context it must not exceed.
        context: usize,
    },
    /// A policy name was not one of the five known names.
    UnknownPolicy {
        /// The name given (the text before the `:`).
        name: String,
    },
    /// A policy name carried a key that policy does not take.
    UnknownKey {
        /// The policy named.
        policy: &'static str,
        /// The key given.
        key: String,
    },
    /// A policy name lacked a key that policy needs.
    MissingKey {
        /// The policy named.
        policy: &'static str,
        /// The key it needs.
        key: &'static str,
    },
    /// A key was given twice.
    RepeatedKey {
        /// The policy named.
        policy: &'static str,
        /// The repeated key.
        key: &'static str,
    },
    /// A key's value was not a number of the kind it takes.
    BadNumber {
        /// The policy named.
        policy: &'static str,
        /// The key (`"schedule entry"` for one entry of a schedule).
        key: &'static str,
        /// The text that did not parse.
        value: String,
    },
    /// A key that takes a value was given without `=value`.
    MissingValue {
        /// The policy named.
        policy: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A flag (`continue`) was given a value.
    UnexpectedValue {
        /// The policy named.
        policy: &'static str,
        /// The flag.
        key: &'static str,
        /// The value given to it.
        value: String,
    },
    /// Two commas in a row, or a comma at the end.
    EmptyParameter {
        /// The policy named.
        policy: &'static str,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPositive { parameter } => {
                write!(f, "{parameter} must be at least 1, got 0")
            }
            Self::ZeroScheduleEntry { index } => write!(
                f,
                "scheduled schedule entry {index} (counting from 0) must be at least 1, got 0"
            ),
            Self::StrideOutOfRange { stride, window } => write!(
                f,
                "sliding stride {stride} must be between 1 and the window {window}"
            ),
            Self::ContextOutOfRange { context, chunk } => write!(
                f,
                "left-context context {context} must be between 0 and {} (below the chunk {chunk})",
                chunk.saturating_sub(1)
            ),
            Self::GrowthOutOfRange { growth } => write!(
                f,
                "ramp growth {growth} must be a finite number of at least 1"
            ),
            Self::GrowthWithoutMax { growth } => write!(
                f,
                "ramp growth {growth} is above 1, so a max is required to bound the chunk size"
            ),
            Self::MaxTooSmall { max, first, size } => write!(
                f,
                "ramp max {max} must be at least the first size {first} and the size {size}"
            ),
            Self::PrimeOutOfRange { prime, context } => write!(
                f,
                "scheduled prime {prime} must be between 0 and the context {context}"
            ),
            Self::UnknownPolicy { name } => {
                if name.is_empty() {
                    f.write_str("the chunk policy name is empty")?;
                } else {
                    write!(f, "unknown chunk policy `{name}`")?;
                }
                f.write_str("; the accepted policies are ")?;
                write_list(f, &KINDS.map(|kind| kind.name))
            }
            Self::UnknownKey { policy, key } => {
                write!(f, "{policy} policy has no key `{key}`; it accepts ")?;
                write_list(f, Kind::named(policy).map_or(&[], |kind| kind.keys))
            }
            Self::MissingKey { policy, key } => {
                write!(f, "{policy} policy needs the key `{key}`")?;
                if let Some(kind) = Kind::named(policy) {
                    write!(f, ", as in `{}`", kind.example)?;
                }
                Ok(())
            }
            Self::RepeatedKey { policy, key } => {
                write!(f, "{policy} key `{key}` is given more than once")
            }
            Self::BadNumber { policy, key, value } => {
                if *key == "growth" {
                    write!(f, "{policy} {key} `{value}` is not a number")
                } else {
                    write!(
                        f,
                        "{policy} {key} `{value}` is not a whole number from 0 to {}",
                        usize::MAX
                    )
                }
            }
            Self::MissingValue { policy, key } => {
                write!(f, "{policy} key `{key}` needs a value, as in `{key}=8`")
            }
            Self::UnexpectedValue { policy, key, value } => {
                write!(
                    f,
                    "{policy} flag `{key}` takes no value, got `{key}={value}`"
                )
            }
            Self::EmptyParameter { policy } => write!(
                f,
                "{policy} policy has an empty parameter (two commas in a row or a trailing comma)"
            ),
        }
    }
}

impl Error for PolicyError {}

/// Writes `a, b and c`.
fn write_list(f: &mut fmt::Formatter<'_>, items: &[&str]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(if i + 1 == items.len() { " and " } else { ", " })?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

fn positive(parameter: &'static str, value: usize) -> Result<(), PolicyError> {
    if value == 0 {
        Err(PolicyError::NotPositive { parameter })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The five policies

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

// ---------------------------------------------------------------------------
// Policy: any of the five, by name

/// Any of the built-in chunk policies; this is what a policy name parses to.
///
/// `Display` prints the canonical name of the policy's parameters (not of
/// its progress through a stream), and parsing that name gives back an equal,
/// fresh policy. Two policies are equal when their parameters are equal and
/// they are at the same point of their sequence of chunks.
///
/// Names are `kind:key=value,...` with the keys in any order: `fixed:size=30`,
/// `fixed:size=30,continue`, `sliding:window=28,stride=7`,
/// `left-context:chunk=10,context=2`,
/// `ramp:first=4,size=8,growth=2,max=32,continue` (`growth` defaults to 1,
/// `max` and `continue` are optional),
/// `scheduled:schedule=4/8/16,chunk=25,context=25,prime=0` (`schedule`
/// defaults to empty, `prime` to 0). Whitespace around the whole name and
/// around each key and value is ignored; names and keys are lower case.
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, Policy, Sliding};
///
/// let policy = "sliding:window=4,stride=2".parse::<shmstream::policy::Policy>()?;
/// assert_eq!(policy, Policy::Sliding(Sliding::new(4, 2)?));
/// assert_eq!((policy.window(), policy.stride()), (4, 2));
/// assert_eq!(policy.to_string(), "sliding:window=4,stride=2");
///
/// let error = "sliding:window=4,step=2".parse::<Policy>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "sliding policy has no key `step`; it accepts window and stride"
/// );
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// See [`Fixed`].
    Fixed(Fixed),
    /// See [`Sliding`].
    Sliding(Sliding),
    /// See [`LeftContext`].
    LeftContext(LeftContext),
    /// See [`Ramp`].
    Ramp(Ramp),
    /// See [`Scheduled`].
    Scheduled(Scheduled),
}

impl Policy {
    fn inner(&self) -> &dyn ChunkPolicy {
        match self {
            Self::Fixed(p) => p,
            Self::Sliding(p) => p,
            Self::LeftContext(p) => p,
            Self::Ramp(p) => p,
            Self::Scheduled(p) => p,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn ChunkPolicy {
        match self {
            Self::Fixed(p) => p,
            Self::Sliding(p) => p,
            Self::LeftContext(p) => p,
            Self::Ramp(p) => p,
            Self::Scheduled(p) => p,
        }
    }
}

impl ChunkPolicy for Policy {
    fn is_ready(&self, available: usize) -> bool {
        self.inner().is_ready(available)
    }
    fn window(&self) -> usize {
        self.inner().window()
    }
    fn stride(&self) -> usize {
        self.inner().stride()
    }
    fn register_chunk(&mut self, advanced: usize) {
        self.inner_mut().register_chunk(advanced);
    }
    fn continue_after_done(&self) -> bool {
        self.inner().continue_after_done()
    }
    fn primed(&self) -> usize {
        self.inner().primed()
    }
    fn max_window(&self) -> usize {
        self.inner().max_window()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(p) => p.fmt(f),
            Self::Sliding(p) => p.fmt(f),
            Self::LeftContext(p) => p.fmt(f),
            Self::Ramp(p) => p.fmt(f),
            Self::Scheduled(p) => p.fmt(f),
        }
    }
}

impl From<Fixed> for Policy {
    fn from(policy: Fixed) -> Self {
        Self::Fixed(policy)
    }
}

impl From<Sliding> for Policy {
    fn from(policy: Sliding) -> Self {
        Self::Sliding(policy)
    }
}

impl From<LeftContext> for Policy {
    fn from(policy: LeftContext) -> Self {
        Self::LeftContext(policy)
    }
}

impl From<Ramp> for Policy {
    fn from(policy: Ramp) -> Self {
        Self::Ramp(policy)
    }
}

impl From<Scheduled> for Policy {
    fn from(policy: Scheduled) -> Self {
        Self::Scheduled(policy)
    }
}

/// What the parser knows of one policy name.
#[derive(Clone, Copy)]
struct Kind {
    name: &'static str,
    /// Every key this policy accepts, in canonical order.
    keys: &'static [&'static str],
    example: &'static str,
    build: fn(&Params<'_>) -> Result<Policy, PolicyError>,
}

const KINDS: [Kind; 5] = [
    Kind {
        name: "fixed",
        keys: &["size", "continue"],
        example: "fixed:size=30",
        build: |p| {
            let fixed = Fixed::new(p.required("size")?)?;
            Ok(continuing_if(p.flag("continue")?, fixed, Fixed::continuing_after_done).into())
        },
    },
    Kind {
        name: "sliding",
        keys: &["window", "stride"],
        example: "sliding:window=28,stride=7",
        build: |p| Ok(Sliding::new(p.required("window")?, p.required("stride")?)?.into()),
    },
    Kind {
        name: "left-context",
        keys: &["chunk", "context"],
        example: "left-context:chunk=10,context=2",
        build: |p| Ok(LeftContext::new(p.required("chunk")?, p.required("context")?)?.into()),
    },
    Kind {
        name: "ramp",
        keys: &["first", "size", "growth", "max", "continue"],
        example: "ramp:first=4,size=8,growth=2,max=32",
        build: |p| {
            let first = p.required("first")?;
            let size = p.required("size")?;
            let growth = p.real("growth")?.unwrap_or(1.0);
            let max = p.optional("max")?;
            let ramp = Ramp::new(first, size, growth, max)?;
            Ok(continuing_if(p.flag("continue")?, ramp, Ramp::continuing_after_done).into())
        },
    },
    Kind {
        name: "scheduled",
        keys: &["schedule", "chunk", "context", "prime"],
        example: "scheduled:schedule=4/8/16,chunk=25,context=25",
        build: |p| {
            let schedule = p.list("schedule")?;
            let chunk = p.required("chunk")?;
            let context = p.required("context")?;
            let prime = p.optional("prime")?.unwrap_or(0);
            Ok(Scheduled::new(schedule, chunk, context, prime)?.into())
        },
    },
];

/// `policy`, made to continue after done when the name says `continue`.
fn continuing_if<P>(flag: bool, policy: P, continuing: fn(P) -> P) -> P {
    if flag {
        continuing(policy)
    } else {
        policy
    }
}

impl Kind {
    fn named(name: &str) -> Option<Kind> {
        KINDS.into_iter().find(|kind| kind.name == name)
    }
}

/// The parameters of one policy name: for each key of its kind, whether it
/// was given and with what value.
struct Params<'a> {
    kind: Kind,
    /// Indexed like `kind.keys`: `None` when absent, `Some(None)` for a key
    /// given without `=`.
    values: [Option<Option<&'a str>>; 5],
}

impl<'a> Params<'a> {
    fn parse(kind: Kind, text: &'a str) -> Result<Self, PolicyError> {
        let mut params = Params {
            kind,
            values: [None; 5],
        };
        if text.trim().is_empty() {
            return Ok(params);
        }
        for item in text.split(',') {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim())),
                None => (item.trim(), None),
            };
            if key.is_empty() && value.is_none() {
                return Err(PolicyError::EmptyParameter { policy: kind.name });
            }
            let index = kind.keys.iter().position(|&k| k == key).ok_or_else(|| {
                PolicyError::UnknownKey {
                    policy: kind.name,
                    key: key.to_owned(),
                }
            })?;
            if params.values[index].is_some() {
                return Err(PolicyError::RepeatedKey {
                    policy: kind.name,
                    key: kind.keys[index],
                });
            }
            params.values[index] = Some(value);
        }
        Ok(params)
    }

    /// The value of `key`, `None` when absent; an error when it was given
    /// without a value.
    fn text(&self, key: &'static str) -> Result<Option<&'a str>, PolicyError> {
        let index = self.index(key);
        match self.values[index] {
            None => Ok(None),
            Some(None) => Err(PolicyError::MissingValue {
                policy: self.kind.name,
                key,
            }),
            Some(Some(value)) => Ok(Some(value)),
        }
    }

    fn index(&self, key: &'static str) -> usize {
        self.kind
            .keys
            .iter()
            .position(|&k| k == key)
            .expect("the parser asks only for keys its kind lists")
    }

    fn whole(&self, key: &'static str, value: &str) -> Result<usize, PolicyError> {
        value.parse().map_err(|_| PolicyError::BadNumber {
            policy: self.kind.name,
            key,
            value: value.to_owned(),
        })
    }

    fn optional(&self, key: &'static str) -> Result<Option<usize>, PolicyError> {
        self.text(key)?
            .map(|value| self.whole(key, value))
            .transpose()
    }

    fn required(&self, key: &'static str) -> Result<usize, PolicyError> {
        self.optional(key)?.ok_or(PolicyError::MissingKey {
            policy: self.kind.name,
            key,
        })
    }

    fn flag(&self, key: &'static str) -> Result<bool, PolicyError> {
        match self.values[self.index(key)] {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(value)) => Err(PolicyError::UnexpectedValue {
                policy: self.kind.name,
                key,
                value: value.to_owned(),
            }),
        }
    }

    fn real(&self, key: &'static str) -> Result<Option<f64>, PolicyError> {
        self.text(key)?
            .map(|value| {
                value.parse().map_err(|_| PolicyError::BadNumber {
                    policy: self.kind.name,
                    key,
                    value: value.to_owned(),
                })
            })
            .transpose()
    }

    /// A `/`-separated list; an empty value is an empty list.
    fn list(&self, key: &'static str) -> Result<Vec<usize>, PolicyError> {
        match self.text(key)? {
            None => Ok(Vec::new()),
            Some("") => Ok(Vec::new()),
            Some(value) => value
                .split('/')
                .map(|entry| self.whole("schedule entry", entry.trim()))
                .collect(),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// Parses a policy name such as `sliding:window=28,stride=7`; see
    /// [`Policy`] for the names.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        let kind = Kind::named(name).ok_or_else(|| PolicyError::UnknownPolicy {
            name: name.to_owned(),
        })?;
        // Each builder reads its keys in canonical order, so that of several
        // problems the first in the canonical name is reported.
        (kind.build)(&Params::parse(kind, rest)?)
    }
}
