"""Ingress into slots against the engine's plain read (issue 23): the same
announced tensors from the same sender, once read with
``batch_transfer_sync_read`` into one plain buffer registered once, once
through :class:`shmstream.mooncake.Receiver` into a stream's slots (a
worker process popping and releasing them), with and without coalescing.

The sender lays its tensors out back to back in a 64 MiB pool, as
``Sender(stream_bytes=...)`` does for a stream, and the announcements cycle
through it: consecutive tensors are contiguous at the sender, so the
receiver may read runs of them with one transfer. CPU is counted per
process (receiver, worker, sender) over each timed run."""

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
POOL_BYTES = 64 * MIB
TICK = os.sysconf("SC_CLK_TCK")


def pool_of(nbytes: int) -> int:
    """Tensors in the sender's pool."""
    return max(1, POOL_BYTES // nbytes)


def serve_tensor(nbytes: int, q: Any, stop: Any) -> None:
    """The remote machine: ``pool_of(nbytes)`` tensors of ``nbytes`` back to
    back in registered memory."""
    engine = mc.new_engine()
    length = nbytes * pool_of(nbytes)
    buf = mmap.mmap(-1, length)
    a = np.frombuffer(buf, np.uint8)
    a[:] = np.arange(length, dtype=np.uint64).astype(np.uint8)
    addr = int(a.ctypes.data)
    assert engine.register_memory(addr, length) == 0
    q.put((mc.session_id(engine), addr))
    stop.wait(600)


def cpu_of(pid: int) -> float:
    """User + system seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def addr_of(base: int, nbytes: int, i: int) -> int:
    """The sender's address of the ``i``-th announced tensor."""
    return base + (i % pool_of(nbytes)) * nbytes


def batch_of(nbytes: int) -> int:
    return max(1, min(64, (16 * MIB) // nbytes))


def plain(engine: Any, session: str, addr: int, nbytes: int, count: int) -> tuple[float, float]:
    """Seconds (and this process's CPU seconds) for ``count`` reads of the
    announced tensors, in batches, into a plain registered buffer."""
    b = batch_of(nbytes)
    buf = mmap.mmap(-1, nbytes * b)
    base = int(np.frombuffer(buf, np.uint8).ctypes.data)
    assert engine.register_memory(base, nbytes * b) == 0
    ctypes.memset(base, 0, nbytes * b)
    ptrs = [base + i * nbytes for i in range(b)]
    c0, t0 = time.process_time(), time.perf_counter()
    done = 0
    while done < count:
        k = min(b, count - done)
        remote = [addr_of(addr, nbytes, done + j) for j in range(k)]
        rc = engine.batch_transfer_sync_read(session, ptrs[:k], remote, [nbytes] * k)
        assert rc == 0, rc
        done += k
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.unregister_memory(base)
    return secs, cpu


def drain(ident: tuple[str, str, str], out: Any) -> None:
    """The worker: pops and releases every tensor; the time of the last and
    its CPU seconds from the first."""
    buf = shmstream.StreamBuffer.open(*ident, policy="fixed:size=1", timeout=60)
    c0 = None
    for chunk in buf:
        if c0 is None:
            c0 = time.process_time()
        chunk.release()
    out.put((time.monotonic(), time.process_time() - (c0 or 0.0)))


def slots(
    ctx: Any,
    engine: Any,
    session: str,
    addr: int,
    nbytes: int,
    count: int,
    coalesce: bool,
    worker: bool = True,
) -> tuple[float, float, float]:
    """Seconds for ``count`` reads into slots (the receiver's defaults; ``coalesce``
    False: ``coalesce_bytes=0``), from the first announcement to the worker process
    holding the last tensor; the receiver's and the worker's CPU seconds.
    ``worker`` False: no consumer, a ring that holds every tensor, the time
    until the receiver committed the last (what the worker's process costs
    the receiver on a busy machine)."""
    b = batch_of(nbytes)
    capacity = 1 << max(2, (4 * b - 1).bit_length())  # four batches
    if not worker:
        capacity = 1 << (count - 1).bit_length()
    ident = (f"mcb-{os.getpid()}-{time.monotonic_ns()}", "x", "p")
    producer = shmstream.Producer(
        *ident, capacity=capacity, item_bytes=nbytes, payload_bytes=capacity * nbytes
    )
    # A ring that has run a while has its pages; a fresh one faults them in
    # at the first lap (tmpfs: allocate and zero). Both sides start warm.
    region, length = producer.payload_region
    ctypes.memset(region, 0, length)
    options = {} if coalesce else {"coalesce_bytes": 0}
    receiver = mc.Receiver(engine, max_batch=b, **options)
    receiver.add_stream(ident, producer)
    out = ctx.SimpleQueue()
    proc = ctx.Process(target=drain, args=(ident, out)) if worker else None
    if proc is not None:
        proc.start()
    anns = [
        mc.Announcement(ident, f"t{i}", session, addr_of(addr, nbytes, i), nbytes, "u8", (nbytes,))
        for i in range(count)
    ]
    time.sleep(0.5)  # the worker imports and opens the stream
    c0, t0 = time.process_time(), time.monotonic()
    receiver.submit(anns + [mc.Announcement(ident, done=True)])
    while receiver.pump():
        time.sleep(0.0005)
    if proc is not None:
        last, worker_cpu = out.get()
        proc.join(60)
    else:
        receiver.wait_idle(600)
        last, worker_cpu = time.monotonic(), 0.0
    cpu = time.process_time() - c0
    receiver.close()
    assert receiver.counters.items == count and not receiver.counters.failures
    producer.close()
    return last - t0, cpu, worker_cpu


def run(quick: bool, trials: int | None = None) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    engine = mc.new_engine()
    rows = []
    volume = (128 if quick else 512) * MIB
    trials = trials or (3 if quick else 7)
    for nbytes in (64 * KIB, 2 * MIB, 64 * MIB):
        q, stop = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=serve_tensor, args=(nbytes, q, stop))
        proc.start()
        try:
            session, addr = q.get(timeout=60)
            count = max(4, volume // nbytes)
            # Per variant and trial: seconds, receiver, worker, sender CPU seconds.
            got: dict[str, list[tuple[float, float, float, float]]] = {
                "plain": [],
                "slots0": [],
                "slots": [],
            }
            if nbytes == 64 * KIB:
                got["alone0"] = []  # no worker process: its share of the gap
            for _ in range(trials):  # interleaved: a load change hits all three
                for name in got:
                    s0 = cpu_of(proc.pid)
                    if name == "plain":
                        secs, cpu = plain(engine, session, addr, nbytes, count)
                        wcpu = 0.0
                    else:
                        co = name == "slots"
                        secs, cpu, wcpu = slots(
                            ctx, engine, session, addr, nbytes, count, co, name != "alone0"
                        )
                    got[name].append((secs, cpu, wcpu, cpu_of(proc.pid) - s0))
        finally:
            stop.set()
            proc.join(30)

        row: dict[str, Any] = {"nbytes": nbytes, "count": count, "batch": batch_of(nbytes)}
        for name, v in got.items():
            row[f"{name}_gbs"] = count * nbytes / statistics.median(x[0] for x in v) / 1e9
            for i, who in ((1, "recv"), (2, "worker"), (3, "sender")):
                row[f"{name}_{who}_us"] = statistics.median(x[i] for x in v) / count * 1e6
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    import json
    import sys

    # [--quick] [TRIALS]: the rows as JSON on the last line.
    trials = int(sys.argv[-1]) if sys.argv[-1].isdigit() else None
    print(json.dumps(run("--quick" in sys.argv, trials)))
