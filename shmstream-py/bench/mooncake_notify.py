"""The announcement's carrier, measured (issue 23): one JSON announcement
as a Mooncake notification (the sender's ``transfer_sync`` of 8 bytes with
``TransferNotify``, the receiver polling ``get_notifies``) against the same
line on a Unix socket (the ``ControlServer``'s channel), CPU per
announcement on each side.

    python shmstream-py/bench/mooncake_notify.py [N]

Not run by CI. TCP on loopback; prints one JSON line per carrier.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("MC_LOG_LEVEL", "ERROR")

LINE = json.dumps(
    {
        "stream": ["req1", "codec", "p"],
        "id": "c123",
        "session": "127.0.0.1:12345",
        "addr": 140234567,
        "nbytes": 56,
        "dtype": "i64",
        "shape": [7],
    }
)


def cpu() -> float:
    import resource  # noqa: PLC0415

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def registered(engine: Any, nbytes: int) -> tuple[Any, int]:
    import numpy as np  # noqa: PLC0415

    buf = mmap.mmap(-1, nbytes)
    addr = int(np.frombuffer(buf, np.uint8).ctypes.data)
    assert engine.register_memory(addr, nbytes) == 0
    return buf, addr


def notify_receiver(n: int, q: Any, out: Any) -> None:
    from shmstream import mooncake as mc  # noqa: PLC0415

    engine = mc.new_engine()
    _buf, addr = registered(engine, 1 << 16)
    q.put((mc.session_id(engine), addr))
    got, c0 = 0, None
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        notes = engine.get_notifies()
        if not notes:
            time.sleep(20e-6)  # polled: there is no descriptor to wait on
            continue
        if c0 is None:
            c0 = cpu()
        for note in notes:
            json.loads(note.msg)
        got += len(notes)
    out.put({"got": got, "receiver_cpu_us": (cpu() - (c0 or cpu())) / max(got, 1) * 1e6})


def by_notify(n: int) -> dict[str, Any]:
    from mooncake.engine import TransferNotify, TransferOpcode  # noqa: PLC0415
    from shmstream import mooncake as mc  # noqa: PLC0415

    ctx = mp.get_context("spawn")
    q, out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=notify_receiver, args=(n, q, out))
    p.start()
    session, peer = q.get()
    engine = mc.new_engine()
    _buf, addr = registered(engine, 1 << 16)
    c0 = cpu()
    for _ in range(n):
        note = TransferNotify("ann", LINE)
        assert engine.transfer_sync(session, addr, peer, 8, TransferOpcode.Write, note) == 0
    sender = (cpu() - c0) / n * 1e6
    r = out.get()
    p.join(30)
    return {"carrier": "get_notifies", "sender_cpu_us": sender, **r}


def socket_receiver(path: str, n: int, out: Any) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    out.put("ready")
    conn, _ = listener.accept()
    got, pending, c0 = 0, b"", cpu()
    while got < n:
        lines = (pending + conn.recv(1 << 20)).split(b"\n")
        pending = lines.pop()
        for line in lines:
            json.loads(line)
        got += len(lines)
    out.put({"got": got, "receiver_cpu_us": (cpu() - c0) / n * 1e6})


def by_socket(n: int, batch: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.sock")
        p = ctx.Process(target=socket_receiver, args=(path, n, out))
        p.start()
        assert out.get() == "ready"
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        line = LINE.encode() + b"\n"
        c0 = cpu()
        for i in range(0, n, batch):
            s.sendall(line * min(batch, n - i))
        sender = (cpu() - c0) / n * 1e6
        r = out.get()
        p.join(30)
    return {"carrier": f"unix socket, {batch} per write", "sender_cpu_us": sender, **r}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for r in (by_notify(n), by_socket(n, 1), by_socket(n, 64)):
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
