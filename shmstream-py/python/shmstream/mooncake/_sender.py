"""A sending process for demos, tests and benchmarks: its own engine, one
registered pool the tensors are written into, and the receiver's control
socket to announce them on."""

from __future__ import annotations

import ctypes
import json
import mmap
import socket
import time
from typing import Any, Callable, Union

import numpy as np

from .._errors import BadTensor, SetupFailed, StreamError, StreamTimeout
from .._tensors import host_array
from ._announce import Announcement
from ._engine import new_engine, session_id
from ._pool import Arenas, Ring

Ident = tuple[str, str, str]
StreamBytes = Union[int, Callable[[Ident], int], None]


class Sender:
    """Announces tensors to the receiver listening on the Unix socket ``path``.

    :meth:`send` copies a tensor into the sender's pool (``pool_bytes``,
    registered with the engine once) and announces it; the pool space comes
    back when the receiver acknowledges the tensor. :meth:`announce` names
    memory the caller registered itself. Announcements are buffered until
    :meth:`flush` (or a full buffer). ``window``: at most that many
    tensors announced and not yet acknowledged (None: as the pool allows).

    ``stream_bytes`` (an int, or a function of the stream's ident): each
    stream gets a part of the pool of that many bytes at its first tensor,
    given back after its 'done' and its last acknowledgement, and lays its
    tensors out there in order, back to back as the receiving ring does
    (what a sender with a pool per stream does): the receiver reads runs
    of them with one transfer each. None (default): one ring for all
    streams, in announcement order. Without pool room the sender waits
    for acknowledgements, up to ``timeout`` (StreamTimeout names the pool)."""

    def __init__(
        self,
        path: str,
        *,
        engine: Any = None,
        hostname: str = "127.0.0.1",
        protocol: str = "tcp",
        pool_bytes: int = 64 << 20,
        window: int | None = None,
        timeout: float = 30.0,
        stream_bytes: StreamBytes = None,
    ) -> None:
        self.engine = engine if engine is not None else new_engine(hostname, protocol=protocol)
        self.session = session_id(self.engine, hostname)
        self.timeout = timeout
        self.window = window
        self._pool = mmap.mmap(-1, pool_bytes)
        self._pool_array = np.frombuffer(self._pool, np.uint8)
        self.pool_addr = int(self._pool_array.ctypes.data)
        self.pool_bytes = pool_bytes
        rc = self.engine.register_memory(self.pool_addr, pool_bytes)
        if rc != 0:
            raise SetupFailed(f"mooncake register_memory of the sender's pool returned {rc}")
        self._sock = self._connect(path, timeout)
        self._out: list[bytes] = []
        self._in = b""
        self._stream_bytes = stream_bytes
        self._shared = Ring(0, pool_bytes) if stream_bytes is None else None
        self._arenas = Arenas(pool_bytes)
        self._rings: dict[Ident, Ring] = {}
        # An allocation per unacknowledged tensor, given back in order.
        self._by_key: dict[tuple[Ident, str], list[Any]] = {}
        self.unacked = 0
        self.acked = 0
        self.errors: list[str] = []

    @staticmethod
    def _connect(path: str, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise SetupFailed(
                        f"mooncake sender: no receiver on {path} after {timeout} s"
                    ) from None
                time.sleep(0.01)

    # --- announcing ---------------------------------------------------------
    def announce(
        self,
        stream: tuple[str, str, str],
        tensor_id: str,
        addr: int,
        nbytes: int,
        dtype: str,
        shape: tuple[int, ...] | list[int],
    ) -> None:
        """Announces ``nbytes`` at ``addr`` (memory this sender's engine registered)."""
        if self.window is not None and self.unacked >= self.window:
            deadline = time.monotonic() + self.timeout
            while self.unacked >= self.window:
                if time.monotonic() > deadline:
                    raise StreamTimeout(
                        f"mooncake sender: {self.unacked} tensors unacknowledged after "
                        f"{self.timeout} s"
                    )
                self.poll_acks(0.5)
        ident = (stream[0], stream[1], stream[2])
        ann = Announcement(
            ident, tensor_id, self.session, addr, nbytes, dtype, tuple(shape),
            t=time.monotonic_ns(),
        )  # fmt: skip
        self._out.append(ann.to_json().encode() + b"\n")
        self.unacked += 1
        if len(self._out) >= 256:
            self.flush()

    def send(self, stream: tuple[str, str, str], tensor_id: str, item: Any) -> None:
        """Copies ``item`` (a contiguous host numpy array or torch tensor)
        into the pool and announces it."""
        dtype, shape, ptr, nbytes, keep = host_array(item)
        start = self._alloc((stream[0], stream[1], stream[2]), tensor_id, nbytes)
        src = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        self._pool_array[start : start + nbytes] = src
        del keep
        self.announce(stream, tensor_id, self.pool_addr + start, nbytes, dtype, list(shape))

    def done(self, stream: tuple[str, str, str]) -> None:
        """No more tensors on ``stream`` (the receiver signals done after its last commit)."""
        ident = (stream[0], stream[1], stream[2])
        self._out.append(Announcement(ident, done=True).to_json().encode() + b"\n")
        ring = self._rings.get(ident)
        if ring is not None:
            ring.done = True
            self._give_back()

    def flush(self) -> None:
        """Writes the buffered announcements to the control socket."""
        if self._out:
            self._sock.sendall(b"".join(self._out))
            self._out.clear()

    # --- acknowledgements ---------------------------------------------------
    def poll_acks(self, timeout: float | None = 0.0) -> int:
        """Reads the acknowledgements that arrived (waiting up to ``timeout``
        for the first); how many."""
        self.flush()
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(1 << 20)
        except (BlockingIOError, socket.timeout):
            return 0
        finally:
            self._sock.settimeout(None)
        if not data:
            raise StreamError("mooncake sender: the receiver closed the control connection")
        lines = (self._in + data).split(b"\n")
        self._in = lines.pop()
        for line in lines:
            d = json.loads(line)
            if not d.get("ok"):
                self.errors.append(d.get("error", "?"))
            if "id" in d:
                self.unacked -= 1
                self.acked += 1
                a = self._by_key.pop((tuple(d["stream"]), d["id"]), None)
                if a is not None:
                    a[2] = True
        self._give_back()
        return len(lines)

    def _give_back(self) -> None:
        if self._shared is not None:
            self._shared.reclaim()
        for ident, ring in list(self._rings.items()):
            ring.reclaim()
            if ring.done and not ring.allocs:
                del self._rings[ident]
                self._arenas.give(ring.start)

    def wait_acks(self, timeout: float | None = None) -> None:
        """Waits until every announced tensor was acknowledged."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self.flush()
        while self.unacked > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamTimeout(
                    f"mooncake sender: {self.unacked} tensors unacknowledged after {limit} s"
                )
            self.poll_acks(min(left, 1.0))

    def _alloc(self, ident: Ident, tensor_id: str, nbytes: int) -> int:
        ring = self._ring(ident)
        if nbytes > ring.size:
            where = "the sender's pool" if ring is self._shared else f"stream {'/'.join(ident)}'s"
            raise BadTensor(
                f"a tensor of {nbytes} bytes exceeds {where} {ring.size} bytes"
                + ("" if ring is self._shared else " of the pool (stream_bytes)")
            )
        deadline = time.monotonic() + self.timeout
        while True:
            a = ring.take(nbytes)
            if a is not None:
                self._by_key[(ident, tensor_id)] = a
                return int(a[0])
            if time.monotonic() > deadline:
                raise StreamTimeout(
                    f"mooncake sender: no room for {nbytes} bytes in {ring.size} bytes of pool "
                    f"after {self.timeout} s, {self.unacked} tensors unacknowledged: the "
                    "receiver acknowledges a tensor once it read it, and reads while its "
                    "rings have room (is the consumer popping?)"
                )
            self.poll_acks(0.5)

    def _ring(self, ident: Ident) -> Ring:
        """The stream's ring (its own part of the pool, taken at its first
        tensor, with ``stream_bytes``), or the one shared ring."""
        if self._shared is not None:
            return self._shared
        ring = self._rings.get(ident)
        if ring is not None:
            return ring
        sb = self._stream_bytes
        size = int(sb(ident) if callable(sb) else sb)  # type: ignore[arg-type]
        if not 0 < size <= self.pool_bytes:
            raise BadTensor(
                f"stream_bytes of stream {'/'.join(ident)}: {size}, expected 1 to the "
                f"pool's {self.pool_bytes} bytes"
            )
        deadline = time.monotonic() + self.timeout
        while (start := self._arenas.take(size)) is None:
            if time.monotonic() > deadline:
                raise StreamTimeout(
                    f"mooncake sender: no room in the pool ({self.pool_bytes} bytes) for stream "
                    f"{'/'.join(ident)}'s {size} bytes after {self.timeout} s: "
                    f"{len(self._rings)} streams hold {sum(self._arenas.used.values())} "
                    "bytes until their 'done' is acknowledged; a larger pool_bytes or "
                    "smaller stream_bytes"
                )
            self.poll_acks(0.5)
        ring = self._rings[ident] = Ring(start, size)
        return ring

    def close(self) -> None:
        """Flushes, closes the control connection and unregisters the pool."""
        try:
            self.flush()
        finally:
            self._sock.close()
            self.engine.unregister_memory(self.pool_addr)

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
