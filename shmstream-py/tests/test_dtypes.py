"""Every dtype the ring carries, put from torch and from numpy, read back
through ``chunk.data`` (torch, and numpy without torch),
``torch.from_dlpack`` and ``numpy.from_dlpack``: the same dtype, shape,
values and bytes."""

import re
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import shmstream as s
import torch

# The core's DType::ALL (src/protocol/tensor.rs), by shmstream name: numpy dtype,
# torch dtype name.
DTYPES = {
    "bool": (np.dtype(np.bool_), "bool"),
    "u8": (np.dtype(np.uint8), "uint8"),
    "i8": (np.dtype(np.int8), "int8"),
    "i16": (np.dtype(np.int16), "int16"),
    "i32": (np.dtype(np.int32), "int32"),
    "i64": (np.dtype(np.int64), "int64"),
    "f16": (np.dtype(np.float16), "float16"),
    "bf16": (np.dtype(ml_dtypes.bfloat16), "bfloat16"),
    "f32": (np.dtype(np.float32), "float32"),
    "f64": (np.dtype(np.float64), "float64"),
    "u16": (np.dtype(np.uint16), "uint16"),
    "u32": (np.dtype(np.uint32), "uint32"),
    "u64": (np.dtype(np.uint64), "uint64"),
}

CORE_TENSOR_RS = Path(__file__).resolve().parents[2] / "src" / "protocol" / "tensor.rs"


def test_the_list_is_the_cores():
    """A dtype added to the core must be added here (and to _tensors.py)."""
    if not CORE_TENSOR_RS.exists():
        pytest.skip(f"{CORE_TENSOR_RS} not found (the package outside its repository)")
    text = CORE_TENSOR_RS.read_text()
    names = dict(re.findall(r'DType::(\w+) => "(\w+)"', text))
    assert sorted(names.values()) == sorted(DTYPES)
    from shmstream._tensors import _NAMES

    assert _NAMES == set(DTYPES)


def torch_dtype(name):
    """The torch dtype of a shmstream name, or skip: the skip reason is the
    only place a missing torch dtype is excused."""
    tname = DTYPES[name][1]
    dt = getattr(torch, tname, None)
    if dt is None:
        pytest.skip(f"torch {torch.__version__} has no torch.{tname}")
    return dt


def values(name, i):
    """Item ``i``: a [2, 3] array of the dtype with its extremes in it."""
    np_dtype = DTYPES[name][0]
    if name == "bool":
        return (np.arange(6).reshape(2, 3) + i) % 2 == 0
    if np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        row = [info.min, info.max, info.min + i + 1, info.max - i, i, 0]
        return np.array(row, dtype=np_dtype).reshape(2, 3)
    info = ml_dtypes.finfo(np_dtype) if name == "bf16" else np.finfo(np_dtype)
    row = [float(info.max), float(info.min), float(info.tiny), -0.0, np.inf, i + 0.5]
    return np.array(row, dtype=np.float64).astype(np_dtype).reshape(2, 3)


def as_torch(a, name):
    dt = torch_dtype(name)
    if name == "bf16":  # torch.from_numpy knows no ml_dtypes
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    t = torch.from_numpy(a.copy())
    assert t.dtype == dt
    return t


def raw(x):
    """The bytes of a torch tensor or numpy array, in C order."""
    if isinstance(x, torch.Tensor):
        x = x.contiguous()
        return x.view(torch.uint8).numpy().tobytes() if x.numel() else b""
    return np.ascontiguousarray(x).tobytes()


def listed(x):
    if isinstance(x, torch.Tensor):
        return (x.float() if x.dtype == torch.bfloat16 else x).tolist()
    return (x.astype(np.float32) if x.dtype.name == "bfloat16" else x).tolist()


def check(got, expected, name):
    """``got`` holds ``expected``'s values with the dtype named ``name``."""
    if isinstance(got, torch.Tensor):
        assert got.dtype == torch_dtype(name)
    else:
        assert got.dtype == DTYPES[name][0]
        assert not got.flags.writeable
    assert tuple(got.shape) == expected.shape
    assert listed(got) == listed(expected)
    assert raw(got) == raw(expected)


def fill(name, side):
    """A buffer of fixed chunks of 2 with 3 items of dtype ``name`` put from
    ``side`` (torch or numpy), and done: one stacked chunk, one final
    chunk of one item."""
    sb = s.StreamBuffer("r", "e", "p", s.FixedChunkPolicy(2))
    items = [values(name, i) for i in range(3)]
    for i, a in enumerate(items):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", as_torch(a, name) if side == "torch" else a)
    sb.signal_done()
    return sb, items


@pytest.mark.parametrize("side", ["torch", "numpy"])
@pytest.mark.parametrize("reader", ["data", "data_without_torch", "torch", "numpy"])
@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_dtype_round_trips(name, side, reader, monkeypatch):
    if side == "torch" or reader in ("data", "torch"):
        torch_dtype(name)
    if reader == "numpy" and name == "bf16":
        # numpy.from_dlpack refuses DLPack's bfloat16 itself (numpy has no
        # bfloat16); chunk.data without torch gives ml_dtypes.bfloat16.
        sb, _ = fill(name, side)
        with pytest.raises((RuntimeError, BufferError, TypeError)):
            np.from_dlpack(sb.pop_chunk())
        return
    if reader == "data_without_torch":
        import shmstream._collate as col

        monkeypatch.setattr(col, "_looked", True)
        monkeypatch.setattr(col, "_torch", None)
    sb, items = fill(name, side)
    read = {
        "data": lambda c: c.data["data"],
        "data_without_torch": lambda c: c.data["data"],
        "torch": torch.from_dlpack,
        "numpy": np.from_dlpack,
    }[reader]
    first = sb.pop_chunk()
    got = read(first)
    check(got, np.stack(items[:2]), name)
    second = sb.pop_chunk()
    assert second.is_final and len(second) == 1
    got1 = read(second)
    check(got1, items[2], name)  # a one-item chunk is the item itself
    kind = np.ndarray if reader in ("data_without_torch", "numpy") else torch.Tensor
    assert isinstance(got, kind) and isinstance(got1, kind)
