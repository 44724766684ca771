"""Python benchmarks of shmstream, side by side in one run (issue 10).

    python shmstream-py/bench/bench.py [--write docs/benchmarks.md] [--quick]

1. ``pop_chunk`` + the chunk's tensor (``chunk.data``, ``torch.from_dlpack``,
   ``numpy.from_dlpack``) at window 4, 28, 256 and 1024 (stride window/4),
   56-byte i64 items, against a pure-Python reimplementation of the
   reference's algorithm (a list of tensors, ``torch.stack`` per chunk).
2. Cross-process, a Python producer process to this (consumer) process:
   32 x 64 KiB, 4 x 2 MiB and 1 x 64 MiB, from the producer's first put to
   the consumer holding the tensors, against ``multiprocessing`` queues,
   ``multiprocessing.shared_memory`` with one copy each way, and one memcpy
   of the same bytes (``numpy.copyto``) in this process.
3. Python-level cost per item (``put``; ``register`` + fill + ``commit``)
   and per chunk, and the Python allocations of a chunk (tracemalloc).

Prints a Markdown section and, with ``--write FILE``, puts it into FILE
between ``<!-- python-bench:start -->`` and ``<!-- python-bench:end -->``
(appended when the markers are absent). Not run by CI; about two minutes.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
import tracemalloc
import uuid
from collections import deque
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, Callable

import numpy as np
import shmstream as s
import torch

START = "<!-- python-bench:start -->"
END = "<!-- python-bench:end -->"
now = time.perf_counter_ns
QUICK = False


def us(ns: float) -> str:
    return f"{ns / 1e3:.2f} us" if ns < 1e5 else f"{ns / 1e6:.3f} ms"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# --- 1. the chunk path -----------------------------------------------------------

ITEM = torch.arange(7, dtype=torch.int64)  # 56 bytes
CAP = 8192


class RefChunk:
    """The reference's StreamChunk."""

    __slots__ = ("data", "chunk_index", "start_offset", "is_final", "context_items")

    def __init__(self, data: Any, chunk_index: int, start_offset: int, is_final: bool) -> None:
        self.data = data
        self.chunk_index = chunk_index
        self.start_offset = start_offset
        self.is_final = is_final
        self.context_items = 0


class RefSlidingPolicy:
    def __init__(self, window: int, stride: int) -> None:
        self.window, self.stride = window, stride

    def is_ready(self, n: int) -> bool:
        return n >= self.window

    def get_window(self) -> int:
        return self.window

    def get_stride(self) -> int:
        return self.stride

    def register_chunk(self, advanced: int) -> None:
        pass


class RefStreamBuffer:
    """The reference's algorithm in pure Python (SPEC section 2): items
    arrive in any order and enter a list in registration order; a chunk
    stacks the window's tensors and drops the stride's."""

    def __init__(self, policy: RefSlidingPolicy) -> None:
        self.policy = policy
        self.buffer: list[torch.Tensor] = []
        self.order: deque[str] = deque()
        self.arrived: dict[str, torch.Tensor] = {}
        self._consumed = 0
        self.chunk_index = 0
        self.producer_done = False

    def pre_read_register(self, tensor_id: str) -> None:
        self.order.append(tensor_id)

    def put(self, tensor_id: str, item: torch.Tensor) -> None:
        self.arrived[tensor_id] = item.clone()
        while self.order and self.order[0] in self.arrived:
            self.buffer.append(self.arrived.pop(self.order.popleft()))

    def has_chunk_ready(self) -> bool:
        all_in = self.producer_done and not self.order
        return self.policy.is_ready(len(self.buffer)) or (all_in and bool(self.buffer))

    def pop_chunk(self) -> RefChunk:
        if not self.has_chunk_ready():
            raise RuntimeError("no chunk ready")
        window = self.policy.get_window()
        items = self.buffer[:window]
        data = items[0] if len(items) == 1 else torch.stack(items)
        chunk = RefChunk({"data": data}, self.chunk_index, self._consumed, False)
        stride = self.policy.get_stride()
        del self.buffer[:stride]
        self._consumed += stride
        self.chunk_index += 1
        self.policy.register_chunk(stride)
        return chunk


POLL_NS: list[float] = []  # the consumer's poll, per new item (see filler)


def filler(sb: Any, window: int, stride: int | None = None) -> Callable[[], int]:
    """Tops the ring up to CAP items and lets the consumer poll them (it
    checks each new item's descriptor once, when it arrives: a per-item
    cost, timed apart into POLL_NS); returns the chunks then ready."""
    state = {"next": 0}
    stride = stride or max(1, window // 4)

    def fill() -> int:
        held = state["next"] - sb._consumed
        for _ in range(CAP - held):
            tid = f"t{state['next']}"
            sb.pre_read_register(tid)
            sb.put(tid, ITEM)
            state["next"] += 1
        if isinstance(sb, s.StreamBuffer) and CAP - held >= 1000:
            t0 = now()
            sb.has_chunk_ready()
            POLL_NS.append((now() - t0) / (CAP - held))
        return (CAP - window) // stride + 1

    return fill


def timer_overhead() -> float:
    """What timing one operation adds (two clock reads and an append)."""
    ts: list[int] = []
    for _ in range(20000):
        t = now()
        ts.append(now() - t)
    return median(ts)


def bench_chunks(
    window: int, variant: str, overhead: float, stride: int | None = None
) -> tuple[float, float]:
    """Median and mean time per chunk (ns), each chunk timed alone (a shared
    VM preempts now and then: a median of single chunks shrugs that off)."""
    stride = stride or max(1, window // 4)
    if variant == "reference":
        sb: Any = RefStreamBuffer(RefSlidingPolicy(window, stride))
    else:
        sb = s.StreamBuffer(
            "bench",
            "chunks",
            "py",
            s.SlidingWindowChunkPolicy(window, stride),
            capacity=CAP,
            item_bytes=56,
            payload_bytes=CAP * 64,
        )
    fill = filler(sb, window, stride)
    pop = sb.pop_chunk
    target = 400 if QUICK else 2000
    ts: list[int] = []
    from_dlpack = torch.from_dlpack
    np_from_dlpack = np.from_dlpack
    while len(ts) < target:
        k = min(fill(), 600) - 1
        gc.collect()
        # The first pop after a refill finds cold caches (the refill's 8192
        # puts evicted them): not timed, for every variant.
        c = pop()
        del c
        x: Any = None
        if variant in ("reference", "data"):
            for _ in range(k):
                t = now()
                c = pop()
                x = c.data["data"]
                ts.append(now() - t)
        elif variant == "pop":
            for _ in range(k):
                t = now()
                c = pop()
                ts.append(now() - t)
        elif variant == "torch.from_dlpack":
            for _ in range(k):
                t = now()
                c = pop()
                x = from_dlpack(c)
                ts.append(now() - t)
        else:
            for _ in range(k):
                t = now()
                c = pop()
                x = np_from_dlpack(c)
                ts.append(now() - t)
        assert x is None or x.shape[0] == window
        del c, x
    return median(ts) - overhead, statistics.fmean(ts) - overhead


def floors() -> dict[str, float]:
    """The view-making calls alone, on a chunk's stacked view held apart
    (window 28): what a chunk's tensor costs at least."""
    sb = s.StreamBuffer("bench", "floors", "py", "sliding:window=28,stride=7", capacity=64)
    for i in range(28):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", ITEM)
    chunk = sb.pop_chunk()
    view = chunk.stacked()
    convert = torch._C._from_dlpack
    calls: dict[str, Callable[[], Any]] = {
        "`torch.from_dlpack(view)`": lambda: torch.from_dlpack(view),
        "`torch._C._from_dlpack(capsule)` (where `torch.from_dlpack` ends)": lambda: convert(
            view.__dlpack__(max_version=(1, 0))
        ),
        "`view.__dlpack__(max_version=(1, 0))` (the capsule alone)": lambda: view.__dlpack__(
            max_version=(1, 0)
        ),
        "`numpy.from_dlpack(view)`": lambda: np.from_dlpack(view),
        "`torch.stack` of 28 x `[7]` i64 (the reference's per-chunk copy)": lambda: torch.stack(
            [ITEM] * 28
        ),
    }
    out = {}
    for name, call in calls.items():
        reps = []
        for _ in range(7):
            t0 = now()
            for _ in range(2000):
                call()
            reps.append((now() - t0) / 2000)
        out[name] = median(reps)
    return out


# --- 2. cross-process -----------------------------------------------------------

PRODUCER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream as s
    rid, n, size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    batch = sys.argv[5] == "many"
    payload = 1 << max(16, (2 * n * size + 4096 * n - 1).bit_length())  # payload_of
    p = s.Producer(rid, "bench", "py", capacity=64, item_bytes=size, payload_bytes=payload)
    src = [np.full(size, i + 1, np.uint8) for i in range(n)]
    print("ready", flush=True)
    for r in range(rounds):
        sys.stdin.readline()
        t0 = time.perf_counter_ns()
        if batch:
            p.put_many([(f"r{r}.{i}", src[i]) for i in range(n)])
        else:
            for i in range(n):
                p.put(f"r{r}.{i}", src[i])
        print(t0, time.perf_counter_ns(), flush=True)
    p.signal_done()
    p.wait_drained(30)
    """
)


def payload_of(n: int, size: int) -> int:
    """The producer's payload ring: a power of two holding two rounds."""
    return 1 << max(16, (2 * n * size + 4096 * n - 1).bit_length())


def warm_rounds(n: int, size: int) -> int:
    """Rounds that touch every page of the payload ring once (first-touch
    page faults belong to the segment's creation, not to the steady state)."""
    return payload_of(n, size) // (n * size) + 1


PUTS_NS: dict[tuple[int, int, bool, bool], list[float]] = {}  # the producer's puts alone


def shmstream_cross_after(n: int, size: int, rounds: int) -> list[float]:
    """As ``shmstream_cross``, the consumer waiting on the producer's pipe
    instead of the stream (not woken by each commit)."""
    return shmstream_cross(n, size, rounds, wait_in_stream=False)


def shmstream_cross_many(n: int, size: int, rounds: int) -> list[float]:
    """As ``shmstream_cross``, the producer handing the round to one
    ``put_many`` (one call, one wake-up of the consumer)."""
    return shmstream_cross(n, size, rounds, batch=True)


def shmstream_cross(
    n: int, size: int, rounds: int, wait_in_stream: bool = True, batch: bool = False
) -> list[float]:
    rid = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    mode = "many" if batch else "each"
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, rid, str(n), str(size), str(rounds), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    buf = s.StreamBuffer.open(rid, "bench", "py", policy=s.FixedChunkPolicy(n), timeout=30)
    times = []
    for _ in range(rounds):
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = "" if wait_in_stream else proc.stdout.readline()
        chunk = buf.next_chunk(timeout=30)
        x = torch.from_dlpack(chunk)
        t1 = now()
        t0, t_puts = (int(v) for v in (line or proc.stdout.readline()).split())
        assert x.shape == ((n, size) if n > 1 else (size,)) and int(x.reshape(-1)[-1]) == n
        times.append(t1 - t0)
        PUTS_NS.setdefault((n, size, wait_in_stream, batch), []).append(t_puts - t0)
        del x, chunk
    while buf.next_chunk(timeout=30) is not None:  # up to the (empty) final chunk
        pass
    assert proc.wait(60) == 0
    return times


def queue_producer(q: Any, go: Any, n: int, size: int, rounds: int) -> None:
    src = [np.full(size, i + 1, np.uint8) for i in range(n)]
    for _ in range(rounds):
        go.recv()
        t0 = now()
        for a in src:
            q.put(a)
        q.put(t0)


def queue_cross(n: int, size: int, rounds: int) -> list[float]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    go_recv, go_send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=queue_producer, args=(q, go_recv, n, size, rounds))
    proc.start()
    times = []
    for _ in range(rounds):
        go_send.send(1)
        xs = [torch.from_numpy(q.get()) for _ in range(n)]
        t1 = now()
        t0 = q.get()
        assert int(xs[-1][-1]) == n
        times.append(t1 - t0)
        del xs
    proc.join(60)
    return times


def shm_producer(name: str, go: Any, note: Any, n: int, size: int, rounds: int) -> None:
    shm = shared_memory.SharedMemory(name=name)
    view = np.ndarray((n, size), np.uint8, buffer=shm.buf)
    src = [np.full(size, i + 1, np.uint8) for i in range(n)]
    for _ in range(rounds):
        go.recv()
        t0 = now()
        for i, a in enumerate(src):
            np.copyto(view[i], a)  # copy in
        note.send(t0)
    del view
    shm.close()


def shm_cross(n: int, size: int, rounds: int) -> list[float]:
    ctx = mp.get_context("fork")
    shm = shared_memory.SharedMemory(create=True, size=n * size)
    view = np.ndarray((n, size), np.uint8, buffer=shm.buf)
    go_recv, go_send = ctx.Pipe(duplex=False)
    note_recv, note_send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=shm_producer, args=(shm.name, go_recv, note_send, n, size, rounds))
    proc.start()
    dst = np.empty((n, size), np.uint8)  # preallocated: the peer's best case
    dst.fill(0)
    times = []
    for _ in range(rounds):
        go_send.send(1)
        t0 = note_recv.recv()
        np.copyto(dst, view)  # copy out
        xs = [torch.from_numpy(dst[i]) for i in range(n)]
        t1 = now()
        assert int(xs[-1][-1]) == n
        times.append(t1 - t0)
        del xs
    proc.join(60)
    del view
    shm.close()
    shm.unlink()
    return times


def memcpy(n: int, size: int, rounds: int) -> list[float]:
    src = np.full(n * size, 7, np.uint8)
    dst = np.empty_like(src)
    dst.fill(0)
    times = []
    for _ in range(max(rounds, 20)):
        t0 = now()
        np.copyto(dst, src)
        times.append(now() - t0)
    return times


def memcpy_shm(n: int, size: int, rounds: int) -> list[float]:
    """One copy of the same bytes into shared memory (/dev/shm, 4 KiB
    pages, as the stream's segment) cycling through as much of it as the
    stream's ring (``payload_of``), as a put's copy does."""
    src = np.full(n * size, 7, np.uint8)
    shm = shared_memory.SharedMemory(create=True, size=payload_of(n, size))
    try:
        ring = np.ndarray((shm.size,), np.uint8, buffer=shm.buf)
        ring.fill(0)  # every page faulted in once
        laps = len(ring) // len(src)
        times = []
        for r in range(max(rounds, 20)):
            dst = ring[(r % laps) * len(src) : (r % laps + 1) * len(src)]
            t0 = now()
            np.copyto(dst, src)
            times.append(now() - t0)
        del dst, ring
    finally:
        shm.close()
        shm.unlink()
    return times


# --- 3. per item, per chunk, allocations ------------------------------------------


def per_item() -> dict[str, float]:
    out: dict[str, float] = {}
    k = 512
    reps = 10 if QUICK else 30
    item_np = np.arange(7, dtype=np.int64)

    # The drop-in, one process: pre_read_register + put.
    sb = s.StreamBuffer("bench", "items", "py", "fixed:size=512", capacity=1024, item_bytes=56)
    samples: dict[str, list[float]] = {"dropin_torch": [], "dropin_numpy": [], "pop": []}
    n = 0
    for r in range(reps):
        item = ITEM if r % 2 == 0 else item_np
        ids = [f"t{n + i}" for i in range(k)]
        n += k
        t0 = now()
        for tid in ids:
            sb.pre_read_register(tid)
            sb.put(tid, item)
        samples["dropin_torch" if r % 2 == 0 else "dropin_numpy"].append((now() - t0) / k)
        t0 = now()
        c = sb.pop_chunk()
        del c
        samples["pop"].append(now() - t0)
    out["drop-in `pre_read_register` + `put` (torch 7 x i64)"] = median(samples["dropin_torch"])
    out["drop-in `pre_read_register` + `put` (numpy 7 x i64)"] = median(samples["dropin_numpy"])

    # A Producer and its consumer (opened in this process).
    rid = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    p = s.Producer(rid, "items", "py", capacity=1024, item_bytes=64)
    buf = s.StreamBuffer.open(rid, "items", "py", policy="fixed:size=512")
    ways: dict[str, Callable[[list[str]], None]] = {}

    def put(ids: list[str]) -> None:
        for tid in ids:
            p.put(tid, item_np)

    def pre_put(ids: list[str]) -> None:
        for tid in ids:
            p.pre_read_register(tid)
            p.put(tid, item_np)

    def register_fill_commit(ids: list[str]) -> None:
        for tid in ids:
            slot = p.register(tid, 56)
            slot.numpy(np.int64, (7,))[:] = item_np
            slot.commit("i64", [7])

    ways["Producer `put` (numpy 7 x i64, registers it)"] = put
    ways["Producer `pre_read_register` + `put`"] = pre_put
    ways["Producer `register` + fill (`slot.numpy(...)[:] =`) + `commit`"] = register_fill_commit
    n = 0
    for name, way in ways.items():
        xs = []
        for _ in range(reps):
            ids = [f"t{n + i}" for i in range(k)]
            n += k
            t0 = now()
            way(ids)
            xs.append((now() - t0) / k)
            c = buf.next_chunk(timeout=10)
            assert c is not None and len(c) == k
            del c
        out[name] = median(xs)
    return out


def allocations(window: int = 28) -> dict[str, float]:
    stride = window // 4
    sb = s.StreamBuffer(
        "bench",
        "alloc",
        "py",
        s.SlidingWindowChunkPolicy(window, stride),
        capacity=CAP,
        item_bytes=56,
        payload_bytes=CAP * 64,
    )
    fill = filler(sb, window)
    fill()
    for _ in range(50):  # warm caches (imports, interned names)
        c = sb.pop_chunk()
        x = c.data["data"]
    del c, x
    fill()
    held = 200
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    chunks = []
    for _ in range(held):
        c = sb.pop_chunk()
        chunks.append((c, c.data["data"]))
    del c
    during = tracemalloc.take_snapshot()
    stats = during.compare_to(before, "filename")
    blocks = sum(st.count_diff for st in stats)
    size = sum(st.size_diff for st in stats)
    chunks.clear()
    gc.collect()
    # Popped and dropped at once: what stays behind.
    fill()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(500):
        c = sb.pop_chunk()
        x = c.data["data"]
    del c, x
    gc.collect()
    left = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "blocks": blocks / held,
        "bytes": size / held,
        "left": left / 500,
    }


# --- the report -----------------------------------------------------------------


def main() -> None:
    global QUICK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="FILE", help="put the section into FILE between markers")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = ap.parse_args()
    QUICK = args.quick
    started = time.monotonic()
    load0 = os.getloadavg()
    lines: list[str] = []
    w = lines.append

    print("bench: the chunk path", file=sys.stderr)
    windows = [4, 28, 256, 1024]
    variants = ["pop", "data", "torch.from_dlpack", "numpy.from_dlpack", "reference"]
    overhead = timer_overhead()
    timed = {(win, v): bench_chunks(win, v, overhead) for win in windows for v in variants}
    chunk_ns = {key: med for key, (med, _) in timed.items()}
    stride1 = bench_chunks(1024, "data", overhead, stride=1)[0]
    floor_ns = floors()
    chunk_mean = {key: mean for key, (_, mean) in timed.items()}

    print("bench: cross-process", file=sys.stderr)
    shapes = [(32, 64 << 10, "32 x 64 KiB"), (4, 2 << 20, "4 x 2 MiB"), (1, 64 << 20, "1 x 64 MiB")]
    cross: dict[tuple[str, str], float] = {}
    for n, size, label in shapes:
        rounds = 30 if size * n <= (8 << 20) else 12
        if QUICK:
            rounds = max(5, rounds // 3)
        for peer, fn in [
            ("shmstream", shmstream_cross),
            ("shmstream, consumer not waiting", shmstream_cross_after),
            ("shmstream, put_many", shmstream_cross_many),
            ("mp.Queue", queue_cross),
            ("shared_memory", shm_cross),
            ("memcpy", memcpy),
            ("memcpy into the ring's memory", memcpy_shm),
        ]:
            warm = warm_rounds(n, size)
            cross[(label, peer)] = median(fn(n, size, warm + rounds)[warm:])

    print("bench: per item and allocations", file=sys.stderr)
    items = per_item()
    alloc = allocations()
    load1 = os.getloadavg()
    elapsed = time.monotonic() - started

    # --- Markdown ---
    w("## Python (`shmstream-py/bench/bench.py`)")
    w("")
    w(
        "Generated by `scripts/bench-python.sh` (`shmstream-py/bench/bench.py --write "
        "docs/benchmarks.md`); not part of CI. Medians (`time.perf_counter_ns`)."
    )
    w("")
    w(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    w(
        f"- Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    )
    w(
        f"- Load average at the start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
        f"at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (a shared 2-core VM: "
        "other work shows in the numbers)"
    )
    w(f"- Run time: {elapsed:.0f} s{' (--quick)' if QUICK else ''}")
    w("")
    w("### Chunk path: `pop_chunk` + the chunk's tensor, one process")
    w("")
    w(
        "56-byte i64 items (`[7]`), `sliding(window, stride = window / 4)`, drop-in "
        "`shmstream.StreamBuffer` (ring of 8192 items); time per chunk including dropping "
        "the previous chunk; each chunk timed alone, median, less the timer's own "
        f"{overhead:.0f} ns. Reference: the reference's algorithm in pure Python (a list of "
        "tensors, `torch.stack` of the window per chunk), same run. Goal: flat in the "
        "window, <= 2.5 us with a torch tensor, < 1 us with numpy."
    )
    w("")
    w(
        f"Not in the table: the consumer's poll, which checks each new item's descriptor "
        f"once when it arrives (the items were put before the timed pops): "
        f"{median(POLL_NS):.0f} ns per item, so a chunk that advances by `stride` new items "
        f"costs `stride` x that more (window 1024, stride 256: "
        f"+{us(256 * median(POLL_NS))}). The reference pays its per-item cost in `put` "
        f"(not timed either)."
    )
    w("")
    w(
        "| window | `pop_chunk` alone | + `chunk.data` (torch) | + `torch.from_dlpack(chunk)` "
        "| + `numpy.from_dlpack(chunk)` | reference (`torch.stack`) | reference / `chunk.data` "
        "| means: `chunk.data`, reference |"
    )
    w("|---|---|---|---|---|---|---|---|")
    for win in windows:
        g = {v: chunk_ns[(win, v)] for v in variants}
        w(
            f"| {win} | {us(g['pop'])} | {us(g['data'])} | {us(g['torch.from_dlpack'])} "
            f"| {us(g['numpy.from_dlpack'])} | {us(g['reference'])} "
            f"| {g['reference'] / g['data']:.1f}x "
            f"| {us(chunk_mean[(win, 'data')])}, {us(chunk_mean[(win, 'reference')])} |"
        )
    w("")
    w(
        f"Window 1024 with stride 1: {us(stride1)} per chunk with `chunk.data` (median): "
        "what grows in the table is the stride (how far the next chunk starts: colder "
        "descriptors), not the window."
    )
    w("")
    torch_worst = max(
        min(chunk_ns[(win, "data")], chunk_ns[(win, "torch.from_dlpack")]) for win in windows
    )
    np_worst = max(chunk_ns[(win, "numpy.from_dlpack")] for win in windows)
    data = [chunk_ns[(win, "data")] for win in windows]
    flat = max(data) / min(data)
    goals = [
        (
            "flat in the window (`chunk.data`, largest / smallest over windows 4..1024)",
            f"{flat:.2f}x",
            flat <= 1.25,
        ),
        (
            "<= 2.5 us per chunk with a torch tensor, any window",
            us(torch_worst),
            torch_worst <= 2500,
        ),
        ("< 1 us per chunk with a numpy view, any window", us(np_worst), np_worst < 1000),
    ]

    w("The calls that make a view, alone (a held chunk's stacked view, window 28):")
    w("")
    w("| call | time |")
    w("|---|---|")
    for name, ns in floor_ns.items():
        w(f"| {name} | {us(ns)} |")
    w("")
    w("### Cross-process: a Python producer process to a Python consumer process")
    w("")
    w(
        "From the producer's first `put` to the consumer holding the tensors (torch), "
        "median over rounds, after untimed warm-up rounds that touch every page of the "
        "ring once (the first lap of a fresh segment page-faults: a 64 MiB put then takes "
        "~25 ms instead of ~6 ms). shmstream: `Producer.put` (one copy into the slot, registered "
        "with the tensor's size) and `next_chunk` + `torch.from_dlpack` (no copy; "
        "`fixed(n)` chunks). `mp.Queue`: numpy arrays through a `multiprocessing` queue "
        "(pickled). `put_many`: the producer hands each round to one `Producer.put_many` "
        "(one call, the GIL released once, the consumer woken once). "
        "`shared_memory`: `multiprocessing.shared_memory`, one `numpy.copyto` in, "
        "a pipe message, one `numpy.copyto` out into a preallocated array. memcpy: one "
        "`numpy.copyto` of the same bytes in one process, between the same two arrays each "
        "time (hot caches), and into shared memory (/dev/shm) cycling through as much of it "
        "as shmstream's ring (as a put's copy does)."
    )
    w("")
    w(
        "| tensors | shmstream | of which the puts | shmstream, `put_many` | mp.Queue "
        "| shared_memory | memcpy "
        "| memcpy into /dev/shm, cycling through the ring's size | shmstream / memcpy "
        "| `put_many` / memcpy | `put_many` / memcpy into /dev/shm "
        "| mp.Queue / shmstream | shared_memory / shmstream |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, size, label in shapes:
        warm = warm_rounds(n, size)
        puts = median(PUTS_NS[(n, size, True, False)][warm:])
        cross[(label, "puts")] = puts
        cross[(label, "puts, consumer not waiting")] = median(
            PUTS_NS[(n, size, False, False)][warm:]
        )
        many = cross[(label, "shmstream, put_many")]
        cold = cross[(label, "memcpy into the ring's memory")]
        g = {
            peer: cross[(label, peer)]
            for peer in ["shmstream", "mp.Queue", "shared_memory", "memcpy"]
        }
        w(
            f"| {label} | {us(g['shmstream'])} | {us(puts)} | {us(many)} | {us(g['mp.Queue'])} "
            f"| {us(g['shared_memory'])} "
            f"| {us(g['memcpy'])} | {us(cold)} "
            f"| {g['shmstream'] / g['memcpy']:.2f}x "
            f"| {many / g['memcpy']:.2f}x | {many / cold:.2f}x "
            f"| {g['mp.Queue'] / g['shmstream']:.1f}x "
            f"| {g['shared_memory'] / g['shmstream']:.1f}x |"
        )
        r = g["shmstream"] / g["memcpy"]
        goals.append((f"{label} within 1.5x of one memcpy (`put`)", f"{r:.2f}x", r <= 1.5))
        r = many / g["memcpy"]
        goals.append((f"{label} within 1.5x of one memcpy (`put_many`)", f"{r:.2f}x", r <= 1.5))
    w("")
    w("### Python-level cost per item and per chunk")
    w("")
    w("Batches of 512 items (56 bytes); the consumer drains between batches (not timed).")
    w("")
    w("| operation | per item |")
    w("|---|---|")
    for name, ns in items.items():
        w(f"| {name} | {us(ns)} |")
    w("")
    w(
        "Per chunk (window 28): `pop_chunk` alone "
        f"{us(chunk_ns[(28, 'pop')])}, with `chunk.data` {us(chunk_ns[(28, 'data')])} "
        "(table above). Python allocations of a chunk held with its `data` (tracemalloc, "
        f"window 28, 200 held): {alloc['blocks']:.1f} blocks, {alloc['bytes']:.0f} bytes per "
        f"chunk (the Rust side's heap is not traced); left behind per chunk popped and "
        f"dropped: {alloc['left']:.1f} bytes."
    )
    w("")
    w("### Goals")
    w("")
    w("| goal | measured | status |")
    w("|---|---|---|")
    for goal, how, ok in goals:
        w(f"| {goal} | {how} | {'met' if ok else '**missed**'} |")
    w("")
    w("### Where the time goes (this run's numbers)")
    w("")
    for para in analysis(chunk_ns, floor_ns, cross, shapes, POLL_NS):
        w(para)
        w("")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(Path(args.write), text)
        print(f"bench: wrote the section into {args.write}", file=sys.stderr)


def analysis(
    chunk_ns: dict[tuple[int, str], float],
    floor_ns: dict[str, float],
    cross: dict[tuple[str, str], float],
    shapes: list[tuple[int, int, str]],
    poll_ns: list[float],
) -> list[str]:
    """The causes, as measured above, in sentences."""
    torch_floor = next(v for k, v in floor_ns.items() if k.startswith("`torch._C"))
    capsule = next(v for k, v in floor_ns.items() if k.startswith("`view.__dlpack__"))
    np_floor = next(v for k, v in floor_ns.items() if k.startswith("`numpy"))
    pop28, data28 = chunk_ns[(28, "pop")], chunk_ns[(28, "data")]
    np28 = chunk_ns[(28, "numpy.from_dlpack")]
    out = [
        f"- Chunk + torch tensor (`chunk.data`, window 28: {us(data28)}): `pop_chunk` "
        f"{us(pop28)} (the Python call, the core's pop with its lease bookkeeping, the "
        f"`StreamChunk` object, dropping the previous chunk) plus the tensor: "
        f"`torch._C._from_dlpack` of a capsule, where `torch.from_dlpack` ends, costs "
        f"{us(torch_floor)} alone (the capsule {us(capsule)} of it); `chunk.data` calls it "
        "straight from Rust, skipping `torch.from_dlpack`'s Python wrapper (compare the "
        "`torch.from_dlpack(chunk)` column). Flat in the window: the stacked view is "
        "checked in O(1) (the consumer keeps the length of the run of same-shaped items "
        "at each position).",
        f"- Chunk + numpy view (window 28: {us(np28)}): `numpy.from_dlpack(view)` alone "
        f"costs {us(np_floor)}; it calls `__dlpack__` with keyword arguments, which an "
        "abi3-py39 extension receives as a dict (no vectorcall): about 0.15 us of it "
        "(measured: a keyword-less `__dlpack__()` 0.09 us, with any keyword 0.25 us). "
        "A wheel for CPython >= 3.10 (abi3-py310, `METH_FASTCALL` in the limited API) "
        "would cut that.",
        f"- Per item, not per chunk: the consumer checks each new item's descriptor once "
        f"({median(poll_ns):.0f} ns per item), at the poll that first sees it; a chunk "
        "that advances by `stride` items pays `stride` of those when items arrive while it "
        "waits (here they were polled before the timed pops).",
    ]
    for n, size, label in shapes:
        total, puts, mem = (cross[(label, k)] for k in ("shmstream", "puts", "memcpy"))
        cold = cross[(label, "memcpy into the ring's memory")]
        quiet = cross[(label, "puts, consumer not waiting")]
        rest = total - puts
        after = (
            f"the remaining {us(rest)} is"
            if rest > 0.02 * total
            else f"the rest ({us(max(rest, 0.0))}, within the noise of separate medians) is"
        )
        out.append(
            f"- {label}: {us(total)} in all, {total / mem:.2f}x one memcpy between hot arrays "
            f"({us(mem)}) and {total / cold:.2f}x one memcpy into /dev/shm memory cycling "
            f"through the ring's {payload_of(n, size) >> 20} MiB ({us(cold)}). "
            f"The producer's {n} put(s) take {us(puts)}: the copies, plus ~1.4 us of "
            f"Python per put; {after} the "
            "consumer's wake-up (a futex wake and a reschedule on a 2-core VM shared with the "
            "producer), `next_chunk` and `torch.from_dlpack`. With the consumer not waiting "
            f"in the stream during the puts, they take {us(quiet)}: a waiting consumer is "
            "woken by every commit (it cannot know that its chunk needs them all), and on two "
            "cores its wake-ups compete with the producer."
        )
    return out


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        _, tail = rest.split(END, 1)
        new = head + block + tail
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
