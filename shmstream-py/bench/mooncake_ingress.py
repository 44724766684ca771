"""Ingress into slots against the engine's plain read (issue 23): the same
``batch_transfer_sync_read`` calls from the same sender, once into one
plain buffer registered once, once through :class:`shmstream.mooncake.Receiver`
into a stream's slots (a consumer thread popping and releasing them)."""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import numpy as np

os.environ.setdefault("MC_LOG_LEVEL", "ERROR")

import shmstream  # noqa: E402
from shmstream import mooncake as mc  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20


def serve_tensor(nbytes: int, q: Any, stop: Any) -> None:
    """The remote machine: one tensor of ``nbytes`` in registered memory."""
    engine = mc.new_engine()
    buf = mmap.mmap(-1, nbytes)
    a = np.frombuffer(buf, np.uint8)
    a[:] = np.arange(nbytes, dtype=np.uint64).astype(np.uint8)
    addr = int(a.ctypes.data)
    assert engine.register_memory(addr, nbytes) == 0
    q.put((mc.session_id(engine), addr))
    stop.wait(600)


def batch_of(nbytes: int) -> int:
    return max(1, min(64, (16 * MIB) // nbytes))


def plain(engine: Any, session: str, addr: int, nbytes: int, count: int) -> float:
    """Seconds for ``count`` reads in batches into a plain registered buffer."""
    b = batch_of(nbytes)
    buf = mmap.mmap(-1, nbytes * b)
    base = int(np.frombuffer(buf, np.uint8).ctypes.data)
    assert engine.register_memory(base, nbytes * b) == 0
    ctypes.memset(base, 0, nbytes * b)
    ptrs = [base + i * nbytes for i in range(b)]
    t0 = time.perf_counter()
    done = 0
    while done < count:
        k = min(b, count - done)
        rc = engine.batch_transfer_sync_read(session, ptrs[:k], [addr] * k, [nbytes] * k)
        assert rc == 0, rc
        done += k
    secs = time.perf_counter() - t0
    engine.unregister_memory(base)
    return secs


def drain(ident: tuple[str, str, str], out: Any) -> None:
    """The worker: pops and releases every tensor; the time of the last."""
    buf = shmstream.StreamBuffer.open(*ident, policy="fixed:size=1", timeout=60)
    for chunk in buf:
        chunk.release()
    out.put(time.monotonic())


def slots(
    ctx: Any,
    engine: Any,
    session: str,
    addr: int,
    nbytes: int,
    count: int,
    threads: int,
    per_session: int = 1,
) -> float:
    """Seconds for ``count`` reads into slots, from the first announcement
    to the worker process holding the last tensor."""
    b = batch_of(nbytes)
    capacity = 1 << max(2, (4 * b - 1).bit_length())  # four batches
    ident = (f"mcb-{os.getpid()}-{time.monotonic_ns()}", "x", "p")
    producer = shmstream.Producer(
        *ident, capacity=capacity, item_bytes=nbytes, payload_bytes=capacity * nbytes
    )
    # A ring that has run a while has its pages; a fresh one faults them in
    # at the first lap (tmpfs: allocate and zero). Both sides start warm.
    region, length = producer.payload_region
    ctypes.memset(region, 0, length)
    receiver = mc.Receiver(engine, max_batch=b, threads=threads, per_session=per_session)
    receiver.add_stream(ident, producer)
    out = ctx.SimpleQueue()
    worker = ctx.Process(target=drain, args=(ident, out))
    worker.start()
    anns = [
        mc.Announcement(ident, f"t{i}", session, addr, nbytes, "u8", (nbytes,))
        for i in range(count)
    ]
    time.sleep(0.5)  # the worker imports and opens the stream
    t0 = time.monotonic()
    receiver.submit(anns + [mc.Announcement(ident, done=True)])
    while receiver.pump():
        time.sleep(0.0005)
    last = out.get()
    worker.join(60)
    receiver.close()
    assert receiver.counters.items == count and not receiver.counters.failures
    producer.close()
    return last - t0


def run(quick: bool) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    engine = mc.new_engine()
    rows = []
    volume = (128 if quick else 512) * MIB
    trials = 3 if quick else 7
    for nbytes in (64 * KIB, 2 * MIB, 64 * MIB):
        q, stop = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=serve_tensor, args=(nbytes, q, stop))
        proc.start()
        try:
            session, addr = q.get(timeout=60)
            count = max(4, volume // nbytes)
            p, s1, s4, s1p = [], [], [], []
            for _ in range(trials):  # interleaved: a load change hits all three
                p.append(plain(engine, session, addr, nbytes, count))
                s1.append(slots(ctx, engine, session, addr, nbytes, count, 1))
                s4.append(slots(ctx, engine, session, addr, nbytes, count, 4))
                s1p.append(slots(ctx, engine, session, addr, nbytes, count, 4, 4))
        finally:
            stop.set()
            proc.join(30)

        def gbs(secs: list[float], volume: int = count * nbytes) -> float:
            return volume / statistics.median(secs) / 1e9

        rows.append(
            {
                "nbytes": nbytes,
                "count": count,
                "batch": batch_of(nbytes),
                "plain_gbs": gbs(p),
                "slots1_gbs": gbs(s1),
                "slots4_gbs": gbs(s4),
                "slots4x4_gbs": gbs(s1p),
            }
        )
    return rows


if __name__ == "__main__":
    for r in run(True):
        print(r)
