"""The writing end of a stream, :class:`Producer`, and what a closed one holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _aio, _shmstream
from ._errors import BadTensor, StreamError
from ._shmstream import Slot
from ._tensors import host_array

_DEFAULT = -1.0  # "the stream's timeout" for calls that take one


class Producer:
    """The writing end of a stream: creates its shared-memory segment (mode
    0600) and removes it when closed or collected.

    ``capacity`` items (a power of two), ``item_bytes`` reserved per
    registration unless told otherwise, ``payload_bytes`` in all (default
    ``capacity * item_bytes``). ``timeout`` (seconds, None: for ever) bounds
    every wait for room. ``batching`` (an item count, None: off) turns on
    adaptive batching: see :meth:`set_batching`.
    """

    __module__ = "shmstream"  # its public home (repr, help), as before the move

    __slots__ = ("_p", "_aio")

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
        batching: int | None = None,
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
        if batching:
            self._p.set_batching(batching)

    def register(
        self, tensor_id: str, nbytes: int | None = None, timeout: float | None = _DEFAULT
    ) -> Slot:
        """Reserves the next position for ``tensor_id`` and returns its
        :class:`Slot`: fill ``slot.numpy(dtype, shape)`` (or ``recv_into``,
        ``tensor.copy_`` through ``torch.from_dlpack(slot)``), then
        ``slot.commit(dtype, shape)``. Waits (Ctrl-C-able) while the ring is full."""
        return self._p.register(tensor_id, nbytes, timeout)

    async def aregister(self, tensor_id: str, nbytes: int | None = None) -> Slot:
        """:meth:`register` for asyncio: ``slot = await producer.aregister(id)``
        waits for room while the ring is full without blocking the loop
        (and without a thread: the loop's thread waits on the ring's futex
        through io_uring; the fallback: a native thread while awaited). It
        registers in the loop's thread only, so a cancelled await registers
        nothing. No timeout argument: wrap it in
        ``asyncio.timeout``/``wait_for``."""
        return await _aio.producer_register(self, tensor_id, nbytes)

    def pre_read_register(self, tensor_id: str, nbytes: int | None = None) -> int:
        """Reserves the next position for ``tensor_id`` until ``put`` names it;
        returns its offset in the payload region."""
        return self._p.pre_read_register(tensor_id, nbytes)

    def abandon(self, tensor_id: str, reason: str = "", code: int = 0) -> None:
        """Gives up the position ``pre_read_register`` reserved for
        ``tensor_id``: the consumer's ``Abandoned`` carries ``reason`` (cut
        to 96 bytes) and ``code`` (32-bit). ``UnknownId`` for an id that is
        not pending (never registered, put or given up already, or taken
        as a :class:`Slot`: abandon that through the slot)."""
        self._p.abandon(tensor_id, reason, code)

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

    def set_batching(self, max_items: int | None) -> None:
        """Adaptive batching (off by default): with ``max_items`` > 0, a
        commit that continues the producer's latest run (in order, same dtype
        and shape, same reserved size, back to back) is staged instead of
        published one by one, and the consumer takes the whole run, checked
        once, when it next looks. Nothing waits for a threshold: every commit
        still wakes a sleeping consumer, and a looking consumer takes what is
        staged; a run is at most ``max_items`` long (at most the capacity).
        ``None`` or 0 turns it off and publishes the held run. :meth:`flush`,
        :meth:`signal_done`, :meth:`wait_drained`, ``put_many``, a wait for
        room and closing publish the held run too."""
        self._p.set_batching(max_items)

    @property
    def batching(self) -> int | None:
        """The longest run a commit may stage; None when batching is off."""
        return self._p.batching

    def flush(self) -> None:
        """Publishes the run adaptive batching holds (if the consumer has not
        taken it already); nothing to do when batching is off."""
        self._p.flush()

    def signal_done(self) -> None:
        """No more items will be registered."""
        self._p.signal_done()

    def wait_drained(self, timeout: float | None = None) -> None:
        """Waits until the consumer released every item, so the producer may
        exit: dropping a producer removes its stream's segment, and a consumer
        that has not opened it by then never will (a hub stream's segment is
        left to the worker instead, see :meth:`Hub.create_stream`)."""
        self._p.wait_drained(timeout)

    async def await_drained(self) -> None:
        """:meth:`wait_drained` for asyncio: ``await producer.await_drained()``
        (no timeout argument: wrap it in ``asyncio.timeout``/``wait_for``)."""
        await _aio.producer_drained(self)

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
