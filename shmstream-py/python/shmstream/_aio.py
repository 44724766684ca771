"""asyncio (issue 25): the awaitable variants of the blocking waits.

A :class:`StreamSet`'s await needs no thread: the event loop's own thread
looks at the set and, when nothing is ready, arms an io_uring
``FUTEX_WAIT`` on the set's one futex (``_SetUring``); a producer's commit
completes it as it would wake a sleeping thread, the ring's eventfd turns
readable, and the loop (``add_reader``) looks again. A standalone
:class:`StreamBuffer`'s await and a producer's (room in the ring, the
drain) wait the same way on the futex the other side already wakes (the
ring's data bell, its space bell: ``_StreamWait``). Where io_uring's
``FUTEX_WAIT`` is not available (or with ``SHMSTREAM_AIO_WAIT=thread``) a
native thread per set (``_SetWatch``), or per awaited buffer or producer
(``_StreamWait``'s fallback), waits without the GIL and makes a socket
readable instead. Every task awaiting the same object shares one wait.
The waits only *wait*: the loop's own thread then looks and pops (or
registers), so a cancelled ``await`` takes nothing with it (readiness is
level-triggered: what was ready stays ready). A cancelled await that
leaves no one waiting ends the wait at once (io_uring, a set's thread) or
within the fallback thread's 20 ms slice (a buffer's, a producer's).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from . import _shmstream
from ._errors import RingFull
from ._shmstream import StreamChunk, StreamKey, _ready_chunk

# --- StreamSet ---------------------------------------------------------------


def _default_waiter() -> str:
    """``SHMSTREAM_AIO_WAIT=thread`` forces the thread (else io_uring where
    the kernel offers it)."""
    return "thread" if os.environ.get("SHMSTREAM_AIO_WAIT") == "thread" else "uring"


SET_WAITER = _default_waiter()
"""How the awaits wait (a set's, a standalone buffer's, a producer's):
``"uring"``, an io_uring ``FUTEX_WAIT`` made by the loop's own thread on the
futex the other side wakes (the hub's bell: ``_SetUring``; a ring's data or
space bell: ``_StreamWait``), its completion an eventfd the loop watches: no
thread at all, and one wake-up (the loop's) per find; ``"thread"``, a native
thread per set (``_SetWatch``) or per awaited buffer or producer that waits
and makes a socket readable for the loop: the fallback where io_uring or its
``FUTEX_WAIT`` (Linux 6.7) is not available (a seccomp filter, an older
kernel), taken by itself then. docs/design.md, asyncio."""


def uring_available() -> bool:
    """Whether this kernel lets a set be awaited through io_uring."""
    global _URING
    if _URING is None:
        _URING = _shmstream._uring_available()
    return _URING


_URING: bool | None = None


class _LoopWaiter:
    """The part of an await shared by sets and streams: one native waiter
    per event loop (an io_uring wait is its loop thread's), its descriptor
    watched by that loop, and the futures of the tasks awaiting it."""

    _what = "an object"

    def __init__(self) -> None:
        self._w: Any = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._awaiters: list[asyncio.Future[Any]] = []

    @property
    def waiting(self) -> bool:
        return bool(self._awaiters)

    def _new_waiter(self, uring: bool) -> Any:
        raise NotImplementedError

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self._awaiters:
            raise RuntimeError(f"{self._what} is awaited from one event loop at a time")
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._w = self._new_waiter(SET_WAITER == "uring" and uring_available())
        self._fd = self._w.fileno()
        loop.add_reader(self._fd, self._ready)
        self._loop = loop

    def _ready(self) -> None:
        raise NotImplementedError

    def _forget(self, fut: asyncio.Future[Any]) -> None:
        """After an await ends: a cancelled (or abandoned) one leaves, and
        the last to leave disarms the waiter."""
        if fut.cancelled() or not fut.done():
            self._awaiters = [f for f in self._awaiters if f is not fut]
            if not self._awaiters:
                self._w.disarm()

    def _settle(self, value: Any = None, error: BaseException | None = None) -> None:
        """Every awaiting task gets `value` (or `error`)."""
        awaiters, self._awaiters = self._awaiters, []
        for f in awaiters:
            if f.done():
                continue
            if error is not None:
                f.set_exception(error)
            else:
                f.set_result(value)


class SetWatch(_LoopWaiter):
    """A set's awaits: the native waiter (``_SetUring``, or ``_SetWatch``
    where io_uring is not available) of the loop of the awaiting tasks,
    armed while one awaits, its descriptor watched by that loop."""

    _what = "a StreamSet"

    def __init__(self, s: Any) -> None:
        super().__init__()
        self._s = s

    @property
    def kind(self) -> str:
        """``"uring"`` or ``"thread"``: how the set's awaits wait."""
        return "uring" if isinstance(self._w, _shmstream._SetUring) else "thread"

    def _new_waiter(self, uring: bool) -> Any:
        return (_shmstream._SetUring if uring else _shmstream._SetWatch)(self._s._s)

    async def get(self) -> Any:
        loop = asyncio.get_running_loop()
        self._watch(loop)
        if not self._awaiters:
            # What is ready now needs no wait (the io_uring waiter's arm
            # looks itself; a thread in the set's wait would make this look
            # wait for the set's lock: join its wait instead).
            keys = self._w.arm() if self.kind == "uring" else self._s._s.wait_any(0)
            if keys:
                return keys
        fut: asyncio.Future[Any] = loop.create_future()
        self._awaiters.append(fut)
        if len(self._awaiters) == 1 and self.kind == "thread":
            self._w.arm()
        try:
            return await fut
        finally:
            self._forget(fut)

    def _ready(self) -> None:
        try:
            keys = self._w.take()
        except Exception as e:  # the set's closed error, a policy's
            self._settle(error=e)
            return
        if keys is None:
            return
        # Armed again by an await that came between the find and now: its
        # task gets these keys too, so the waiter must let the set go.
        self._w.disarm()
        self._settle(keys)


def _set_watch(s: Any) -> SetWatch:
    watch = getattr(s, "_aio", None)
    if watch is None:
        watch = s._aio = SetWatch(s)
    return watch


async def set_wait_any(s: Any, timeout: float | None) -> list[StreamKey]:
    """``StreamSet.await_any``."""
    if timeout is not None:
        try:
            return await asyncio.wait_for(set_wait_any(s, None), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return []
    keys: list[StreamKey] = await _set_watch(s).get()
    return keys


async def set_chunks(s: Any) -> AsyncIterator[tuple[StreamKey, StreamChunk]]:
    """``async for key, chunk in stream_set``."""
    while True:
        for key in await set_wait_any(s, None):
            if key not in s:
                continue
            try:
                for chunk in s.ready_chunks(key):
                    yield key, chunk
            except Exception as e:
                e.key = key  # type: ignore[attr-defined]
                raise


# --- StreamBuffer, Producer ------------------------------------------------


class StreamWait(_LoopWaiter):
    """A standalone buffer's or a producer's awaits of one kind (``"chunk"``,
    ``"room"``, ``"drained"``): the native waiter (``_StreamWait``: io_uring,
    or its fallback's thread) of the loop of the awaiting tasks, armed while
    one awaits, its descriptor watched by that loop. :meth:`get` returns
    once what is awaited is there (the caller then pops or registers)."""

    _what = "a stream"

    def __init__(self, native: Any, kind: str) -> None:
        super().__init__()
        self._native = native
        self._kind_of = kind

    @property
    def kind(self) -> str:
        """``"uring"`` or ``"thread"``: how the awaits wait."""
        return str(self._w.kind)

    def _new_waiter(self, uring: bool) -> Any:
        return _shmstream._StreamWait(self._native, self._kind_of, uring)

    async def get(self, nbytes: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._watch(loop)
        if not self._awaiters and self._w.arm(nbytes):
            return  # there now (the io_uring waiter's arm looks itself)
        fut: asyncio.Future[None] = loop.create_future()
        self._awaiters.append(fut)
        try:
            await fut
        finally:
            self._forget(fut)

    def _ready(self) -> None:
        try:
            there = self._w.take()
        except Exception as e:  # the stream's error (ProducerGone, ...)
            self._settle(error=e)
            return
        if there:
            self._settle()


def _stream_wait(owner: Any, native: Any, kind: str) -> StreamWait:
    waits: dict[str, StreamWait] | None = getattr(owner, "_aio", None)
    if waits is None:
        waits = owner._aio = {}
    wait = waits.get(kind)
    if wait is None:
        wait = waits[kind] = StreamWait(native, kind)
    return wait


async def buffer_next_chunk(b: Any) -> StreamChunk | None:
    """``StreamBuffer.anext_chunk``."""
    while True:
        chunk = _ready_chunk(b._b)
        if chunk is not None:
            return chunk
        if b._b.finished:
            return None
        await _stream_wait(b, b._b, "chunk").get()


async def buffer_chunks(b: Any) -> AsyncIterator[StreamChunk]:
    """``async for chunk in buffer``."""
    while (chunk := await buffer_next_chunk(b)) is not None:
        yield chunk


async def producer_register(p: Any, tensor_id: str, nbytes: int | None) -> Any:
    """``Producer.aregister``: registers in the loop's thread, and while the
    ring is full awaits room without taking it, so a cancelled await leaves
    no position behind (nothing to abandon)."""
    native = p._p
    while True:
        try:
            return native.register(tensor_id, nbytes, 0.0)
        except RingFull:
            pass
        await _stream_wait(p, native, "room").get(nbytes)


async def producer_drained(p: Any) -> None:
    """``Producer.await_drained``."""
    await _stream_wait(p, p._p, "drained").get()
