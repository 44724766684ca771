"""The reference's receive path, reproduced from its published design
(issue 23), in one process as the reference runs it: per tensor a fresh
``torch.empty`` and a ``register_memory`` of it, ``batch_transfer_sync_read``
from a thread pool, ``put(uuid, tensor.clone())`` into a plain Python
stream buffer, and a worker thread that ``torch.stack``s every chunk's
window. Same engine, transport, batching and per-session gate as the
shmstream receiver, so that the difference is the copies, the
registrations and the buffer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mooncake_workload as wl

TORCH_DTYPE = {"i64": "int64", "f32": "float32", "u8": "uint8"}


class RefStream:
    """The reference's StreamBuffer: ids in registration order, tensors by id."""

    def __init__(self, edge: str) -> None:
        kind, a, b = wl.CODEC_POLICY if edge == wl.CODEC else wl.HIDDEN_POLICY
        self.kind, self.a, self.b = kind, a, b
        self.order: list[str] = []
        self.items: dict[str, Any] = {}
        self.filled = 0  # the prefix of `order` whose tensors arrived
        self.k = 0  # next chunk
        self.emitted = 0  # items shown so far
        self.dropped = 0  # items before this one were let go
        self.done = False

    def pre_read_register(self, uuid: str) -> None:
        self.order.append(uuid)

    def put(self, uuid: str, t: Any) -> None:
        self.items[uuid] = t
        while self.filled < len(self.order) and self.order[self.filled] in self.items:
            self.filled += 1

    def keep_from(self) -> int:
        """The first item the next window shows (those before it can go)."""
        if self.kind == "sliding":
            return self.k * self.b
        return max(0, self.k * self.a - self.b)

    def next_window(self) -> tuple[int, int] | None:
        """``(start, end)`` of the next chunk if it is ready."""
        total = len(self.order)
        final = self.done and self.filled == total
        if self.kind == "sliding":
            window, stride = self.a, self.b
            start, end = self.k * stride, self.k * stride + window
        else:
            chunk, context = self.a, self.b
            start, end = max(0, self.k * chunk - context), (self.k + 1) * chunk
        if end <= self.filled:
            return start, end
        if final and self.emitted < total:
            return start, total
        return None


class RefReceiver:
    """The ControlServer's receiver interface over the reference path."""

    def __init__(self, on_complete: Any, threads: int = 4, max_batch: int = 64) -> None:
        from shmstream import mooncake as mc  # noqa: PLC0415

        self.engine = mc.new_engine()
        self._on_complete = on_complete
        self._pool = ThreadPoolExecutor(threads)
        self._max_batch = max_batch
        self._gates: dict[str, threading.Lock] = {}
        self.cond = threading.Condition()
        self.buffers: dict[tuple[str, str, str], RefStream] = {}
        self.registrations = 0
        self.copied = 0
        self.calls = 0

    @property
    def streams(self) -> int:
        with self.cond:
            return sum(
                1 for b in self.buffers.values() if not (b.done and b.emitted == len(b.order))
            )

    def submit(self, anns: Iterable[Any], owner: Any = None) -> None:
        by_session: dict[str, list[tuple[RefStream, Any]]] = {}
        with self.cond:
            for ann in anns:
                b = self.buffers.get(ann.stream)
                if b is None:
                    b = self.buffers[ann.stream] = RefStream(ann.stream[1])
                if ann.done:
                    b.done = True
                    self.cond.notify_all()
                    continue
                b.pre_read_register(ann.tensor_id)
                by_session.setdefault(ann.session, []).append((b, ann))
        for session, items in by_session.items():
            for i in range(0, len(items), self._max_batch):
                self._pool.submit(self._read, session, items[i : i + self._max_batch])

    def _read(self, session: str, items: list[tuple[RefStream, Any]]) -> None:
        import torch  # noqa: PLC0415

        bufs = []
        for _, ann in items:
            t = torch.empty(ann.nbytes, dtype=torch.uint8)
            assert self.engine.register_memory(t.data_ptr(), ann.nbytes) == 0
            bufs.append(t)
        gate = self._gates.setdefault(session, threading.Lock())
        with gate:
            rc = self.engine.batch_transfer_sync_read(
                session,
                [t.data_ptr() for t in bufs],
                [ann.addr for _, ann in items],
                [ann.nbytes for _, ann in items],
            )
        assert rc == 0, rc
        with self.cond:
            self.calls += 1
        for (b, ann), t in zip(items, bufs):
            typed = t.view(getattr(torch, TORCH_DTYPE[ann.dtype])).reshape(ann.shape)
            with self.cond:
                b.put(ann.tensor_id, typed.clone())
                self.copied += ann.nbytes
                self.registrations += 1
                self.cond.notify_all()
            self.engine.unregister_memory(t.data_ptr())
            self._on_complete(ann, None)

    def pump(self) -> bool:
        return False

    def abort_owner(self, owner: Any, why: str) -> None:
        pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def work(rx: RefReceiver, streams: int, stats: dict[str, Any]) -> None:
    """The worker thread: every ready window, stacked (a copy)."""
    import torch  # noqa: PLC0415

    latencies: list[int] = []
    items = chunks = ended = 0
    finished: set[int] = set()
    last = 0
    with rx.cond:
        while ended < streams:
            progressed = False
            for b in list(rx.buffers.values()):
                while (w := b.next_window()) is not None:
                    start, end = w
                    window = [b.items[u] for u in b.order[start:end]]
                    stacked = torch.stack(window)
                    now = time.monotonic_ns()
                    rx.copied += stacked.numel() * stacked.element_size()
                    new = end - b.emitted
                    items += new
                    b.emitted = end
                    latencies.append(now - wl.stamp_of(stacked[-1]))
                    last = now
                    chunks += 1
                    b.k += 1
                    # Items no later window shows go.
                    keep_from = b.keep_from()
                    for u in b.order[b.dropped : keep_from]:
                        b.items.pop(u, None)
                    b.dropped = max(b.dropped, keep_from)
                    progressed = True
                if b.done and b.emitted == len(b.order) and id(b) not in finished:
                    finished.add(id(b))
                    ended += 1
            if not progressed:
                rx.cond.wait(0.05)
    stats.update({"items": items, "chunks": chunks, "latencies": latencies, "last": last})


def run_process(path: str, streams: int, ready: Any, out: Any) -> None:
    """The reference process: receiver and worker in one."""
    from shmstream import mooncake as mc  # noqa: PLC0415

    wl.settle_imports()
    cpu0 = wl.cpu_seconds()
    stats: dict[str, Any] = {}
    holder: dict[str, RefReceiver] = {}

    def factory(ack: Any) -> RefReceiver:
        holder["rx"] = RefReceiver(ack)
        return holder["rx"]

    with mc.ControlServer(path, factory) as server:
        rx = holder["rx"]
        worker = threading.Thread(target=work, args=(rx, streams, stats))
        worker.start()
        ready.set()
        server.serve(until_idle=True, timeout=900)
        worker.join(300)
    stats.update(
        {
            "cpu_s": wl.cpu_seconds() - cpu0,
            "copied": rx.copied,
            "registrations": rx.registrations,
            "calls": rx.calls,
        }
    )
    out.put(stats)
