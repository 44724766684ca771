"""The worker's receive path of issue 23, shared by both paths of the
end-to-end benchmark: N requests, each a stream of codec frames (56 B,
int64 x7) and a stream of 64 KiB hidden states (f32 x16384), plus one
stream of 2 MiB hidden states. Every item carries the sender's
CLOCK_MONOTONIC stamp (ns) at its announcement in its second int64."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

os.environ.setdefault("MC_LOG_LEVEL", "ERROR")

CODEC = "codec"
HIDDEN = "hidden"
BIG = "hidden2m"
# (chunk policy, ring capacity, item bytes) per edge.
CODEC_POLICY = ("left-context", 300, 25)  # LeftContextChunkPolicy(300, 25)
HIDDEN_POLICY = ("sliding", 28, 7)  # SlidingWindowChunkPolicy(28, 7)


@dataclass(frozen=True)
class Workload:
    requests: int
    codec_items: int
    hidden_items: int
    big_items: int

    def streams(self) -> list[tuple[str, str, str]]:
        s = []
        for r in range(self.requests):
            if self.codec_items:
                s.append((f"req{r}", CODEC, "p"))
            if self.hidden_items:
                s.append((f"req{r}", HIDDEN, "p"))
        if self.big_items:
            s.append(("big", BIG, "p"))
        return s

    def items(self) -> int:
        return self.requests * (self.codec_items + self.hidden_items) + self.big_items


def policy_of(edge: str) -> Any:
    import shmstream  # noqa: PLC0415

    if edge == CODEC:
        return shmstream.LeftContextChunkPolicy(CODEC_POLICY[1], CODEC_POLICY[2])
    return shmstream.SlidingWindowChunkPolicy(HIDDEN_POLICY[1], HIDDEN_POLICY[2])


def stream_options(ident: tuple[str, str, str]) -> dict[str, Any]:
    edge = ident[1]
    if edge == CODEC:
        return {"capacity": 1024, "item_bytes": 64}
    if edge == HIDDEN:
        return {"capacity": 64, "item_bytes": 64 << 10}
    return {"capacity": 64, "item_bytes": 2 << 20}


def stream_bytes(ident: tuple[str, str, str]) -> int:
    """The sender's pool part per stream (``Sender(stream_bytes=...)``): a
    sender with a pool per stream lays each stream's tensors out back to
    back, so the receiver reads runs of them with one transfer. About what
    the receiving ring holds (more could only wait in its backlog)."""
    edge = ident[1]
    if edge == CODEC:
        return 64 << 10  # 1170 frames of 56 B
    if edge == HIDDEN:
        return 2 << 20  # 32 hidden states
    return 192 << 20  # 96 tensors of 2 MiB (the whole pool before parts)


def send(path: str, w: Workload, out: Any, window: int = 512, shared: bool = False) -> None:
    """The remote machine: announces every item, stamped, in steps (each
    request's codec frame and hidden state, and the 2 MiB one, per step),
    at most ``window`` unacknowledged; ``shared``: one 192 MiB ring for all
    streams (interleaved: nothing to coalesce) instead of a part per stream."""
    from shmstream import mooncake as mc  # noqa: PLC0415

    codec = np.zeros(7, np.int64)
    hidden = np.zeros(16384, np.float32)
    big = np.zeros(524288, np.float32)
    hidden_words = hidden.view(np.int64)
    big_words = big.view(np.int64)
    steps = max(w.codec_items, w.hidden_items, w.big_items)
    pool = 192 << 20 if shared else sum(stream_bytes(ident) for ident in w.streams())
    parts = None if shared else stream_bytes
    with mc.Sender(path, pool_bytes=pool, window=window, timeout=120, stream_bytes=parts) as snd:
        t0 = time.monotonic_ns()
        for step in range(steps):
            for r in range(w.requests):
                if step < w.codec_items:
                    codec[0] = step
                    codec[1] = time.monotonic_ns()
                    snd.send((f"req{r}", CODEC, "p"), f"c{step}", codec)
                if step < w.hidden_items:
                    hidden_words[0] = step
                    hidden_words[1] = time.monotonic_ns()
                    snd.send((f"req{r}", HIDDEN, "p"), f"h{step}", hidden)
            if step < w.big_items:
                big_words[0] = step
                big_words[1] = time.monotonic_ns()
                snd.send(("big", BIG, "p"), f"b{step}", big)
            snd.flush()
        for ident in w.streams():
            snd.done(ident)
        snd.wait_acks(300)
        out.put({"t0": t0, "errors": snd.errors[:3], "n_errors": len(snd.errors)})


def stamp_of(row: Any) -> int:
    """The announcement stamp of one item (a torch tensor row)."""
    import torch  # noqa: PLC0415

    if row.dtype == torch.int64:
        return int(row[1])
    return int(row[:4].view(torch.int64)[1])


def cpu_seconds() -> float:
    import resource  # noqa: PLC0415

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def settle_imports() -> None:
    """Imports torch and moves everything imported so far out of the
    collector's sight (``gc.freeze``): the full collections a busy
    receiving loop triggers otherwise walk torch's objects each time (40%
    of a worker's samples in a first profile). Done in every receiving
    process of both paths."""
    import gc  # noqa: PLC0415

    import torch  # noqa: F401, PLC0415

    gc.collect()
    gc.freeze()
