"""The receiver's control channel: a Unix socket on which senders write one
JSON announcement per line and read one JSON acknowledgement per tensor
(``{"stream": [...], "id": "t3", "ok": true}``, or ``"ok": false`` with
``"error"``), after which they may reuse the tensor's memory."""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from typing import Any

from .._errors import StreamError
from ._announce import Announcement, parse
from ._receiver import Receiver

IDLE_POLL = 0.005  # s between retries of full rings' backlogs


class _Conn:
    """One sender's connection. Reader threads queue acknowledgements under
    ``lock`` (never held across I/O); only the control loop writes, without
    blocking: what the socket does not take now waits in ``out`` until
    the socket is writable. A loop that blocked on a sender that does not
    read its acknowledgements (it is busy writing announcements) would
    stop reading announcements, and both would wait for ever."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""
        self.lock = threading.Lock()
        self.acks: list[bytes] = []
        self.out = bytearray()
        self.writing = False  # registered for EVENT_WRITE
        self.alive = True

    def queue(self, line: bytes) -> bool:
        """Queues an acknowledgement; whether the queue was empty."""
        with self.lock:
            self.acks.append(line)
            return len(self.acks) == 1

    def flush(self) -> bool:
        """Writes what the socket takes now; whether output is left."""
        with self.lock:
            lines, self.acks = self.acks, []
        if not self.alive:
            self.out.clear()
            return False
        for line in lines:
            self.out += line
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self.alive = False
                self.out.clear()
                return False
            del self.out[:sent]
        return False


def _ack(ann: Announcement, error: str | None) -> bytes:
    d: dict[str, Any] = {"stream": list(ann.stream), "id": ann.tensor_id, "ok": error is None}
    if error is not None:
        d["error"] = error
    return (json.dumps(d, separators=(",", ":")) + "\n").encode()


class ControlServer:
    """Serves ``receiver`` on the Unix socket ``path`` (created, mode 0600,
    removed at :meth:`close`). :meth:`serve` runs until :meth:`stop`, or,
    with ``until_idle``, until every sender that connected has closed its
    connection and every stream has ended."""

    def __init__(self, path: str, receiver_factory: Any) -> None:
        self.path = path
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._owner: dict[tuple[str, str, str], _Conn] = {}
        self._stop = threading.Event()
        # Reader threads queue acknowledgements and wake the control loop,
        # which writes each connection's in one call: one system call per
        # batch of reads, not per tensor.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self.receiver: Receiver = receiver_factory(self._on_complete)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._listener.bind(path)
        finally:
            os.umask(old)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ)
        self.connected = 0
        self.refused: list[str] = []

    def _on_complete(self, ann: Announcement, error: str | None) -> None:
        conn = self._owner.get(ann.stream)
        if conn is not None and conn.queue(_ack(ann, error)):
            try:
                os.write(self._wake_w, b"!")
            except BlockingIOError:
                pass  # the loop is woken already

    def stop(self) -> None:
        """Makes :meth:`serve` return (from any thread, within 0.2 s)."""
        self._stop.set()

    def serve(self, until_idle: bool = False, timeout: float | None = None) -> None:
        """Takes announcements and retries full rings' backlogs until
        :meth:`stop` (or, ``until_idle``, until every sender that connected
        is gone and every stream ended); StreamError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                raise StreamError(f"mooncake control server: still busy after {timeout} s")
            backlog = self.receiver.pump()
            wait = IDLE_POLL if backlog else 0.2
            for key, events in self._sel.select(wait):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj == self._wake_r:
                    while True:
                        try:
                            if not os.read(self._wake_r, 4096):
                                break
                        except BlockingIOError:
                            break
                else:
                    conn = self._conns.get(key.fileobj.fileno())  # type: ignore[union-attr]
                    if conn is not None and events & selectors.EVENT_READ:
                        self._read(conn)
            for conn in list(self._conns.values()):
                if conn.acks or conn.out:
                    self._write(conn)
            if (
                until_idle
                and self.connected
                and not self._conns
                and not backlog
                and self.receiver.streams == 0
            ):
                return

    def _write(self, conn: _Conn) -> None:
        """Flushes ``conn``; it is watched for room while output is left."""
        left = conn.flush()
        if left != conn.writing and conn.alive:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if left else 0)
            self._sel.modify(conn.sock, events)
            conn.writing = left

    def _accept(self) -> None:
        sock, _ = self._listener.accept()
        sock.setblocking(False)
        conn = _Conn(sock)
        self._conns[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ)
        self.connected += 1

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        lines = (conn.pending + data).split(b"\n")
        conn.pending = lines.pop()
        anns = []
        for line in lines:
            if not line.strip():
                continue
            try:
                ann = parse(line)
            except StreamError as e:
                self.refused.append(str(e))
                conn.queue(json.dumps({"ok": False, "error": str(e)}).encode() + b"\n")
                continue
            self._owner.setdefault(ann.stream, conn)
            anns.append(ann)
        self.receiver.submit(anns, owner=conn)

    def _drop(self, conn: _Conn) -> None:
        conn.flush()  # what the socket takes; the sender is gone or going
        self._sel.unregister(conn.sock)
        del self._conns[conn.sock.fileno()]
        conn.alive = False
        conn.sock.close()
        self.receiver.abort_owner(
            conn, "the sender's control connection closed before it announced 'done'"
        )

    def close(self) -> None:
        """Drops the connections (their unfinished streams end), closes the
        receiver (its reads in flight settle first), removes the socket."""
        for conn in list(self._conns.values()):
            self._drop(conn)
        # Before the wake pipe closes: a settling read may still write to it.
        self.receiver.close()
        self._sel.close()
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
