"""The Python benchmarks' measurements (issue 10): the timing functions and
``run``, which times everything ``bench.py`` reports. Needs numpy, torch and
the installed shmstream package; writes nothing but progress on stderr."""

from __future__ import annotations

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
from typing import Any, Callable

import numpy as np
import shmstream as s
import torch
from results import Results
from sizes import payload_of, warm_rounds

now = time.perf_counter_ns
QUICK = False


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


# --- all of it --------------------------------------------------------------------

WINDOWS = [4, 28, 256, 1024]
VARIANTS = ["pop", "data", "torch.from_dlpack", "numpy.from_dlpack", "reference"]
SHAPES = [(32, 64 << 10, "32 x 64 KiB"), (4, 2 << 20, "4 x 2 MiB"), (1, 64 << 20, "1 x 64 MiB")]


def run(quick: bool) -> Results:
    """Every measurement of the report, in one run (about two minutes)."""
    global QUICK
    QUICK = quick
    started = time.monotonic()
    load0 = os.getloadavg()

    print("bench: the chunk path", file=sys.stderr)
    overhead = timer_overhead()
    timed = {(win, v): bench_chunks(win, v, overhead) for win in WINDOWS for v in VARIANTS}
    chunk_ns = {key: med for key, (med, _) in timed.items()}
    stride1 = bench_chunks(1024, "data", overhead, stride=1)[0]
    floor_ns = floors()
    chunk_mean = {key: mean for key, (_, mean) in timed.items()}

    print("bench: cross-process", file=sys.stderr)
    cross: dict[tuple[str, str], float] = {}
    for n, size, label in SHAPES:
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
        warm = warm_rounds(n, size)
        cross[(label, "puts")] = median(PUTS_NS[(n, size, True, False)][warm:])
        cross[(label, "puts, consumer not waiting")] = median(
            PUTS_NS[(n, size, False, False)][warm:]
        )

    print("bench: per item and allocations", file=sys.stderr)
    items = per_item()
    alloc = allocations()
    load1 = os.getloadavg()
    elapsed = time.monotonic() - started
    return Results(
        date=datetime.datetime.now(datetime.timezone.utc),
        cores=os.cpu_count(),
        arch=platform.machine(),
        kernel=platform.release(),
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        load_start=load0,
        load_end=load1,
        elapsed_s=elapsed,
        quick=QUICK,
        timer_overhead_ns=overhead,
        windows=WINDOWS,
        chunk_ns=chunk_ns,
        chunk_mean_ns=chunk_mean,
        stride1_ns=stride1,
        floor_ns=floor_ns,
        poll_ns=POLL_NS,
        shapes=SHAPES,
        cross_ns=cross,
        per_item_ns=items,
        alloc=alloc,
    )
