"""asyncio (issue 25): the awaitable variants of the blocking waits.

A :class:`StreamSet`'s await needs no thread: the event loop's own thread
looks at the set and, when nothing is ready, arms an io_uring
``FUTEX_WAIT`` on the set's one futex (``_SetUring``); a producer's commit
completes it as it would wake a sleeping thread, the ring's eventfd turns
readable, and the loop (``add_reader``) looks again. Where io_uring's
``FUTEX_WAIT`` is not available (or with ``SHMSTREAM_AIO_WAIT=thread``) a
native thread per set (``_SetWatch``) waits in the set without the GIL and
makes a socket readable instead. A standalone :class:`StreamBuffer`'s
await, and a producer's (one per call), runs in a Python daemon thread
(:class:`Relay`) that sleeps in the native wait without the GIL and hands
the outcome over with ``loop.call_soon_threadsafe``. Every task awaiting
the same object shares one outcome. The waits only *wait*: the loop's own
thread then looks and pops, so a cancelled ``await`` takes nothing with it
(readiness is level-triggered: what was ready stays ready). A cancelled
await that leaves no one waiting ends the wait at once (a set's) or within
one ``SLICE`` (a buffer's, a producer's). A helper thread stays a moment
(``LINGER``) after handing out a result, for the next await of a loop that
streams, then ends.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from . import _shmstream
from ._errors import RingFull, StreamTimeout
from ._shmstream import StreamChunk, StreamKey, _ready_chunk

SLICE = 0.05
"""The longest sleep of a buffer's or producer's waiter thread between two
looks at whether anyone still awaits it (how late a cancel ends it)."""

LINGER = 0.5
"""How long a waiter thread that handed out a result waits for the next
await before it ends."""

_NOTHING: Any = object()


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """In the loop's thread: the outcome to the awaiter, unless the await
    was cancelled meanwhile (the waits hand over nothing to give back)."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class Relay:
    """One daemon thread that runs ``wait()`` while someone awaits
    :meth:`get`, and hands each outcome (a result other than ``_NOTHING``,
    or an exception) to every awaiter of the time. ``interrupt()`` ends a
    ``wait()`` at once (None: ``wait()`` returns within a slice). A wait
    only waits: it takes nothing (a position, a chunk) that a cancelled
    awaiter would have to give back."""

    def __init__(
        self,
        wait: Callable[[], Any],
        interrupt: Callable[[], None] | None,
        name: str,
    ) -> None:
        self._wait = wait
        self._interrupt = interrupt
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._awaiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> bool:
        """Whether a task awaits (the thread is in, or going into, its wait)."""
        return bool(self._awaiters)

    async def get(self) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._cond:
            self._awaiters.append((loop, fut))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        try:
            return await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._leave(fut)

    def _leave(self, fut: asyncio.Future[Any]) -> None:
        with self._cond:
            self._awaiters = [(lp, f) for lp, f in self._awaiters if f is not fut]
            idle = not self._awaiters
        if idle and self._interrupt is not None:
            self._interrupt()

    def _run(self) -> None:
        linger = 0.0
        while True:
            with self._cond:
                if not self._awaiters and not self._cond.wait_for(
                    lambda: bool(self._awaiters), timeout=linger
                ):
                    self._thread = None
                    return
            exc: BaseException | None = None
            try:
                result = self._wait()
            except BaseException as e:  # noqa: BLE001 - handed to the awaiters
                result, exc = None, e
            if exc is None and result is _NOTHING:
                linger = 0.0
                continue
            with self._cond:
                awaiters, self._awaiters = self._awaiters, []
            # After an error (a closed set) the next await fails at once:
            # nothing to stay for.
            linger = LINGER if exc is None else 0.0
            for loop, fut in awaiters:
                try:
                    loop.call_soon_threadsafe(_settle, fut, result, exc)
                except RuntimeError:  # that loop is closed
                    pass

    def __repr__(self) -> str:
        return f"Relay({self._name!r}, awaiters={len(self._awaiters)})"


# --- StreamSet ---------------------------------------------------------------


def _default_waiter() -> str:
    """``SHMSTREAM_AIO_WAIT=thread`` forces the thread (else io_uring where
    the kernel offers it)."""
    return "thread" if os.environ.get("SHMSTREAM_AIO_WAIT") == "thread" else "uring"


SET_WAITER = _default_waiter()
"""How a set's awaits wait: ``"uring"``, an io_uring ``FUTEX_WAIT`` on the
hub's bell made by the loop's own thread (``_SetUring``), its completion an
eventfd the loop watches: no thread at all, and one wake-up (the loop's)
per find; ``"thread"``, a native thread per set (``_SetWatch``) that waits
in the set and makes a socket readable for the loop: the fallback where
io_uring or its ``FUTEX_WAIT`` (Linux 6.7) is not available (a seccomp
filter, an older kernel), taken by itself then. docs/design.md, asyncio."""


def uring_available() -> bool:
    """Whether this kernel lets a set be awaited through io_uring."""
    global _URING
    if _URING is None:
        _URING = _shmstream._uring_available()
    return _URING


_URING: bool | None = None


class SetWatch:
    """A set's awaits: the native waiter (``_SetUring``, or ``_SetWatch``
    where io_uring is not available) of the loop of the awaiting tasks,
    armed while one awaits, its descriptor watched by that loop."""

    def __init__(self, s: Any) -> None:
        self._s = s
        self._w: Any = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._awaiters: list[asyncio.Future[Any]] = []

    @property
    def waiting(self) -> bool:
        return bool(self._awaiters)

    @property
    def kind(self) -> str:
        """``"uring"`` or ``"thread"``: how the set's awaits wait."""
        return "uring" if isinstance(self._w, _shmstream._SetUring) else "thread"

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self._awaiters:
            raise RuntimeError("a StreamSet is awaited from one event loop at a time")
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        # One waiter per loop: an io_uring wait is its loop thread's.
        if SET_WAITER == "uring" and uring_available():
            self._w = _shmstream._SetUring(self._s._s)
        else:
            self._w = _shmstream._SetWatch(self._s._s)
        self._fd = self._w.fileno()
        loop.add_reader(self._fd, self._ready)
        self._loop = loop

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
            if fut.cancelled() or not fut.done():
                self._awaiters = [f for f in self._awaiters if f is not fut]
                if not self._awaiters:
                    self._w.disarm()

    def _ready(self) -> None:
        try:
            keys = self._w.take()
        except Exception as e:  # the set's closed error, a policy's
            awaiters, self._awaiters = self._awaiters, []
            for f in awaiters:
                if not f.done():
                    f.set_exception(e)
            return
        if keys is None:
            return
        awaiters, self._awaiters = self._awaiters, []
        # Armed again by an await that came between the find and now: its
        # task gets these keys too, so the waiter must let the set go.
        self._w.disarm()
        for f in awaiters:
            if not f.done():
                f.set_result(keys)


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


# --- StreamBuffer ------------------------------------------------------------


def _buffer_relay(b: Any) -> Relay:
    relay = getattr(b, "_aio", None)
    if relay is None:
        native = b._b

        def wait() -> Any:
            return True if _shmstream._wait_chunk_ready(native, SLICE) else _NOTHING

        relay = b._aio = Relay(wait, None, f"shmstream-aio {b._name()}")
    return relay


async def buffer_next_chunk(b: Any) -> StreamChunk | None:
    """``StreamBuffer.anext_chunk``."""
    relay = _buffer_relay(b)
    while True:
        chunk = _ready_chunk(b._b)
        if chunk is not None:
            return chunk
        if b._b.finished:
            return None
        await relay.get()


async def buffer_chunks(b: Any) -> AsyncIterator[StreamChunk]:
    """``async for chunk in buffer``."""
    while (chunk := await buffer_next_chunk(b)) is not None:
        yield chunk


# --- Producer ----------------------------------------------------------------


async def producer_register(p: Any, tensor_id: str, nbytes: int | None) -> Any:
    """``Producer.aregister``: registers in the loop's thread, and while the
    ring is full a waiter thread waits for room without taking it, so a
    cancelled await leaves no position behind (nothing to abandon)."""
    native = p._p
    relay: Relay | None = None
    while True:
        try:
            return native.register(tensor_id, nbytes, 0.0)
        except RingFull:
            pass
        if relay is None:

            def wait() -> Any:
                return True if native._wait_room(nbytes, SLICE) else _NOTHING

            relay = Relay(wait, None, f"shmstream-aio register {tensor_id}")
        await relay.get()


async def producer_drained(p: Any) -> None:
    """``Producer.await_drained``."""
    native = p._p

    def wait() -> Any:
        try:
            native.wait_drained(SLICE)
        except StreamTimeout:
            return _NOTHING
        return True

    await Relay(wait, None, "shmstream-aio drained").get()
