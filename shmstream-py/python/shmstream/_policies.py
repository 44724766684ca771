"""Chunk policies with the reference's constructor arguments; each is also
known by its name (``str(policy)``), which the stream parses."""

from __future__ import annotations

from collections.abc import Sequence

from . import _shmstream


class ChunkPolicy:
    """A chunk policy; ``str(policy)`` is its name (``"sliding:window=28,stride=7"``)."""

    _name: str

    def _set(self, name: str) -> None:
        self._name = _shmstream.policy_name(name)

    @property
    def name(self) -> str:
        """The policy's name, as the command line, traces and config spell it."""
        return self._name

    @property
    def max_window(self) -> int:
        """The largest window the policy ever asks for (must fit the ring)."""
        return _shmstream.policy_max_window(self._name)

    def __str__(self) -> str:
        return self._name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChunkPolicy) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"


class NamedChunkPolicy(ChunkPolicy):
    """A policy given by its name, e.g. ``NamedChunkPolicy("fixed:size=30,continue")``."""

    def __init__(self, name: str) -> None:
        self._set(name)


class FixedChunkPolicy(ChunkPolicy):
    """Chunks of ``chunk_size`` items, no overlap. With ``continue_after_done``
    the stream keeps offering empty, never-final chunks after the end."""

    def __init__(self, chunk_size: int, continue_after_done: bool = False) -> None:
        self.chunk_size = chunk_size
        self.continue_after_done = continue_after_done
        self._set(f"fixed:size={chunk_size}" + (",continue" if continue_after_done else ""))


class SlidingWindowChunkPolicy(ChunkPolicy):
    """Windows of ``window`` items advancing by ``stride`` (1..window)."""

    def __init__(self, window: int, stride: int) -> None:
        self.window = window
        self.stride = stride
        self._set(f"sliding:window={window},stride={stride}")


class LeftContextChunkPolicy(ChunkPolicy):
    """Chunks of ``chunk`` new items preceded (after the first) by
    ``left_context`` items of the previous chunk."""

    def __init__(self, chunk: int, left_context: int) -> None:
        self.chunk = chunk
        self.left_context = left_context
        self._set(f"left-context:chunk={chunk},context={left_context}")


class RampChunkPolicy(ChunkPolicy):
    """A first chunk of ``first`` items, then ``size``, growing by ``growth``
    per chunk up to ``max`` (SPEC section 3)."""

    def __init__(
        self,
        first: int,
        size: int,
        growth: float = 1.0,
        max: int | None = None,  # noqa: A002 (the name's key)
        continue_after_done: bool = False,
    ) -> None:
        self.first, self.size, self.growth, self.max = first, size, growth, max
        self.continue_after_done = continue_after_done
        name = f"ramp:first={first},size={size},growth={float(growth)!r}"
        if max is not None:
            name += f",max={max}"
        if continue_after_done:
            name += ",continue"
        self._set(name)


class ScheduledChunkPolicy(ChunkPolicy):
    """Chunk ``k`` brings ``schedule[k]`` new items (``chunk`` once the schedule
    runs out) after up to ``context`` items already delivered (SPEC section 3)."""

    def __init__(self, schedule: Sequence[int], chunk: int, context: int, prime: int = 0) -> None:
        self.schedule = list(schedule)
        self.chunk, self.context, self.prime = chunk, context, prime
        sched = "/".join(str(int(s)) for s in self.schedule)
        self._set(f"scheduled:schedule={sched},chunk={chunk},context={context},prime={prime}")


def policy_name(policy: ChunkPolicy | str) -> str:
    if isinstance(policy, ChunkPolicy):
        return policy.name
    if isinstance(policy, str):
        return _shmstream.policy_name(policy)
    raise TypeError(
        f"policy must be a ChunkPolicy or a name like 'fixed:size=30', not {type(policy).__name__}"
    )
