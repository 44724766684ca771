//! Zero-copy views of tensors in slot memory: one item, or a window of
//! consecutive items stacked into one tensor `[n, *shape]`.

use crate::error::StreamError;
use crate::protocol::descriptor::ItemMeta;
use crate::protocol::ring_consumer::ConsumerRing;
use crate::protocol::tensor::{DType, MAX_DIMS};
use std::fmt;
use std::marker::PhantomData;

/// One tensor, read in place from its slot.
#[derive(Clone, Copy)]
pub struct ItemView<'a> {
    ring: &'a ConsumerRing,
    meta: &'a ItemMeta,
    bytes: &'a [u8],
    position: u64,
}

impl fmt::Debug for ItemView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ItemView({:?} @{} {}{:?})",
            self.id(),
            self.position,
            self.meta.dtype,
            self.shape()
        )
    }
}

impl<'a> ItemView<'a> {
    /// # Safety
    ///
    /// `position` is in the consumer's available prefix and stays
    /// unreleased for `'a`.
    pub(crate) unsafe fn new(ring: &'a ConsumerRing, position: u64) -> Self {
        let (mem, (offset, meta)) = (ring.mem(), ring.meta(position));
        // Loom: the view reads the item now; a producer write to its bytes
        // that does not happen after the consumer's release is a reported
        // race.
        #[cfg(loom)]
        drop(mem.track_read(offset, meta.nbytes));
        // SAFETY: the item's reservation of `meta.len >= meta.nbytes` bytes
        // at `offset` was checked at poll time (with its run) to lie within one
        // payload length of the released bytes, so it is inside the mapping
        // (across the wrap thanks to the mirror, or checked not to cross it
        // without one); the producer does not write it until it is
        // released, which the caller rules out for `'a`.
        let bytes =
            unsafe { std::slice::from_raw_parts(mem.payload_ptr(offset), meta.nbytes as usize) };
        ItemView {
            ring,
            meta,
            bytes,
            position,
        }
    }

    /// The tensor's id, read from the segment's side table the first time
    /// it is asked for (the hot path never touches ids) and checked.
    ///
    /// Empty when the producer wrote a corrupt id (never the case for a
    /// correct one: ids are 1 to 64 bytes of UTF-8); [`try_id`](Self::try_id)
    /// says what is wrong, and every later poll of the stream fails with
    /// that error.
    pub fn id(&self) -> &'a str {
        self.try_id().unwrap_or("")
    }

    /// The tensor's id, or what is wrong with it.
    ///
    /// # Errors
    ///
    /// [`StreamError::Corrupt`] naming the position and the id's length or
    /// bytes, when the producer wrote an id no correct producer writes.
    pub fn try_id(&self) -> Result<&'a str, StreamError> {
        self.ring.id(self.position)
    }

    /// Its element type.
    pub fn dtype(&self) -> DType {
        self.meta.dtype
    }

    /// Its shape.
    pub fn shape(&self) -> &'a [u64] {
        self.meta.shape()
    }

    /// Its stream position.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Its bytes, in the slot (no copy).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Its elements, when `T` is its dtype's Rust type.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
    /// let (producer, mut consumer) = in_process(&StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() }).with_capacity(4)).unwrap();
    /// let bytes: Vec<u8> = [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    /// producer.register("t0").unwrap().write(TensorMeta::new(DType::I64, &[3]).unwrap(), &bytes).unwrap();
    /// consumer.poll().unwrap();
    /// assert_eq!(consumer.item(0).unwrap().as_slice::<i64>(), Some(&[1i64, 2, 3][..]));
    /// ```
    pub fn as_slice<T: Element>(&self) -> Option<&'a [T]> {
        if T::DTYPE != self.meta.dtype {
            return None;
        }
        let ptr = self.bytes.as_ptr();
        if ptr as usize % std::mem::align_of::<T>() != 0 {
            return None;
        }
        // SAFETY: the dtype matches `T`, every bit pattern is a valid `T`
        // (`Element` is only implemented for such types), the pointer is
        // aligned (checked) and the byte length is a multiple of the size
        // (nbytes = product of the shape times the element size).
        Some(unsafe {
            std::slice::from_raw_parts(ptr.cast::<T>(), self.bytes.len() / std::mem::size_of::<T>())
        })
    }
}

/// Rust element types that can be read in place. Sealed: every bit pattern
/// of the type must be a valid value.
pub trait Element: sealed::Sealed + Copy + 'static {
    /// The dtype stored for this type.
    const DTYPE: DType;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t { const DTYPE: DType = DType::$d; }
    )*};
}
element!(u8 => U8, i8 => I8, i16 => I16, u16 => U16, i32 => I32, u32 => U32, i64 => I64, u64 => U64, f32 => F32, f64 => F64);

/// A window of same-shaped items seen as one tensor `[n, *shape]`, in
/// place: item `i` starts `i * item_stride` bytes after the first. With the
/// double mapping this holds even when the window wraps around the ring.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    base: *const u8,
    dtype: DType,
    ndim: usize,
    shape: [u64; MAX_DIMS + 1],
    item_stride: usize,
    item_bytes: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TensorView({}{:?} stride {})",
            self.dtype,
            self.shape(),
            self.item_stride
        )
    }
}

impl<'a> TensorView<'a> {
    /// # Safety
    ///
    /// `n` items from `base`, `item_stride` apart, each `item_bytes` long,
    /// are readable and unchanged for `'a`.
    pub(crate) unsafe fn new(
        base: *const u8,
        n: usize,
        first: &ItemMeta,
        item_stride: usize,
    ) -> Self {
        let mut shape = [0u64; MAX_DIMS + 1];
        shape[0] = n as u64;
        shape[1..=first.ndim as usize].copy_from_slice(first.shape());
        TensorView {
            base,
            dtype: first.dtype,
            ndim: first.ndim as usize + 1,
            shape,
            item_stride,
            item_bytes: first.nbytes as usize,
            _borrow: PhantomData,
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `[n, *item_shape]`.
    pub fn shape(&self) -> &[u64] {
        &self.shape[..self.ndim]
    }

    /// Strides in bytes, one per dimension: the distance between items for
    /// the first (the item size when they lie back to back), row-major
    /// contiguous for the rest.
    pub fn strides(&self) -> [usize; MAX_DIMS + 1] {
        let mut strides = [0usize; MAX_DIMS + 1];
        let mut acc = self.dtype.size();
        for d in (1..self.ndim).rev() {
            strides[d] = acc;
            // Saturating: a zero dimension lets the others be anything.
            acc = acc.saturating_mul(self.shape[d] as usize);
        }
        strides[0] = self.item_stride;
        strides
    }

    /// Items in the window.
    pub fn len(&self) -> usize {
        self.shape[0] as usize
    }

    /// Whether the window is empty (never, for a view that exists).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address of the first element (for handing to a device copy or a
    /// framework's from-pointer constructor together with `strides`).
    pub fn as_ptr(&self) -> *const u8 {
        self.base
    }

    /// Bytes from the first item's start to the last item's end.
    pub fn span_bytes(&self) -> usize {
        match self.len() {
            0 => 0,
            n => (n - 1) * self.item_stride + self.item_bytes,
        }
    }

    /// The bytes of item `i`.
    pub fn item(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.len()).then(|| {
            // SAFETY: item `i` lies within the span the constructor's
            // caller vouched for.
            unsafe {
                std::slice::from_raw_parts(self.base.add(i * self.item_stride), self.item_bytes)
            }
        })
    }

    /// Whether the items lie back to back (row stride = item size): the
    /// window is one C-order `[n, *shape]` tensor.
    pub fn is_contiguous(&self) -> bool {
        self.item_bytes == self.item_stride
    }

    /// The whole window as one contiguous byte slice, when the items lie
    /// back to back with no gaps (see [`is_contiguous`](Self::is_contiguous)).
    pub fn contiguous(&self) -> Option<&'a [u8]> {
        (self.item_bytes == self.item_stride).then(|| {
            // SAFETY: with no gaps the span is exactly the items' bytes.
            unsafe { std::slice::from_raw_parts(self.base, self.span_bytes()) }
        })
    }
}
