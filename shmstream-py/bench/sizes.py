"""The producer's payload ring of the cross-process bench, shared by the
measurement (warm-up rounds) and the report (the ring's size in MiB)."""

from __future__ import annotations


def payload_of(n: int, size: int) -> int:
    """The producer's payload ring: a power of two holding two rounds."""
    return 1 << max(16, (2 * n * size + 4096 * n - 1).bit_length())


def warm_rounds(n: int, size: int) -> int:
    """Rounds that touch every page of the payload ring once (first-touch
    page faults belong to the segment's creation, not to the steady state)."""
    return payload_of(n, size) // (n * size) + 1
