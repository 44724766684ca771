"""The per-item and per-chunk rows of ``dropin.py``: the drop-in
``StreamBuffer`` built with the reference's constructor arguments only,
against ``dropin_ref.RefBuffer`` (the reference's design in plain Python),
in one process, interleaved trial by trial."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, Callable

import shmstream as s
import torch
from dropin_ref import RefBuffer

now = time.perf_counter_ns
SIZES = ((56, "56 B"), (65536, "64 KiB"))
WINDOWS = (4, 64, 1024)
BATCH = 256  # items put per timed batch (drained, untimed, between batches)
WARM = 8  # untimed batches first: two laps of the default ring (1024 items)


def _tensor(nbytes: int) -> torch.Tensor:
    return torch.arange(nbytes // 8, dtype=torch.int64)


def _dropin(policy: str, **sizing: Any) -> s.StreamBuffer:
    return s.StreamBuffer(f"dib-{uuid.uuid4().hex[:10]}", "e", "p", policy, **sizing)


def _failure(e: BaseException) -> str:
    """``fails: Kind (what)``, the message without its stream name and
    cut at its first sentence: a table cell."""
    text = str(e).splitlines()[0] if str(e) else ""
    text = text.split(": ", 1)[1] if text.startswith("stream ") and ": " in text else text
    text = text.split("; ", 1)[0][:120].replace("|", "/")
    return f"fails: {type(e).__name__} ({text})"


def per_item(trials: int) -> dict[tuple[str, str], float | str]:
    """ns per ``pre_read_register`` + ``put``, by (size label, peer):
    "drop-in" (reference's arguments), "drop-in, sized" (``item_bytes`` =
    the size: the fixed-memory knob), "reference", "reference + clone"
    (the worker's ``put(uuid, tensor.clone())``). A failure is its text."""
    out: dict[tuple[str, str], float | str] = {}
    for nbytes, label in SIZES:
        item = _tensor(nbytes)
        makers: dict[str, Callable[[], Any]] = {
            "drop-in": lambda: _dropin(f"fixed:size={BATCH}"),
            "drop-in, sized": lambda n=nbytes: _dropin(
                f"fixed:size={BATCH}", item_bytes=max(n, 64), capacity=2 * BATCH
            ),
            "reference": lambda: RefBuffer(BATCH, BATCH),
            "reference + clone": lambda: RefBuffer(BATCH, BATCH),
        }
        bufs: dict[str, Any] = {}
        for peer, make in makers.items():
            try:
                bufs[peer] = make()
            except Exception as e:  # the report says what failed
                out[(label, peer)] = _failure(e)
        samples: dict[str, list[float]] = {p: [] for p in bufs}
        n = 0
        # The first laps untimed: a fresh ring's pages fault in once.
        for trial in range(WARM + trials):
            for peer, b in list(bufs.items()):
                ids = [f"t{n + i}" for i in range(BATCH)]
                n += BATCH
                clone = peer == "reference + clone"
                try:
                    t0 = now()
                    for tid in ids:
                        b.pre_read_register(tid)
                        b.put(tid, item.clone() if clone else item)
                    dt = now() - t0
                    b.pop_chunk()  # drains the batch (untimed)
                except Exception as e:
                    out[(label, peer)] = _failure(e)
                    del bufs[peer]
                    continue
                if trial >= WARM:
                    samples[peer].append(dt / BATCH)
        for peer, xs in samples.items():
            if xs and (label, peer) not in out:
                out[(label, peer)] = statistics.median(xs)
    return out


def per_chunk(chunks: int) -> dict[tuple[int, str], float | str]:
    """ns per ``pop_chunk`` + ``chunk.data["data"]``, sliding window w,
    stride w/4 (items put before, untimed; the chunk dropped before the
    next stride comes in), by (window, peer): "drop-in" (reference's
    arguments), "reference". A failure is its text."""
    out: dict[tuple[int, str], float | str] = {}
    item = _tensor(56)
    for w in WINDOWS:
        stride = max(1, w // 4)
        bufs: dict[str, Any] = {}
        try:
            bufs["drop-in"] = _dropin(f"sliding:window={w},stride={stride}")
        except Exception as e:
            out[(w, "drop-in")] = _failure(e)
        bufs["reference"] = RefBuffer(w, stride)
        fed = {p: 0 for p in bufs}
        samples: dict[str, list[float]] = {p: [] for p in bufs}

        def feed(peer: str, b: Any, upto: int, fed: dict[str, int] = fed) -> None:
            while fed[peer] < upto:
                tid = f"t{fed[peer]}"
                b.pre_read_register(tid)
                b.put(tid, item)
                fed[peer] += 1

        for k in range(chunks):
            for peer, b in list(bufs.items()):
                try:
                    feed(peer, b, w + k * stride)
                    t0 = now()
                    chunk = b.pop_chunk()
                    data = chunk.data["data"]
                    dt = now() - t0
                    del data, chunk
                except Exception as e:
                    out[(w, peer)] = _failure(e)
                    del bufs[peer]
                    continue
                samples[peer].append(dt)
        for peer, xs in samples.items():
            if xs and (w, peer) not in out:
                out[(w, peer)] = statistics.median(xs)
    return out
