"""shmstream: zero-copy tensor streams between two processes on one host,
cut into chunks the way a streaming model needs them.

In one process, :class:`StreamBuffer` is a drop-in for the reference
``StreamBuffer`` (``pre_read_register``, ``put``, ``has_chunk_ready``,
``pop_chunk``, ...). Across processes, a :class:`Producer` creates the
stream and ``StreamBuffer.open`` reads it. A worker reading many streams
waits for all of them at once with a :class:`StreamSet`; producers create
its streams through a :class:`Hub`. A chunk's ``data`` and its
``__dlpack__`` are views of the shared memory (no copy); its slots go back
to the producer when the chunk and every view made from it are gone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Union

from . import _shmstream
from ._errors import (
    Abandoned,
    AfterDone,
    BadConfig,
    BadDType,
    BadId,
    BadPolicy,
    BadTensor,
    ChunkReleased,
    ConsumerGone,
    CorruptStream,
    DuplicateId,
    HubFull,
    NotAnnounced,
    NotReady,
    PeerGone,
    ProducerGone,
    RingFull,
    SetupFailed,
    SlotClosed,
    StreamError,
    StreamExists,
    StreamNotFound,
    StreamTimeout,
    TooManyProducers,
    UnknownId,
    WorkerGone,
)
from ._policies import (
    ChunkPolicy,
    FixedChunkPolicy,
    LeftContextChunkPolicy,
    NamedChunkPolicy,
    RampChunkPolicy,
    ScheduledChunkPolicy,
    SlidingWindowChunkPolicy,
    policy_name,
)
from ._shmstream import Slot, StreamChunk, StreamKey
from ._tensors import host_array

__all__ = [
    "Abandoned",
    "AfterDone",
    "BadConfig",
    "BadDType",
    "BadId",
    "BadPolicy",
    "BadTensor",
    "ChunkPolicy",
    "ChunkReleased",
    "ConsumerGone",
    "CorruptStream",
    "DuplicateId",
    "FixedChunkPolicy",
    "Hub",
    "HubFull",
    "LeftContextChunkPolicy",
    "NamedChunkPolicy",
    "NotAnnounced",
    "NotReady",
    "PeerGone",
    "Producer",
    "ProducerGone",
    "RampChunkPolicy",
    "RingFull",
    "ScheduledChunkPolicy",
    "SetupFailed",
    "SlidingWindowChunkPolicy",
    "Slot",
    "SlotClosed",
    "StreamBuffer",
    "StreamChunk",
    "StreamError",
    "StreamExists",
    "StreamKey",
    "StreamNotFound",
    "StreamSet",
    "StreamTimeout",
    "TooManyProducers",
    "UnknownId",
    "WorkerGone",
]

PolicyLike = Union[ChunkPolicy, str]

_DEFAULT = -1.0  # "the stream's timeout" for calls that take one


def _as_policy(policy: PolicyLike) -> ChunkPolicy:
    return policy if isinstance(policy, ChunkPolicy) else NamedChunkPolicy(policy_name(policy))


class StreamBuffer:
    """The consumer's per-request, per-edge buffer (the reference's ``StreamBuffer``).

    ``StreamBuffer(request_id, edge_name, from_partition, policy)`` makes a
    buffer with its own producer in this process (the reference's drop-in:
    ``pre_read_register``, ``put``, ``signal_done`` on the same object).
    ``StreamBuffer.open(...)`` reads a stream that a :class:`Producer` in
    another process created.

    ``policy`` is a :class:`ChunkPolicy` or a name such as
    ``"sliding:window=28,stride=7"``. The ring holds ``capacity`` items and
    ``payload_bytes`` bytes (default ``capacity * item_bytes``); a ``put``
    that does not fit raises :class:`RingFull` (pop chunks first).
    """

    __slots__ = {
        "_b": "The native buffer.",
        "_p": "The in-process producer (None for a buffer of another process's stream).",
        "policy": "The :class:`ChunkPolicy` that cuts the stream into chunks.",
        "_done": "Whether this buffer's own producer signalled done.",
    }

    def __init__(
        self,
        request_id: str,
        edge_name: str,
        from_partition: str,
        policy: PolicyLike,
        *,
        capacity: int = 1024,
        item_bytes: int = 4096,
        payload_bytes: int | None = None,
    ) -> None:
        self.policy = _as_policy(policy)
        self._b, self._p = _shmstream._Buffer.in_process(
            request_id,
            edge_name,
            from_partition,
            self.policy.name,
            capacity,
            item_bytes,
            payload_bytes,
        )
        self._done = False

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
            request_id, edge_name, from_partition, self.policy.name, prefix, timeout
        )
        self._p = None
        self._done = False
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

    def pre_read_register(self, tensor_id: str, nbytes: int | None = None) -> None:
        """Reserves the next position of the stream for ``tensor_id``
        (``nbytes``, default the buffer's ``item_bytes``)."""
        self._producer().pre_read_register(tensor_id, nbytes)

    def put(self, tensor_id: str, item: Any) -> None:
        """Copies ``item`` (a contiguous host torch.Tensor or numpy.ndarray)
        into the slot ``pre_read_register`` reserved for ``tensor_id``; the
        items arrive in any order, the chunks see them in registration order."""
        dtype, shape, ptr, nbytes, keep = host_array(item)
        self._producer()._put_raw(tensor_id, dtype, shape, ptr, nbytes)
        del keep

    def signal_done(self) -> None:
        """No more items will be registered."""
        self._producer().signal_done()
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
            f"policy={self.policy.name!r}, {side}, consumed={self.consumed}, "
            f"live_chunks={self.live_chunks}, producer_done={self.producer_done}, "
            f"finished={self.finished})"
        )


class Producer:
    """The writing end of a stream: creates its shared-memory segment (mode
    0600) and removes it when closed or collected.

    ``capacity`` items (a power of two), ``item_bytes`` reserved per
    registration unless told otherwise, ``payload_bytes`` in all (default
    ``capacity * item_bytes``). ``timeout`` (seconds, None: for ever) bounds
    every wait for room.
    """

    __slots__ = ("_p",)

    def __init__(
        self,
        request_id: str,
        edge_name: str,
        from_partition: str,
        *,
        capacity: int = 1024,
        item_bytes: int = 65536,
        payload_bytes: int | None = None,
        prefix: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._p = _shmstream._Producer.create(
            request_id,
            edge_name,
            from_partition,
            capacity,
            item_bytes,
            payload_bytes,
            prefix,
            timeout,
        )

    def register(
        self, tensor_id: str, nbytes: int | None = None, timeout: float | None = _DEFAULT
    ) -> Slot:
        """Reserves the next position for ``tensor_id`` and returns its
        :class:`Slot`: fill ``slot.numpy(dtype, shape)`` (or ``recv_into``,
        ``tensor.copy_`` through ``torch.from_dlpack(slot)``), then
        ``slot.commit(dtype, shape)``. Waits (Ctrl-C-able) while the ring is full."""
        return self._p.register(tensor_id, nbytes, timeout)

    def pre_read_register(self, tensor_id: str, nbytes: int | None = None) -> int:
        """Reserves the next position for ``tensor_id`` until ``put`` names it;
        returns its offset in the payload region."""
        return self._p.pre_read_register(tensor_id, nbytes)

    def put(self, tensor_id: str, item: Any, timeout: float | None = _DEFAULT) -> None:
        """Copies ``item`` (a contiguous host torch.Tensor or numpy.ndarray) into
        the stream: into the slot ``pre_read_register`` reserved for
        ``tensor_id``, or else into a newly registered one of its exact size."""
        dtype, shape, ptr, nbytes, keep = host_array(item)
        self._p._put_any_raw(tensor_id, dtype, shape, ptr, nbytes, timeout)
        del keep

    def put_many(
        self,
        items: Sequence[tuple[str | None, Any]] | Sequence[str | None],
        stacked: Any = None,
        timeout: float | None = _DEFAULT,
    ) -> None:
        """Copies a batch of tensors into the stream in one call, without the
        GIL, waking the consumer once per batch instead of once per item.

        Either ``items`` is a list of ``(tensor_id, array)`` pairs (contiguous
        host torch.Tensors or numpy.ndarrays, any mix of dtypes and shapes),
        or ``items`` is a list of ``n`` ids and ``stacked`` one contiguous
        array ``[n, *shape]`` whose row ``i`` is the tensor of ``items[i]``.
        An id of ``None`` names the tensor by its stream position (``"17"``).
        Every tensor is registered anew, in order, with its exact size (ids
        reserved with ``pre_read_register`` go through ``put``).

        Waits (Ctrl-C-able) while the ring is full, up to ``timeout`` per
        wait. An error names the item (``"item 3 of the batch: ..."``): the
        items before it are published, it and the rest are not registered.
        """
        if stacked is not None:
            ids = list(items)
            dtype, shape, ptr, nbytes, keep = host_array(stacked)
            n = len(ids)
            if len(shape) == 0 or shape[0] != n:
                raise BadTensor(
                    f"put_many: {n} ids but a stacked array of shape {tuple(shape)}; "
                    f"its first dimension must be {n}"
                )
            item_nbytes = nbytes // n if n else 0
            self._p._put_stacked_raw(ids, dtype, list(shape[1:]), ptr, item_nbytes, timeout)
            del keep
            return
        ids, dtypes, shapes, ptrs, sizes, keep = [], [], [], [], [], []
        for i, pair in enumerate(items):
            try:
                tensor_id, item = pair
            except (TypeError, ValueError):
                raise TypeError(
                    f"item {i} of the batch: put_many takes (tensor_id, array) pairs, or ids "
                    f"and stacked=[n, *shape]; got {type(pair).__name__} (nothing was published)"
                ) from None
            try:
                dtype, shape, ptr, nbytes, k = host_array(item)
            except (StreamError, TypeError) as e:
                raise type(e)(f"item {i} of the batch: {e} (nothing was published)") from None
            ids.append(tensor_id)
            dtypes.append(dtype)
            shapes.append(list(shape))
            ptrs.append(ptr)
            sizes.append(nbytes)
            keep.append(k)
        self._p._put_many_raw(ids, dtypes, shapes, ptrs, sizes, timeout)
        del keep

    def signal_done(self) -> None:
        """No more items will be registered."""
        self._p.signal_done()

    def wait_drained(self, timeout: float | None = None) -> None:
        """Waits until the consumer released every item, so the producer may
        exit: dropping a producer removes its stream's segment, and a consumer
        that has not opened it by then never will (a hub stream's segment is
        left to the worker instead, see :meth:`Hub.create_stream`)."""
        self._p.wait_drained(timeout)

    @property
    def capacity(self) -> int:
        """Items the ring holds."""
        return self._p.capacity

    @property
    def item_bytes(self) -> int:
        """Bytes a registration reserves unless told otherwise."""
        return self._p.item_bytes

    @property
    def payload_bytes(self) -> int:
        """Bytes of the payload region all items share."""
        return self._p.payload_bytes

    @property
    def registered(self) -> int:
        """Positions registered so far (the next one's stream position)."""
        return self._p.registered

    @property
    def payload_region(self) -> tuple[int, int]:
        """``(address, length)`` of the payload as this process maps it."""
        return self._p.payload_region

    def close(self) -> None:
        """Drops this end (the segment goes with the last reference); any
        later use, from any thread, raises :class:`StreamError`."""
        self._p = _CLOSED

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        p = self._p  # once: another thread may close it meanwhile
        if p is _CLOSED:
            return "Producer(closed)"
        return (
            f"Producer({p.request_id!r}, {p.edge_name!r}, {p.from_partition!r}, "
            f"capacity={p.capacity}, registered={p.registered})"
        )


class _Closed:
    """What a closed :class:`Producer` holds instead of its native end: every
    use raises :class:`StreamError` (a call already running in another thread
    keeps the native end it started with, and ends normally)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise StreamError(f"the producer is closed (Producer.close() ran); no {name} after it")


_CLOSED = _Closed()


# After StreamBuffer and Producer, which the stream set hands out.
from ._stream_set import Hub, StreamSet  # noqa: E402
