"""``StreamChunk.data``: the reference's collation, as views."""

from __future__ import annotations

import os
from typing import Any

from ._tensors import numpy_of

_torch: Any = None
_looked = False


def torch_module() -> Any:
    """torch if importable (and not disabled with SHMSTREAM_NO_TORCH=1), else None."""
    global _torch, _looked
    if not _looked:
        _looked = True
        if os.environ.get("SHMSTREAM_NO_TORCH") != "1":
            try:
                import torch
            except ImportError:
                torch = None
            _torch = torch
    return _torch


def capsule_converter() -> Any:
    """What turns a DLPack capsule into a torch tensor (``torch._C._from_dlpack``,
    where ``torch.from_dlpack`` ends), or None without torch. ``StreamChunk.data``
    calls it straight from Rust when the chunk's items stack."""
    torch = torch_module()
    if torch is None:
        return None
    convert = getattr(torch._C, "_from_dlpack", None)
    if convert is None:
        from torch.utils.dlpack import from_dlpack as convert
    return convert


def tensor_of(view: Any) -> Any:
    """A torch tensor (when torch is importable) or a numpy array of a view."""
    torch = torch_module()
    if torch is not None:
        return torch.from_dlpack(view)
    return numpy_of(view)


def collate(chunk: Any) -> dict[str, Any]:
    n = len(chunk)
    if n == 0:
        return {"data": None}
    if n == 1:
        return {"data": tensor_of(chunk.item(0))}
    stacked = chunk.stacked()
    if stacked is not None:
        return {"data": tensor_of(stacked)}
    return {"data": [tensor_of(chunk.item(i)) for i in range(n)]}
