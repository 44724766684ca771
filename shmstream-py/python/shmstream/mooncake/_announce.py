"""The announcement of one remote tensor: one JSON object per line on the
control channel, the kind of message a serving system's scheduler already
sends (no binary protocol of ours on the wire)::

    {"stream": ["req-1", "codec", "p0"], "id": "t17", "session": "10.0.0.5:15432",
     "addr": 140234567, "nbytes": 56, "dtype": "i64", "shape": [7]}
    {"stream": ["req-1", "codec", "p0"], "done": true}

``session`` is the sender engine's name (``host:rpc_port`` with
P2PHANDSHAKE), ``addr`` an address inside memory it registered. Optional
``t`` (the sender's CLOCK_MONOTONIC in ns at the announcement) is passed
through for latency measurements.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .._errors import BadTensor

ITEMSIZE = {
    "bool": 1, "u8": 1, "i8": 1, "i16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "i32": 4, "u32": 4, "f32": 4, "i64": 8, "u64": 8, "f64": 8,
}  # fmt: skip
MAX_DIMS = 8
MAX_ID_BYTES = 64


@dataclass(frozen=True)
class Announcement:
    """A remote tensor to read, or (``done``) the end of its stream."""

    stream: tuple[str, str, str]
    tensor_id: str = ""
    session: str = ""
    addr: int = 0
    nbytes: int = 0
    dtype: str = "u8"
    shape: tuple[int, ...] = ()
    done: bool = False
    t: int | None = None

    def to_json(self) -> str:
        """The announcement's line (without the newline)."""
        if self.done:
            return json.dumps({"stream": list(self.stream), "done": True})
        d: dict[str, Any] = {
            "stream": list(self.stream),
            "id": self.tensor_id,
            "session": self.session,
            "addr": self.addr,
            "nbytes": self.nbytes,
            "dtype": self.dtype,
            "shape": list(self.shape),
        }
        if self.t is not None:
            d["t"] = self.t
        return json.dumps(d, separators=(",", ":"))


def _field(d: dict[str, Any], name: str, kind: type) -> Any:
    v = d.get(name)
    if not isinstance(v, kind) or isinstance(v, bool) and kind is int:
        raise BadTensor(f"announcement field {name!r}: expected {kind.__name__}, got {v!r}")
    return v


def parse(line: str | bytes) -> Announcement:
    """The announcement of one JSON line; BadTensor names the field that is wrong."""
    try:
        d = json.loads(line)
    except ValueError as e:
        raise BadTensor(f"announcement: not JSON ({e}): {line[:80]!r}") from None
    if not isinstance(d, dict):
        raise BadTensor(f"announcement: expected a JSON object, got {line[:80]!r}")
    stream = d.get("stream")
    if (
        not isinstance(stream, list)
        or len(stream) != 3
        or not all(isinstance(x, str) and x for x in stream)
    ):
        raise BadTensor(
            f"announcement field 'stream': expected [request_id, edge_name, from_partition] "
            f"(non-empty strings), got {stream!r}"
        )
    ident = (stream[0], stream[1], stream[2])
    if d.get("done") is True:
        return Announcement(ident, done=True)
    tensor_id = _field(d, "id", str)
    if not tensor_id or len(tensor_id.encode()) > MAX_ID_BYTES:
        raise BadTensor(f"announcement field 'id': 1 to {MAX_ID_BYTES} bytes, got {tensor_id!r}")
    session = _field(d, "session", str)
    addr = _field(d, "addr", int)
    nbytes = _field(d, "nbytes", int)
    dtype = _field(d, "dtype", str)
    shape = _field(d, "shape", list)
    t = d.get("t")
    where = f"announcement of tensor {tensor_id!r}"
    if dtype not in ITEMSIZE:
        raise BadTensor(f"{where}, field 'dtype': {dtype!r}; accepted: {', '.join(ITEMSIZE)}")
    if len(shape) > MAX_DIMS or not all(isinstance(x, int) and x >= 0 for x in shape):
        raise BadTensor(
            f"{where}, field 'shape': up to {MAX_DIMS} non-negative ints, got {shape!r}"
        )
    if addr <= 0:
        raise BadTensor(f"{where}, field 'addr': a positive address, got {addr}")
    expected = math.prod(shape) * ITEMSIZE[dtype]
    if nbytes != expected:
        raise BadTensor(
            f"{where}, field 'nbytes': {nbytes}, but {dtype} x {shape} is {expected} bytes"
        )
    return Announcement(
        ident,
        tensor_id,
        session,
        addr,
        nbytes,
        dtype,
        tuple(shape),
        t=t if isinstance(t, int) else None,
    )
