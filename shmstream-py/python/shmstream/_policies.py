"""Chunk policies with the reference's constructor arguments; each is also
known by its name (``str(policy)``), which the stream parses."""

from __future__ import annotations

from collections.abc import Sequence

from . import _shmstream

_HOOKS = ("is_ready", "next_chunk_size", "window_size", "register_chunk")


class ChunkPolicy:
    """A chunk policy; ``str(policy)`` is its name (``"sliding:window=28,stride=7"``).

    Subclass it as in the reference: define ``is_ready(buffer_len)``,
    ``next_chunk_size(buffer_len)`` (the stride) and ``window_size()``, and
    optionally ``continue_after_producer_done()`` and ``register_chunk``
    (call ``super().register_chunk(n)``: it keeps ``first_chunk_read`` and
    ``items_consumed``). The stream calls such a policy with the GIL, a
    few microseconds per call; the built-in policies run in Rust.
    """

    _name: str | None = None
    first_chunk_read: bool = False
    items_consumed: int = 0

    def __init__(self) -> None:
        self.first_chunk_read = False
        self.items_consumed = 0

    def _set(self, name: str) -> None:
        self._name = _shmstream.policy_name(name)

    # --- the reference's methods (a Python subclass defines these) --------
    def register_chunk(self, chunk_size: int) -> None:
        """Told after each chunk how many items the stream advanced."""
        self.first_chunk_read = True
        self.items_consumed += chunk_size

    def is_ready(self, buffer_len: int) -> bool:
        """Whether ``buffer_len`` items make the next chunk."""
        raise NotImplementedError(f"{type(self).__name__} must define is_ready(buffer_len)")

    def next_chunk_size(self, buffer_len: int) -> int:
        """How far the stream advances after the next chunk (the stride)."""
        raise NotImplementedError(f"{type(self).__name__} must define next_chunk_size(buffer_len)")

    def window_size(self) -> int:
        """How many items the next chunk shows."""
        raise NotImplementedError(f"{type(self).__name__} must define window_size()")

    def continue_after_producer_done(self) -> bool:
        """Whether empty, never-final chunks keep coming after the end."""
        return False

    @property
    def name(self) -> str:
        """The policy's name, as the command line, traces and config spell it
        (``python:<class>`` for a Python subclass)."""
        if self._name is None:
            return f"python:{type(self).__qualname__}"
        return self._name

    @property
    def max_window(self) -> int:
        """The largest window the policy ever asks for (must fit the ring);
        a Python subclass may override it (default: its ``window_size()``)."""
        if self._name is None:
            return int(self.window_size())
        return _shmstream.policy_max_window(self._name)

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if self._name is None:
            return self is other
        return isinstance(other, ChunkPolicy) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name) if self._name is not None else id(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


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

    # The reference's methods (the stream itself runs the policy in Rust).
    def is_ready(self, buffer_len: int) -> bool:
        """The reference's ``is_ready``."""
        return buffer_len >= self.chunk_size

    def next_chunk_size(self, buffer_len: int) -> int:
        """The reference's ``next_chunk_size`` (the stride)."""
        return self.chunk_size

    def window_size(self) -> int:
        """The reference's ``window_size``."""
        return self.chunk_size

    def continue_after_producer_done(self) -> bool:
        """The reference's ``continue_after_producer_done``."""
        return self.continue_after_done


class SlidingWindowChunkPolicy(ChunkPolicy):
    """Windows of ``window`` items advancing by ``stride`` (1..window)."""

    def __init__(self, window: int, stride: int) -> None:
        self.window = window
        self.stride = stride
        self._set(f"sliding:window={window},stride={stride}")

    def is_ready(self, buffer_len: int) -> bool:
        """The reference's ``is_ready``."""
        return buffer_len >= self.window

    def next_chunk_size(self, buffer_len: int) -> int:
        """The reference's ``next_chunk_size`` (the stride)."""
        return self.stride

    def window_size(self) -> int:
        """The reference's ``window_size``."""
        return self.window


class LeftContextChunkPolicy(ChunkPolicy):
    """Chunks of ``chunk`` new items preceded (after the first) by
    ``left_context`` items of the previous chunk."""

    def __init__(self, chunk: int, left_context: int) -> None:
        self.chunk = chunk
        self.left_context = left_context
        self._set(f"left-context:chunk={chunk},context={left_context}")

    def is_ready(self, buffer_len: int) -> bool:
        """The reference's ``is_ready``."""
        need = self.chunk if not self.first_chunk_read else self.chunk + self.left_context
        return buffer_len >= need

    def next_chunk_size(self, buffer_len: int) -> int:
        """The reference's ``next_chunk_size`` (the stride)."""
        return self.chunk - self.left_context if not self.first_chunk_read else self.chunk

    def window_size(self) -> int:
        """The reference's ``window_size``."""
        return self.chunk if not self.first_chunk_read else self.chunk + self.left_context


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


def is_python_policy(policy: object) -> bool:
    """Whether ``policy`` is run in Python: an object with the reference's
    methods that is not a built-in policy (or overrides one's methods)."""
    if isinstance(policy, ChunkPolicy) and policy._name is not None:
        return any(
            m in cls.__dict__
            for cls in type(policy).__mro__
            if cls.__module__ != __name__
            for m in (*_HOOKS, "continue_after_producer_done")
        )
    if isinstance(policy, (str, type)):
        return False
    return all(hasattr(policy, m) for m in _HOOKS)


def policy_arg(policy: object) -> object:
    """What the native stream takes: a policy's name, or the Python object."""
    return policy if is_python_policy(policy) else policy_name(policy)  # type: ignore[arg-type]


def policy_name(policy: ChunkPolicy | str) -> str:
    if isinstance(policy, ChunkPolicy):
        return policy.name
    if isinstance(policy, str):
        return _shmstream.policy_name(policy)
    missing = [m for m in _HOOKS if not hasattr(policy, m)]
    raise TypeError(
        "policy must be a ChunkPolicy, a name like 'fixed:size=30', or an object with the "
        f"reference's ChunkPolicy methods ({', '.join(_HOOKS)}); "
        f"{type(policy).__name__} has no {', '.join(missing) or 'policy name'}"
    )
