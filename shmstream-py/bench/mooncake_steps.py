"""Where the receiver's CPU goes per 64 KiB tensor (issue 23), one thread
at a time: each binding call the receiver makes per tensor, timed alone,
then the whole ``Receiver`` with an engine that completes every read at
once (its Python without the engine), then the engine's own reads on
loopback (sender and receiver in this one process). CPU time of the
calling thread (``time.thread_time``), so the other processes of a
shared machine do not count; a sync read's spin does.

``python shmstream-py/bench/mooncake_steps.py``"""

from __future__ import annotations

import itertools
import mmap
import os
import time
from typing import Any

import numpy as np

os.environ.setdefault("MC_LOG_LEVEL", "ERROR")

import shmstream  # noqa: E402
from shmstream import mooncake as mc  # noqa: E402
from shmstream.mooncake._receiver import COALESCE_BYTES  # noqa: E402

N, NB = 4096, 65536


def producer(capacity: int = 2 * N) -> tuple[tuple[str, str, str], Any]:
    ident = (f"steps-{os.getpid()}-{time.monotonic_ns()}", "x", "p")
    return ident, shmstream.Producer(
        *ident, capacity=capacity, item_bytes=NB, payload_bytes=capacity * NB
    )


def us(c0: float, n: int = N) -> float:
    return (time.thread_time() - c0) / n * 1e6


class InstantEngine:
    """Completes every read at once: the receiver's Python alone."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)

    def register_memory(self, addr: int, length: int) -> int:
        return 0

    def unregister_memory(self, addr: int) -> int:
        return 0

    def batch_transfer_async_read(self, *args: Any) -> int:
        return next(self.ids)

    def transfer_check_status(self, bid: int) -> int:
        return 1

    def batch_transfer_sync_read(self, *args: Any) -> int:
        return 0


def binding_calls() -> None:
    ident, p = producer()
    anns = [
        mc.Announcement(ident, f"t{i}", "s:1", 0x1000 + i * NB, NB, "u8", (NB,)) for i in range(N)
    ]
    # Touch the ring's descriptors first: a fresh segment faults them in.
    for slot in [p.register(f"w{i}", NB, timeout=0) for i in range(N)]:
        slot.abandon()
    c0 = time.thread_time()
    slots = [p.register(a.tensor_id, a.nbytes, timeout=0) for a in anns]
    print(f"Producer.register(timeout=0)     {us(c0):6.2f} us")
    c0 = time.thread_time()
    for s in slots:
        s.data_ptr  # noqa: B018 (the call is what is timed)
    print(f"Slot.data_ptr                    {us(c0):6.2f} us")
    c0 = time.thread_time()
    for s, a in zip(slots, anns):
        s.commit(a.dtype, list(a.shape))
    print(f"Slot.commit                      {us(c0):6.2f} us")
    p.close()


def receiver_python() -> None:
    for reads in ("async", "sync"):
        for co in (0, COALESCE_BYTES):
            ident, p = producer()
            anns = [
                mc.Announcement(ident, f"t{i}", "s:1", 0x1000 + i * NB, NB, "u8", (NB,))
                for i in range(N)
            ]
            rx = mc.Receiver(InstantEngine(), reads=reads, coalesce_bytes=co)
            rx.add_stream(ident, p)
            c0 = time.process_time()
            rx.submit(anns)
            rx.wait_idle(60)
            cpu = (time.process_time() - c0) / N * 1e6
            print(
                f"Receiver, instant engine, reads={reads}, coalesce_bytes={co}: "
                f"{cpu:.2f} us CPU/tensor (all threads), {rx.counters.reads} transfers"
            )
            rx.close()
            p.close()


def engine_reads() -> None:
    e = mc.new_engine()
    batch = 64
    src = mmap.mmap(-1, NB * batch)
    s_addr = int(np.frombuffer(src, np.uint8).ctypes.data)
    dst = mmap.mmap(-1, NB * batch)
    d_addr = int(np.frombuffer(dst, np.uint8).ctypes.data)
    assert e.register_memory(s_addr, NB * batch) == 0
    assert e.register_memory(d_addr, NB * batch) == 0
    session = mc.session_id(e)
    local = [d_addr + i * NB for i in range(batch)]
    remote = [s_addr + i * NB for i in range(batch)]
    rounds = 32
    c0 = time.process_time()
    for _ in range(rounds):
        assert e.batch_transfer_sync_read(session, local, remote, [NB] * batch) == 0
    cpu = (time.process_time() - c0) / (rounds * batch) * 1e6
    print(f"engine: batch_transfer_sync_read of 64 x 64 KiB: {cpu:.1f} us CPU/tensor (both ends)")
    c0 = time.process_time()
    for _ in range(rounds):
        bids = [e.batch_transfer_async_read(session, [d], [r], [NB]) for d, r in zip(local, remote)]
        while bids:
            time.sleep(50e-6)
            bids = [b for b in bids if e.transfer_check_status(b) != 1]
    cpu = (time.process_time() - c0) / (rounds * batch) * 1e6
    print(f"engine: 64 async reads of 64 KiB, polled: {cpu:.1f} us CPU/tensor (both ends)")
    c0 = time.process_time()
    for _ in range(rounds):
        assert e.batch_transfer_sync_read(session, [d_addr], [s_addr], [NB * batch]) == 0
    cpu = (time.process_time() - c0) / (rounds * batch) * 1e6
    print(f"engine: one 4 MiB read (64 tensors coalesced): {cpu:.1f} us CPU/tensor (both ends)")


if __name__ == "__main__":
    binding_calls()
    receiver_python()
    engine_reads()
    print("load average", " / ".join(f"{x:.1f}" for x in os.getloadavg()))
