"""shmstream's path: a receiver process (Receiver into hub streams' slots)
and a worker process (StreamSet, chunks popped as torch tensors in place)."""

from __future__ import annotations

import time
from typing import Any

import mooncake_workload as wl


def receive(path: str, worker: str, prefix: str, ready: Any, out: Any) -> None:
    import shmstream  # noqa: PLC0415
    from shmstream import mooncake as mc  # noqa: PLC0415

    hub = shmstream.Hub.attach(worker, prefix=prefix)
    wl.settle_imports()
    cpu0 = wl.cpu_seconds()

    def factory(ack: Any) -> Any:
        return mc.Receiver(hub=hub, stream_options=wl.stream_options, on_complete=ack)

    with mc.ControlServer(path, factory) as server:
        ready.set()
        server.serve(until_idle=True, timeout=900)
        c = server.receiver.counters
        counts = {"items": c.items, "registrations": c.registrations, "calls": c.engine_calls}
        counts["reads"] = c.reads
        counts["failures"] = len(c.failures)
    counts["cpu_s"] = wl.cpu_seconds() - cpu0
    out.put(counts)


def work(worker: str, prefix: str, streams: int, ready: Any, out: Any) -> None:
    import shmstream  # noqa: PLC0415
    import torch  # noqa: PLC0415

    wl.settle_imports()
    cpu0 = wl.cpu_seconds()
    latencies: list[int] = []
    items = chunks = ended = 0
    seen: dict[Any, int] = {}
    last = 0
    with shmstream.StreamSet(worker, prefix=prefix) as ss:
        ready.set()
        while ended < streams:
            for ident in ss.announced():
                ss.add(*ident, policy=wl.policy_of(ident[1]))
            for key in ss.wait_any(timeout=0.01):
                buf = ss[key]
                for chunk in ss.ready_chunks(key):
                    n = len(chunk)
                    if n:
                        t = torch.from_dlpack(chunk)  # [n, ...], in place
                        now = time.monotonic_ns()
                        new = chunk.start_offset + n - seen.get(key, 0)
                        if new > 0:
                            seen[key] = chunk.start_offset + n
                            items += new
                            latencies.append(now - wl.stamp_of(t[-1]))
                            last = now
                        del t
                    chunks += 1
                    chunk.release()
                if buf.finished:
                    ss.remove(key)
                    ended += 1
    out.put(
        {
            "items": items,
            "chunks": chunks,
            "latencies": latencies,
            "last": last,
            "cpu_s": wl.cpu_seconds() - cpu0,
            "copied": 0,
        }
    )
