"""The sender's pool: one registered mapping, carved into rings of tensor
space that are handed out in order and given back in order as the
receiver acknowledges the tensors.

A tensor is placed as a shmstream ring places it (``placement_align``: the
largest power of two dividing its size, 8 to 64 bytes), so a stream's
consecutive same-sized tensors lie back to back here as they do in the
receiving ring, and the receiver reads such a run with one transfer."""

from __future__ import annotations

from collections import deque

MIN_ALIGN, MAX_ALIGN = 8, 64


def placement_align(nbytes: int) -> int:
    """The alignment shmstream's ring gives a tensor of ``nbytes``."""
    if nbytes <= 0:
        return MIN_ALIGN
    return min(MAX_ALIGN, max(MIN_ALIGN, nbytes & -nbytes))


class Ring:
    """Tensor space at ``[start, start + size)`` of the pool. Each
    allocation is ``[offset, end, acknowledged]`` (offsets in the pool)."""

    def __init__(self, start: int, size: int) -> None:
        self.start = start
        self.size = size
        self.allocs: deque[list] = deque()
        self.done = False  # its stream announced 'done' (arenas only)

    def take(self, nbytes: int) -> list | None:
        """An allocation of ``nbytes``, or None while there is no room."""
        off = self._fit(nbytes, placement_align(nbytes))
        if off is None:
            return None
        a = [self.start + off, self.start + off + nbytes, False]
        self.allocs.append(a)
        return a

    def _fit(self, n: int, align: int) -> int | None:
        if not self.allocs:
            return 0 if n <= self.size else None
        head = self.allocs[0][0] - self.start
        tail = self.allocs[-1][1] - self.start
        at = -(-tail // align) * align
        if self.allocs[-1][0] >= self.allocs[0][0]:  # not wrapped
            if at + n <= self.size:
                return at
            return 0 if n <= head else None
        return at if at + n <= head else None

    def reclaim(self) -> None:
        """Gives back the acknowledged allocations at the front."""
        while self.allocs and self.allocs[0][2]:
            self.allocs.popleft()


class Arenas:
    """First-fit ranges of the pool, one per stream (``stream_bytes``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used: dict[int, int] = {}  # start -> length

    def take(self, n: int) -> int | None:
        at = 0
        for start in sorted(self.used):
            if start - at >= n:
                return self._use(at, n)
            at = start + self.used[start]
        return self._use(at, n) if self.size - at >= n else None

    def _use(self, at: int, n: int) -> int:
        self.used[at] = n
        return at

    def give(self, start: int) -> None:
        del self.used[start]
