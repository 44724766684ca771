"""The consumer's buffer, :class:`StreamBuffer`: a stream of another process
opened by name, or the reference's drop-in with its own producer in this
process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Union

from . import _aio, _shmstream
from ._errors import StreamError
from ._policies import ChunkPolicy, NamedChunkPolicy, is_python_policy, policy_arg, policy_name
from ._shmstream import StreamChunk

PolicyLike = Union[ChunkPolicy, str]


def _as_policy(policy: PolicyLike) -> ChunkPolicy:
    if isinstance(policy, ChunkPolicy) or is_python_policy(policy):
        return policy
    return NamedChunkPolicy(policy_name(policy))


class StreamBuffer:
    """The consumer's per-request, per-edge buffer (the reference's ``StreamBuffer``).

    ``StreamBuffer(request_id, edge_name, from_partition, policy)`` makes a
    buffer with its own producer in this process (the reference's drop-in:
    ``pre_read_register``, ``put``, ``signal_done`` on the same object).
    ``StreamBuffer.open(...)`` reads a stream that a :class:`Producer` in
    another process created.

    ``policy`` is a :class:`ChunkPolicy` or a name such as
    ``"sliding:window=28,stride=7"``.

    Built with the reference's four arguments, the buffer has no limit the
    reference lacks: a ``put`` of any size after an unsized
    ``pre_read_register``, any number of buffered items, any window while
    earlier chunks are held; it moves to a bigger ring when it must
    (docs/design.md, "Growing the in-process buffer"). Given any of
    ``capacity`` (items), ``item_bytes`` (what an unsized
    ``pre_read_register`` reserves) or ``payload_bytes`` (default
    ``capacity * item_bytes``), it is fixed-memory: what does not fit raises
    :class:`RingFull` or :class:`BadTensor` with the numbers (pop chunks
    first). ``grow`` says it outright (True: start from the sizes given and
    grow; False: fixed at the defaults, 1024 items of 4096 bytes).
    """

    __module__ = "shmstream"  # its public home (repr, help), as before the move

    # ``pre_read_register`` and ``put`` are the per-item calls: each
    # instance holds them bound to its native producer (no Python frame in
    # between, about a third of their cost), documented here.
    __slots__ = {
        "_b": "The native buffer.",
        "_p": "The in-process producer (None for a buffer of another process's stream).",
        "policy": "The :class:`ChunkPolicy` that cuts the stream into chunks.",
        "_done": "Whether this buffer's own producer signalled done.",
        "_aio": "The native waiters of the awaits, by kind (made by the first).",
        "pre_read_register": (
            "pre_read_register(tensor_id, nbytes=None): reserves the next position of the "
            "stream for ``tensor_id`` (``nbytes``, default the buffer's ``item_bytes``)."
        ),
        "put": (
            "put(tensor_id, item): copies ``item`` (a contiguous host torch.Tensor or "
            "numpy.ndarray) into the slot ``pre_read_register`` reserved for ``tensor_id``; "
            "the items arrive in any order, the chunks see them in registration order."
        ),
    }

    def __init__(
        self,
        request_id: str,
        edge_name: str,
        from_partition: str,
        policy: PolicyLike,
        *,
        capacity: int | None = None,
        item_bytes: int | None = None,
        payload_bytes: int | None = None,
        grow: bool | None = None,
    ) -> None:
        if grow is None:  # explicit sizes mean fixed memory
            grow = capacity is None and item_bytes is None and payload_bytes is None
        self.policy = _as_policy(policy)
        self._b, self._p = _shmstream._Buffer.in_process(
            request_id,
            edge_name,
            from_partition,
            policy_arg(self.policy),
            1024 if capacity is None else capacity,
            4096 if item_bytes is None else item_bytes,
            payload_bytes,
            bool(grow),
        )
        self._done = False
        self.pre_read_register = self._p._register_pending
        self.put = self._p._put_item

    @classmethod
    def open(
        cls,
        request_id: str,
        edge_name: str,
        from_partition: str,
        policy: PolicyLike,
        *,
        prefix: str | None = None,
        timeout: float | None = None,
    ) -> StreamBuffer:
        """Opens the stream a :class:`Producer` created (the only consumer).

        ``timeout`` (seconds, None: for ever) is the stream's default wait.
        Raises :class:`StreamNotFound` when the producer has not created it.
        """
        self = cls.__new__(cls)
        self.policy = _as_policy(policy)
        self._b = _shmstream._Buffer.open(
            request_id, edge_name, from_partition, policy_arg(self.policy), prefix, timeout
        )
        self._p = None
        self._done = False
        self.pre_read_register = self.put = self._not_here
        return self

    # --- identity -------------------------------------------------------
    @property
    def request_id(self) -> str:
        """The request the stream belongs to (first part of its identity)."""
        return self._b.request_id

    @property
    def edge_name(self) -> str:
        """The graph edge the stream carries (second part of its identity)."""
        return self._b.edge_name

    @property
    def from_partition(self) -> str:
        """The partition that produces the stream (third part of its identity)."""
        return self._b.from_partition

    # --- the producer's side (in-process buffers) ------------------------
    def _producer(self) -> Any:
        if self._p is None:
            raise StreamError(
                f"stream {self._name()}: this buffer reads a stream of another process; "
                "register and put through its Producer"
            )
        return self._p

    def _not_here(self, *args: Any, **kwargs: Any) -> None:
        """``pre_read_register`` and ``put`` of a buffer of another process's stream."""
        self._producer()

    def signal_done(self) -> None:
        """No more items will be registered. Idempotent. On a buffer of
        another process's stream it only records what the worker was told
        (``producer_done`` turns true): the stream's own end comes from its
        :class:`Producer` (the reference's worker calls it there when the
        producer reports done)."""
        if self._p is not None and not self._done:
            self._p.signal_done()
        self._done = True

    @property
    def producer_done(self) -> bool:
        """Whether the producer signalled done."""
        return self._done or self._b.producer_done

    # --- the consumer's side --------------------------------------------
    def has_chunk_ready(self) -> bool:
        """Whether ``pop_chunk()`` would return a chunk now."""
        return self._b.has_chunk_ready()

    def pop_chunk(self) -> StreamChunk:
        """Pops the next chunk; raises :class:`NotReady` when ``has_chunk_ready()`` is false."""
        return self._b.pop_chunk()

    def next_chunk(self, timeout: float | None = None) -> StreamChunk | None:
        """Waits (without the GIL; Ctrl-C raises KeyboardInterrupt) for the
        next chunk; None once the final chunk was popped. ``timeout`` in
        seconds (None: for ever) raises :class:`StreamTimeout` when it passes."""
        return self._b.next_chunk(timeout)

    def __iter__(self) -> Iterator[StreamChunk]:
        """The chunks up to and including the final one (waits for each)."""
        while True:
            chunk = self._b.next_chunk(None)
            if chunk is None:
                return
            yield chunk

    async def anext_chunk(self) -> StreamChunk | None:
        """:meth:`next_chunk` for asyncio: ``await buffer.anext_chunk()``;
        None once the final chunk was popped. No thread: the loop's thread
        waits on the stream's futex through io_uring (the fallback: a native
        thread while awaited); the wait pops nothing, so a cancelled await
        loses no chunk.
        No timeout argument: wrap it in ``asyncio.timeout``/``wait_for``."""
        return await _aio.buffer_next_chunk(self)

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        """``async for chunk in buffer``: the chunks up to and including the final one."""
        return _aio.buffer_chunks(self)

    @property
    def consumed(self) -> int:
        """Global position of the first item still in the buffer."""
        return self._b.consumed

    @property
    def _consumed(self) -> int:
        """The reference's name of :attr:`consumed`."""
        return self._b.consumed

    @property
    def finished(self) -> bool:
        """Whether the final chunk was popped."""
        return self._b.finished

    @property
    def live_chunks(self) -> int:
        """Popped chunks whose slots are still held (by the chunk or its views)."""
        return self._b.live_chunks

    @property
    def capacity(self) -> int:
        """Items the ring holds (popped chunks' slots count until released)."""
        return self._b.capacity

    @property
    def payload_region(self) -> tuple[int, int]:
        """``(address, length)`` of the payload as this process maps it."""
        return self._b.payload_region

    def store_uningested_edge(self, edge: Any) -> None:
        """Keeps an edge the consumer could not hand on yet (first in, first out)."""
        self._b.store_uningested_edge(edge)

    def pop_waiting_edge(self) -> Any:
        """The oldest stored edge, or None."""
        return self._b.pop_waiting_edge()

    def _name(self) -> str:
        return f"{self.request_id}/{self.edge_name}/{self.from_partition}"

    def __repr__(self) -> str:
        side = "in-process" if self._p is not None else "opened"
        return (
            f"StreamBuffer({self.request_id!r}, {self.edge_name!r}, {self.from_partition!r}, "
            f"policy={self._b.policy_name!r}, {side}, consumed={self.consumed}, "
            f"live_chunks={self.live_chunks}, producer_done={self.producer_done}, "
            f"finished={self.finished})"
        )
