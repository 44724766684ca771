//! Why a policy could not be built or parsed: one sentence naming the
//! wrong value and the limit it broke.

use super::spelling::{Spelling, SPELLINGS};
use std::error::Error;
use std::fmt;

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
    /// An entry of a [`Scheduled`](super::Scheduled) schedule was 0.
    ZeroScheduleEntry {
        /// Its position in the schedule, counting from 0.
        index: usize,
    },
    /// A [`Sliding`](super::Sliding) stride was outside `1..=window`.
    StrideOutOfRange {
        /// The stride given.
        stride: usize,
        /// The window it must not exceed.
        window: usize,
    },
    /// A [`LeftContext`](super::LeftContext) context was not below its chunk.
    ContextOutOfRange {
        /// The context given.
        context: usize,
        /// The chunk it must stay below.
        chunk: usize,
    },
    /// A [`Ramp`](super::Ramp) growth was below 1, infinite or not a number.
    GrowthOutOfRange {
        /// The growth given.
        growth: f64,
    },
    /// A [`Ramp`](super::Ramp) growth above 1 came without a max.
    GrowthWithoutMax {
        /// The growth given.
        growth: f64,
    },
    /// A [`Ramp`](super::Ramp) max was below its first or its size.
    MaxTooSmall {
        /// The max given.
        max: usize,
        /// The ramp's first chunk size.
        first: usize,
        /// The ramp's second chunk size.
        size: usize,
    },
    /// A [`Scheduled`](super::Scheduled) prime was larger than its context.
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
                write_list(f, &SPELLINGS.map(|kind| kind.name))
            }
            Self::UnknownKey { policy, key } => {
                write!(f, "{policy} policy has no key `{key}`; it accepts ")?;
                write_list(f, Spelling::named(policy).map_or(&[], |kind| kind.keys))
            }
            Self::MissingKey { policy, key } => {
                write!(f, "{policy} policy needs the key `{key}`")?;
                if let Some(kind) = Spelling::named(policy) {
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

pub(crate) fn positive(parameter: &'static str, value: usize) -> Result<(), PolicyError> {
    if value == 0 {
        Err(PolicyError::NotPositive { parameter })
    } else {
        Ok(())
    }
}
