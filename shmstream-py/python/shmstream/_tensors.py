"""Host tensors in and out: dtype names, the pointer of a contiguous array,
and numpy/torch views of the stream's memory."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _shmstream
from ._errors import BadDType, BadTensor

# numpy dtype -> shmstream dtype name
_NP = {
    np.dtype(np.bool_): "bool",
    np.dtype(np.uint8): "u8",
    np.dtype(np.int8): "i8",
    np.dtype(np.int16): "i16",
    np.dtype(np.uint16): "u16",
    np.dtype(np.int32): "i32",
    np.dtype(np.uint32): "u32",
    np.dtype(np.int64): "i64",
    np.dtype(np.uint64): "u64",
    np.dtype(np.float16): "f16",
    np.dtype(np.float32): "f32",
    np.dtype(np.float64): "f64",
}
_TO_NP = {v: k for k, v in _NP.items()}
_TORCH_NAMES = {
    "torch.bool": "bool",
    "torch.uint8": "u8",
    "torch.int8": "i8",
    "torch.int16": "i16",
    "torch.uint16": "u16",
    "torch.int32": "i32",
    "torch.uint32": "u32",
    "torch.int64": "i64",
    "torch.uint64": "u64",
    "torch.float16": "f16",
    "torch.bfloat16": "bf16",
    "torch.float32": "f32",
    "torch.float64": "f64",
}
_NAMES = set(_TO_NP) | {"bf16"}


def _probe_array_data() -> Any:
    """``_shmstream._array_data`` when it agrees with ``__array_interface__``
    (on a fresh array and on an offset view), else the slow way."""

    def slow(a: np.ndarray) -> int:
        return a.__array_interface__["data"][0]

    fast = getattr(_shmstream, "_array_data", None)
    probe = np.arange(5, dtype=np.int64)
    try:
        if fast is not None and all(fast(a) == slow(a) for a in (probe, probe[2:])):
            return fast
    except Exception:  # noqa: BLE001 (any failure: the slow way)
        pass
    return slow


_array_data = _probe_array_data()


def _bfloat16() -> Any:
    try:
        import ml_dtypes
    except ImportError:
        raise BadDType(
            "bf16 tensors reach numpy as ml_dtypes.bfloat16, and ml_dtypes is not installed: "
            "pip install ml_dtypes (or read the chunk with torch)"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def dtype_name(dtype: Any) -> str:
    """The shmstream name (``"f32"``, ``"bf16"``, ...) of a numpy or torch dtype or a name."""
    try:
        name = _MEMO.get(dtype)
    except TypeError:  # unhashable: the long way
        name = None
    if name is not None:
        return name
    name = _dtype_name(dtype)
    if isinstance(dtype, type) or type(dtype).__module__ == "torch":
        _MEMO[dtype] = name  # numpy scalar types (np.int64) and torch dtypes: few
    return name


_MEMO: dict[Any, str] = {}


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, np.dtype):
        name = _NP.get(dtype)  # a dict look-up: str(dtype) costs microseconds
        if name is not None:
            return name
    if isinstance(dtype, str) and dtype in _NAMES:
        return dtype
    text = str(dtype)
    if text in _TORCH_NAMES:
        return _TORCH_NAMES[text]
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype is not None:
        if np_dtype in _NP:
            return _NP[np_dtype]
        if np_dtype.name == "bfloat16":
            return "bf16"
    raise BadDType(
        f"dtype {dtype!r} cannot be carried; use one of {sorted(_NAMES)} "
        "(or a numpy/torch dtype of those)"
    )


def host_array(item: Any) -> tuple[str, Sequence[int], int, int, Any]:
    """``(dtype, shape, address, nbytes, keepalive)`` of a contiguous host tensor."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(item, torch.Tensor):
        if not item.is_cpu:  # (item.device.type costs 0.3 us)
            raise BadTensor(
                f"a tensor on {item.device} cannot be put into host shared memory; "
                "move it with .cpu() first"
            )
        if not item.is_contiguous():
            raise BadTensor(
                f"a non-contiguous tensor of shape {tuple(item.shape)} and strides "
                f"{item.stride()}: pass .contiguous() (the stream stores C-order bytes)"
            )
        name = dtype_name(item.dtype)
        return name, item.shape, item.data_ptr(), item.nbytes, item  # shape: a torch.Size
    if isinstance(item, np.ndarray):
        if not item.flags.c_contiguous:
            raise BadTensor(
                f"a non-contiguous array of shape {item.shape} and strides {item.strides}: "
                "pass numpy.ascontiguousarray(x) (the stream stores C-order bytes)"
            )
        name = dtype_name(item.dtype)
        return name, item.shape, _array_data(item), item.nbytes, item
    if isinstance(item, np.generic):
        return host_array(np.asarray(item))
    raise TypeError(f"put takes a torch.Tensor or a numpy.ndarray, not {type(item).__name__}")


def numpy_of(view: Any) -> np.ndarray:
    """A numpy array of a view (read-only for a chunk's), its base keeping the lease."""
    arr = np.asarray(view)
    if view.dtype == "bf16":
        arr = arr.view(_bfloat16())
    return arr


def slot_array(slot: Any, dtype: Any = None, shape: Any = None) -> np.ndarray:
    """A writable numpy view of a producer slot's memory."""
    raw = np.asarray(slot)
    if dtype is None and shape is None:
        return raw
    name = dtype_name(dtype if dtype is not None else "u8")
    np_dtype = _bfloat16() if name == "bf16" else _TO_NP[name]
    if shape is None:
        count = raw.nbytes // np_dtype.itemsize
        return raw[: count * np_dtype.itemsize].view(np_dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nbytes = math.prod(shape) * np_dtype.itemsize  # (numpy.prod costs microseconds)
    if nbytes > raw.nbytes:
        raise BadTensor(
            f"a {name} tensor of shape {shape} needs {nbytes} bytes; the slot has {raw.nbytes}"
        )
    return raw[:nbytes].view(np_dtype).reshape(shape)
