"""One consumer worker, many streams, one wait (issue 12): :class:`StreamSet`
on the worker's side, :class:`Hub` on a producer's."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from . import _aio, _shmstream
from ._buffer import StreamBuffer
from ._policies import ChunkPolicy, NamedChunkPolicy, is_python_policy, policy_arg, policy_name
from ._producer import Producer
from ._shmstream import StreamChunk, StreamKey, _ready_chunk


def _buffer(b: Any) -> Any:
    """A :class:`StreamBuffer` around a set's native buffer."""
    sb = StreamBuffer.__new__(StreamBuffer)
    sb._b = b
    sb._p = None
    sb._done = False
    sb.pre_read_register = sb.put = sb._not_here
    obj = b.policy_object
    sb.policy = obj if obj is not None else NamedChunkPolicy(b.policy_name)
    return sb


def _default_policy(policy: Any, factory: Any) -> Any:
    """A set's default policy as the native set takes it: a name, or a
    factory called with each announced stream's identity that returns a
    name or a Python policy (one per stream: a policy has state)."""
    if policy is not None and factory is not None:
        raise TypeError("give default_policy or policy_factory, not both")
    if factory is not None:

        def made(request_id: str, edge_name: str, from_partition: str) -> Any:
            p = factory(request_id, edge_name, from_partition)
            return None if p is None else policy_arg(p)

    elif policy is None:
        return None
    elif is_python_policy(policy):
        raise TypeError(
            f"default_policy {policy!r} is one Python policy object, but each stream needs "
            "its own (a policy keeps state): pass its class or a factory, e.g. "
            f"default_policy={type(policy).__qualname__} or default_policy=lambda: ..."
        )
    elif isinstance(policy, (ChunkPolicy, str)) or not callable(policy):
        return policy_name(policy)
    else:
        factory = policy

        def made(request_id: str, edge_name: str, from_partition: str) -> Any:
            return policy_arg(factory())

    made.__qualname__ = getattr(factory, "__qualname__", "factory")
    return made


class StreamSet:
    """The consumer worker's streams: creates the worker's hub, adopts the
    streams producers announce there, and waits for all of them at once.

    ``StreamSet(worker, prefix=None, default_policy=None)`` creates the hub
    ``/<prefix>hub-<worker>`` (mode 0600; removed at :meth:`close`, at the
    end of a ``with`` block, or when the set is collected). With a
    ``default_policy`` (a name, a built-in :class:`ChunkPolicy`, or for a
    Python policy a factory such as its class: one object per stream)
    every announced stream is adopted with it as :meth:`wait_any` finds
    it; without, announced streams wait for :meth:`add`. A
    ``policy_factory(request_id, edge_name, from_partition)`` instead
    chooses each stream's policy (a name or a policy; None leaves the
    stream to :meth:`add`), as the reference's worker makes one buffer per
    request and edge.

    :meth:`wait_any` sleeps (without the GIL) on one futex for every stream,
    once for the whole timeout (an idle worker wakes at most once a second,
    however many streams it has open), and returns the keys of the streams
    with news: a chunk ready, the end after the final chunk, an error, or a
    producer gone (the last ones once per stream). ``set[key]`` is the
    stream's :class:`StreamBuffer`; pop its chunks with :meth:`ready_chunks`
    (or ``pop_chunk`` while ``has_chunk_ready()``)::

        with StreamSet("worker-0", default_policy="fixed:size=4") as streams:
            while True:
                for key in streams.wait_any(timeout=1.0):
                    try:
                        for chunk in streams.ready_chunks(key):
                            use(chunk.data)
                    except ProducerGone:
                        streams.remove(key)
                        continue
                    if streams[key].finished:
                        streams.remove(key)
    """

    __slots__ = ("_s", "_buffers", "_cache_lock", "_aio", "__weakref__")

    def __init__(
        self,
        worker: str,
        *,
        prefix: str | None = None,
        default_policy: ChunkPolicy | str | Callable[[], Any] | None = None,
        entries: int | None = None,
        policy_factory: Callable[[str, str, str], Any] | None = None,
    ) -> None:
        self._s = _shmstream._StreamSet.create(
            worker, prefix, _default_policy(default_policy, policy_factory), entries
        )
        self._buffers: dict[StreamKey, Any] = {}
        # Orders a look-up that caches a buffer with a removal from another
        # thread: else the look-up could cache the buffer of a stream just
        # removed, and keep it (its mapping) until close. Reentrant: a
        # collection inside may run code that uses the set.
        self._cache_lock = threading.RLock()

    # --- waiting --------------------------------------------------------
    def wait_any(self, timeout: float | None = None) -> list[StreamKey]:
        """Waits until a stream has news and returns the keys of those that
        do (adopting announced streams on the way); ``[]`` once ``timeout``
        seconds passed (None: wait for ever, 0: just look). Fair: a stream
        with news is returned by the next call that finds any, and keeps
        being returned while it has chunks ready. A stream whose policy
        continues after done is returned until its first empty chunk after
        the end is taken (by :meth:`ready_chunks` or ``pop_chunk``); then
        never again (nothing can change), and it costs no CPU while idle.

        Ctrl-C raises KeyboardInterrupt at once: the SIGINT handler
        interrupts the sleep of the main thread. In one window, a signal
        handled just before the sleep's system call starts (microseconds),
        or with ``_thread.interrupt_main()`` (which sends no signal), it
        comes when the current 1 s slice of the sleep ends: at most 1 s
        late."""
        return self._s.wait_any(timeout)

    async def await_any(self, timeout: float | None = None) -> list[StreamKey]:
        """:meth:`wait_any` for asyncio: ``await streams.await_any()``. The
        event loop's thread waits on the set's one futex through an
        io_uring ``FUTEX_WAIT`` (no thread; where io_uring is not
        available, or with ``SHMSTREAM_AIO_WAIT=thread``, one waiter thread
        per set, not per stream, sleeps in the set's wait without the GIL);
        every task awaiting the set gets the same keys. ``[]`` once
        ``timeout`` passed. Cancelling the await (``asyncio.timeout``,
        ``wait_for``, ``task.cancel()``) takes nothing: what was ready stays
        ready. A close of the set raises the closed error in every awaiting
        task. With the waiter thread, serve the set from one task: its wait
        holds the set, so other tasks' looks at it wait for it to step aside
        (about 1 ms)."""
        return await _aio.set_wait_any(self, timeout)

    def __aiter__(self) -> AsyncIterator[tuple[StreamKey, StreamChunk]]:
        """``async for key, chunk in streams``: every chunk of every stream,
        as :meth:`await_any` and :meth:`ready_chunks` find them. A stream's
        error (:class:`ProducerGone`, ...) ends the iteration, with the
        stream's key as the exception's ``key`` (remove it, then iterate
        again)."""
        return _aio.set_chunks(self)

    def ready_chunks(self, key: StreamKey) -> Iterator[StreamChunk]:
        """The chunks of stream ``key`` ready now, in order, without waiting;
        ends when nothing new is ready (a continue-after-done stream gives
        one empty chunk after its end, then nothing: ``set[key].pop_chunk()``
        still pops empty chunks as the reference does). Raises the stream's
        error (:class:`ProducerGone` when its producer died without
        signalling done, ...) once its chunks before are out."""
        b = self[key]._b
        while (chunk := _ready_chunk(b)) is not None:
            yield chunk

    # --- membership -----------------------------------------------------
    def add(
        self,
        request_id: str,
        edge_name: str,
        from_partition: str,
        policy: ChunkPolicy | str,
        *,
        prefix: str | None = None,
    ) -> StreamKey:
        """Adopts the announced stream of that identity with ``policy``
        (segment ``prefix``: default the set's). Raises :class:`NotAnnounced`
        when no producer announced it yet."""
        return self._s.add(request_id, edge_name, from_partition, policy_arg(policy), prefix)

    def remove(self, key: StreamKey) -> Any:
        """Takes stream ``key`` out of the set and returns its
        :class:`StreamBuffer` (chunks already popped stay valid; drop it to
        detach). KeyError if it is not in the set."""
        with self._cache_lock:
            cached = self._buffers.pop(key, None)
            b = self._s.remove(key)
        return cached if cached is not None else _buffer(b)

    def discard(self, key: StreamKey) -> None:
        """Takes stream ``key`` out of the set if it is there."""
        with self._cache_lock:
            self._buffers.pop(key, None)
            self._s.discard(key)

    def __getitem__(self, key: StreamKey) -> Any:
        """The :class:`StreamBuffer` of stream ``key`` (KeyError if not in the set)."""
        b = self._buffers.get(key)
        if b is None:
            with self._cache_lock:
                b = self._buffers.get(key)
                if b is None:
                    b = self._buffers[key] = _buffer(self._s.buffer(key))
        return b

    def __contains__(self, key: object) -> bool:
        return isinstance(key, StreamKey) and self._s.__contains__(key)

    def __len__(self) -> int:
        return len(self._s)

    def __iter__(self) -> Iterator[StreamKey]:
        return iter(self._s.keys())

    def keys(self) -> list[StreamKey]:
        """The keys of every stream in the set."""
        return self._s.keys()

    def find(self, request_id: str, edge_name: str, from_partition: str) -> StreamKey | None:
        """The key of the stream of that identity, or None."""
        return self._s.find(request_id, edge_name, from_partition)

    def announced(self) -> list[tuple[str, str, str]]:
        """``(request_id, edge_name, from_partition)`` of each stream announced
        and not adopted (without a default policy: what :meth:`add` takes)."""
        return self._s.announced()

    def take_adopt_errors(self) -> list[tuple[tuple[str, str, str], Exception]]:
        """``(identity, exception)`` for each announced stream that could not be
        opened since the last call (its producer died and its segment went, say)."""
        return self._s.take_adopt_errors()

    # --- the hub --------------------------------------------------------
    @property
    def name(self) -> str:
        """The hub's segment name (``<prefix>hub-<worker>``)."""
        return self._s.name

    @property
    def prefix(self) -> str:
        """The name prefix of the hub's and its streams' segments."""
        return self._s.prefix

    @property
    def default_policy(self) -> str | None:
        """The policy of adopted streams (None: :meth:`add` only;
        ``factory:<name>`` with a factory)."""
        return self._s.default_policy

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (or the ``with`` ended)."""
        return self._s.closed

    def close(self) -> None:
        """Removes every stream and the hub; producers can no longer create
        streams for the worker. Buffers and chunks still held stay readable."""
        with self._cache_lock:
            self._buffers.clear()
            self._s.close()

    def __enter__(self) -> StreamSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"StreamSet({self.name!r}, closed)"
        return (
            f"StreamSet({self.name!r}, streams={len(self)}, default_policy={self.default_policy!r})"
        )


class Hub:
    """A producer process's attachment to a worker's hub:
    ``Hub.attach(worker, prefix=None)``, then :meth:`create_stream` for each
    stream the worker is to read. The attachment lives as long as the
    ``Hub`` and every stream created through it."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        raise TypeError("use Hub.attach(worker, prefix=...)")

    @classmethod
    def attach(cls, worker: str, *, prefix: str | None = None) -> Hub:
        """Attaches to the hub of ``worker`` (made by its :class:`StreamSet`).
        Raises :class:`StreamNotFound` (no such hub yet), :class:`WorkerGone`,
        :class:`TooManyProducers`."""
        self = cls.__new__(cls)
        self._h = _shmstream._Hub.attach(worker, prefix)
        return self

    def create_stream(
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
    ) -> Any:
        """Creates a stream for the worker (as :class:`Producer`, segment
        ``prefix`` default the hub's) and announces it in the hub; its
        commits, ``signal_done`` and close then wake the worker. A producer
        dropped before the worker adopted its stream leaves the segment to
        the worker, which reads it whole and then removes it (the set removes
        those it never adopted when it closes). ``batching``: as
        :class:`Producer`'s. Raises
        :class:`HubFull`, :class:`WorkerGone`, :class:`StreamExists`."""
        p = Producer.__new__(Producer)
        p._p = self._h.create_stream(
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
            p._p.set_batching(batching)
        return p

    @property
    def name(self) -> str:
        """The hub's segment name."""
        return self._h.name

    def __repr__(self) -> str:
        return f"Hub({self.name!r})"
