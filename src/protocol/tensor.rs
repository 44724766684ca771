//! Element types, shapes and the metadata a producer commits with a tensor.

use crate::error::StreamError;
use std::fmt;

/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 8;

/// The element type of a tensor. The discriminant is the code stored in
/// shared memory, so it must never change for an existing variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DType {
    /// `bool`, one byte.
    Bool = 1,
    /// `u8`.
    U8 = 2,
    /// `i8`.
    I8 = 3,
    /// `i16`.
    I16 = 4,
    /// `i32`.
    I32 = 5,
    /// `i64`.
    I64 = 6,
    /// IEEE half precision.
    F16 = 7,
    /// bfloat16.
    BF16 = 8,
    /// `f32`.
    F32 = 9,
    /// `f64`.
    F64 = 10,
    /// `u16`.
    U16 = 11,
    /// `u32`.
    U32 = 12,
    /// `u64`.
    U64 = 13,
}

impl DType {
    /// Every dtype, in code order.
    pub const ALL: [DType; 13] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::U16,
        DType::U32,
        DType::U64,
    ];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The code stored in shared memory.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The dtype for a code read back from shared memory, if it exists.
    pub fn from_code(code: u8) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.code() == code)
    }

    /// The lower-case name (`"f32"`, `"bf16"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = StreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| StreamError::UnknownDType {
                name: s.to_string(),
            })
    }
}

/// What a producer says about a tensor when it commits it: its element type
/// and shape. The byte count follows from them.
///
/// # Examples
///
/// ```
/// use shmstream::{DType, TensorMeta};
/// let meta = TensorMeta::new(DType::I64, &[7]).unwrap();
/// assert_eq!(meta.nbytes(), 56);
/// assert_eq!(meta.shape(), &[7]);
/// ```
#[derive(Clone, Copy, Eq)]
pub struct TensorMeta {
    dtype: DType,
    ndim: u8,
    dims: [u64; MAX_DIMS],
    nbytes: u64,
}

impl TensorMeta {
    /// Metadata for a tensor of `dtype` and `shape`.
    ///
    /// # Errors
    ///
    /// [`StreamError::TooManyDims`] past [`MAX_DIMS`] dimensions, and
    /// [`StreamError::ShapeOverflow`] when the byte count does not fit in 64 bits.
    pub fn new(dtype: DType, shape: &[u64]) -> Result<Self, StreamError> {
        if shape.len() > MAX_DIMS {
            return Err(StreamError::TooManyDims {
                ndim: shape.len(),
                max: MAX_DIMS,
            });
        }
        let nbytes = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d))
            .ok_or(StreamError::ShapeOverflow)?;
        let mut dims = [0u64; MAX_DIMS];
        dims[..shape.len()].copy_from_slice(shape);
        Ok(TensorMeta {
            dtype,
            ndim: shape.len() as u8,
            dims,
            nbytes,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape (empty for a scalar).
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.ndim as usize]
    }

    /// Bytes the tensor occupies: product of the shape times the element size.
    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }

    pub(crate) fn dims_raw(&self) -> &[u64; MAX_DIMS] {
        &self.dims
    }

    pub(crate) fn ndim(&self) -> u8 {
        self.ndim
    }
}

// A staged commit and `put_many` compare every item's metadata with its
// run's; the derived comparison (and a slice comparison of the shape) was
// a `bcmp` call per item. The dimensions past `ndim` are zero (`new` is
// the only constructor), so all eight are folded in registers instead.
impl PartialEq for TensorMeta {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let dims = (self.dims.iter().zip(&other.dims)).fold(0, |acc, (a, b)| acc | (a ^ b));
        self.nbytes == other.nbytes
            && self.dtype == other.dtype
            && self.ndim == other.ndim
            && dims == 0
    }
}

impl fmt::Debug for TensorMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.dtype, self.shape())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dtype: DType, shape: &[u64]) -> TensorMeta {
        TensorMeta::new(dtype, shape).unwrap()
    }

    #[test]
    fn metadata_is_equal_exactly_when_dtype_and_shape_are() {
        assert_eq!(meta(DType::U64, &[7]), meta(DType::U64, &[7]));
        assert_eq!(meta(DType::F16, &[]), meta(DType::F16, &[]));
        // Each differs in one thing only (same byte count).
        assert_ne!(meta(DType::I32, &[7]), meta(DType::U32, &[7]), "dtype");
        assert_ne!(meta(DType::U8, &[2, 7]), meta(DType::U8, &[7, 2]), "shape");
        assert_ne!(meta(DType::U8, &[7, 1]), meta(DType::U8, &[7]), "ndim");
        assert_ne!(
            meta(DType::U8, &[0, 3]),
            meta(DType::U8, &[0, 4]),
            "a dim of an empty tensor"
        );
        // And one of another byte count.
        assert_ne!(meta(DType::U8, &[8]), meta(DType::U16, &[8]), "nbytes");
    }
}
