//! The conversions themselves (see the module above for the layer).

use crate::error::StreamError;
use crate::protocol::tensor::{DType, TensorMeta};
use std::fmt;
use std::time::Duration;

/// The longest finite timeout, in seconds (10^9 s, about 31.7 years): a
/// longer one (and `+inf`) waits for ever. A deadline `now + timeout`
/// stays far from the clock's range, and `Duration::from_secs_f64` (which
/// panics past about 1.8e19 s) is never reached with a huge value.
pub const MAX_TIMEOUT_SECS: f64 = 1e9;

/// A timeout that is not a number of seconds: negative or NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadTimeout(pub f64);

impl fmt::Display for BadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeout {} s: give a number of seconds >= 0, or None to wait for ever",
            self.0
        )
    }
}

impl std::error::Error for BadTimeout {}

/// Seconds to a wait: `None` and anything above [`MAX_TIMEOUT_SECS`]
/// (`+inf` too) wait for ever (`Ok(None)`); `0 ..= MAX_TIMEOUT_SECS` (also
/// `-0.0`) is that long, to the nanosecond below.
///
/// # Errors
///
/// [`BadTimeout`] for NaN and negative numbers (`-inf` too).
pub fn timeout(secs: Option<f64>) -> Result<Option<Duration>, BadTimeout> {
    match secs {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(BadTimeout(t)),
        Some(t) if t > MAX_TIMEOUT_SECS => Ok(None),
        // 0 <= t <= 1e9 (or -0.0, which compares equal to 0).
        Some(t) => Ok(Some(Duration::from_secs_f64(t.abs()))),
    }
}

/// A dtype name (`"f32"`, `"bf16"`, ...) and a shape as [`TensorMeta`].
///
/// # Errors
///
/// `UnknownDType`, `TooManyDims`, or `ShapeOverflow` (the element count
/// times the dtype's size past `u64`).
pub fn tensor_meta(dtype: &str, shape: &[u64]) -> Result<TensorMeta, StreamError> {
    let dtype: DType = dtype.parse()?;
    TensorMeta::new(dtype, shape)
}

/// `given` (an array's byte count) if it is exactly `meta`'s size.
///
/// # Errors
///
/// `SizeMismatch` naming both sizes otherwise.
pub fn check_nbytes(meta: &TensorMeta, given: u64) -> Result<u64, StreamError> {
    if meta.nbytes() == given {
        Ok(given)
    } else {
        Err(StreamError::SizeMismatch {
            given,
            expected: meta.nbytes(),
        })
    }
}

/// The longest single wait of a call that waits up to `timeout` in
/// slices: at most `slice`, and a whole fraction of `timeout`, so that
/// whole slices add up to it (0.12 s in slices of 50 ms is three of
/// 40 ms). `None` (for ever): `slice`. A zero `slice` counts as 1 ns.
pub fn wait_slice(timeout: Option<Duration>, slice: Duration) -> Duration {
    let slice = slice.max(Duration::from_nanos(1));
    match timeout {
        None => slice,
        Some(t) if t <= slice => t,
        Some(t) => {
            let n = t.as_nanos().div_ceil(slice.as_nanos());
            // t / n <= slice, which came from a Duration: as u64 is exact
            // unless slice is past 584 years; saturate then.
            Duration::from_nanos(u64::try_from(t.as_nanos() / n).unwrap_or(u64::MAX))
        }
    }
}
