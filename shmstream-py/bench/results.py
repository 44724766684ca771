"""What one run of the Python benchmarks measured: ``measure.run`` fills
it, ``report.render`` reads it. Times in nanoseconds."""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass
class Results:
    date: datetime.datetime
    cores: int | None
    arch: str
    kernel: str
    python: str
    torch: str
    numpy: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    elapsed_s: float
    quick: bool
    timer_overhead_ns: float
    windows: list[int]
    # Per chunk, by (window, variant): "pop", "data", "torch.from_dlpack",
    # "numpy.from_dlpack", "reference".
    chunk_ns: dict[tuple[int, str], float]
    chunk_mean_ns: dict[tuple[int, str], float]
    stride1_ns: float  # window 1024, stride 1, `chunk.data`
    floor_ns: dict[str, float]  # the view-making calls alone, by their table label
    poll_ns: list[float]  # the consumer's poll per new item, one per refill
    shapes: list[tuple[int, int, str]]  # (tensors, bytes each, label)
    # By (shape label, peer); the peers include "puts" and "puts, consumer
    # not waiting" (the producer's puts alone).
    cross_ns: dict[tuple[str, str], float]
    per_item_ns: dict[str, float]  # by the table's operation label
    alloc: dict[str, float]  # "blocks", "bytes" per held chunk, "left" per dropped one
