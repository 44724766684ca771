"""The wake-up rows of ``dropin.py``: from the start of a producer's
``put`` of one 56-byte tensor to the consumer holding ``chunk.data["data"]``,
the consumer asleep (the items come ``idle`` seconds apart). Every variant
runs in turns, round after round, so that the machine's load falls on all
of them alike.

Across processes (the producer: ``dropin_peer.py``, a Python process):
shmstream's Python consumer in ``StreamSet.wait_any`` + ``ready_chunks``
and in ``StreamBuffer.next_chunk``, and a Rust consumer waiting the same
ways on a stream of an identical producer (``ipc-demo wake``). Across
threads of one process: the drop-in (``put`` in one thread, ``next_chunk``
in another) and the reference's design with a ``threading.Condition``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import shmstream as s
import torch
from dropin_ref import WaitingRefBuffer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
clock, MONO = time.clock_gettime_ns, time.CLOCK_MONOTONIC
WAIT = 10.0  # seconds: a consumer that waits longer says so (never hangs)

# Row labels (the report's order).
SET_PY = "shmstream, Python consumer in `StreamSet.wait_any` (+ `ready_chunks`, `chunk.data`)"
SET_RS = "shmstream, Rust consumer in `StreamSet::wait_any` (+ pop)"
BUF_PY = "shmstream, Python consumer in `StreamBuffer.next_chunk` (+ `chunk.data`)"
BUF_RS = "shmstream, Rust consumer in `StreamBuffer::next_chunk_timeout`"
DROPIN_THREADS = "drop-in `StreamBuffer`, `put` in a thread, `next_chunk` + `chunk.data` in another"
REF_THREADS = (
    "reference's design, `put` in a thread, `threading.Condition` wait + `pop_chunk` in another"
)
VARIANTS = (SET_PY, SET_RS, BUF_PY, BUF_RS, DROPIN_THREADS, REF_THREADS)
# The steps of SET_PY's consumer, after the core's wait (for "where the time goes").
STEPS = ("`wait_any` returned to Python", "`ready_chunks` yielded the chunk", "`chunk.data` built")


def ipc_demo() -> str:
    """The ipc-demo binary (``SHMSTREAM_IPC_DEMO``, else built here)."""
    exe = os.environ.get("SHMSTREAM_IPC_DEMO")
    if exe:
        return exe
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "ipc-demo", "--bin", "ipc-demo"],
        cwd=ROOT,
        check=True,
    )
    return str(target / "release" / "ipc-demo")


def _ready(proc: subprocess.Popen[str], what: str) -> None:
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{what} did not start (said {line!r})")


def _peer(kind: str, name: str, prefix: str) -> subprocess.Popen[str]:
    """Starts a producer process (``_ready`` waits for its stream)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "dropin_peer.py"), kind, name, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wake(exe: str, wait: str, name: str, prefix: str, items: int) -> subprocess.Popen[str]:
    """Starts the Rust consumer (``_ready`` waits for it)."""
    args = ["wake", "--wait", wait, "--name", name, "--prefix", prefix, "--items", str(items)]
    return subprocess.Popen([exe, *args], stdout=subprocess.PIPE, text=True)


def _starts(line: str) -> dict[int, int]:
    return {int(i): int(t) for i, t in (w.split(":") for w in line.split())}


class Peer:
    """A producer process and the consumer that reads its stream."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.starts: dict[int, int] = {}

    def go(self, n: int, idle: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {n} {idle}\n")
        self.proc.stdin.flush()

    def collect(self) -> None:
        assert self.proc.stdout is not None
        self.starts.update(_starts(self.proc.stdout.readline()))

    def quit(self) -> None:
        """Tells the producer to finish (``wait`` waits for it)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()


def run(rounds: int, per_round: int, idle: float) -> dict[str, Any]:
    """Latencies (ns) by variant, and SET_PY's steps (ns) by step."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    # Not the default "shmstream-": a test session that ends meanwhile
    # removes every "shmstream-*" segment that appeared during it (the
    # suite's conftest), the bench's included.
    prefix = "sstbench-"
    exe = ipc_demo()
    total = rounds * per_round
    lat: dict[str, list[int]] = {v: [] for v in VARIANTS}
    steps: dict[str, list[int]] = {k: [] for k in STEPS}
    holds: dict[str, dict[int, int]] = {v: {} for v in VARIANTS}
    returned: dict[int, int] = {}  # SET_PY: when wait_any returned, by item
    procs: list[subprocess.Popen[str]] = []
    peers: dict[str, Peer] = {}
    try:
        # The hubs first (the producers attach to them), then the producers
        # (started together: each imports torch), then the buffers' consumers
        # (they open the producers' streams).
        streams = s.StreamSet(f"dib-py-{tag}", prefix=prefix, default_policy="fixed:size=1")
        rs_set = _wake(exe, "set", f"dib-rs-{tag}", prefix, total)
        procs.append(rs_set)
        _ready(rs_set, "ipc-demo wake --wait set")
        started = {
            SET_PY: _peer("hub", f"dib-py-{tag}", prefix),
            SET_RS: _peer("hub", f"dib-rs-{tag}", prefix),
            BUF_PY: _peer("stream", f"dib-bpy-{tag}", prefix),
            BUF_RS: _peer("stream", f"dib-brs-{tag}", prefix),
        }
        for v, proc in started.items():
            peers[v] = Peer(proc)
        for v, proc in started.items():
            _ready(proc, f"the producer process of {v}")
        buf = s.StreamBuffer.open(f"dib-bpy-{tag}", "e", "p", "fixed:size=1", prefix=prefix)
        rs_buf = _wake(exe, "buffer", f"dib-brs-{tag}", prefix, total)
        procs.append(rs_buf)
        _ready(rs_buf, "ipc-demo wake --wait buffer")

        def set_py(n: int) -> None:
            got = 0
            while got < n:
                keys = streams.wait_any(WAIT)
                tw = clock(MONO)
                if not keys:
                    raise RuntimeError(f"StreamSet.wait_any: nothing in {WAIT} s")
                for key in keys:
                    for chunk in streams.ready_chunks(key):
                        tc = clock(MONO)
                        d = chunk.data["data"]
                        td = clock(MONO)
                        if d is None:
                            continue
                        i = int(d[0])
                        holds[SET_PY][i] = td
                        returned[i] = tw
                        steps[STEPS[1]].append(tc - tw)
                        steps[STEPS[2]].append(td - tc)
                        got += 1

        def buf_py(n: int) -> None:
            for _ in range(n):
                chunk = buf.next_chunk(WAIT)
                d = chunk.data["data"]
                td = clock(MONO)
                holds[BUF_PY][int(d[0])] = td

        for _ in range(rounds):
            for v in (SET_PY, SET_RS, BUF_PY, BUF_RS):
                peers[v].go(per_round, idle)
                if v == SET_PY:
                    set_py(per_round)
                elif v == BUF_PY:
                    buf_py(per_round)
                peers[v].collect()
            for v, f in ((DROPIN_THREADS, _dropin_threads), (REF_THREADS, _ref_threads)):
                starts, held = f(per_round, idle)
                lat[v].extend(held[i] - starts[i] for i in starts if i in held)
        for v in (SET_PY, SET_RS, BUF_PY, BUF_RS):
            peers[v].quit()
        for v in (SET_PY, SET_RS, BUF_PY, BUF_RS):
            peers[v].proc.wait(timeout=WAIT)
        for v, p in ((SET_RS, rs_set), (BUF_RS, rs_buf)):
            out, _ = p.communicate(timeout=WAIT)
            words = out.split()
            holds[v] = {int(words[k]): int(words[k + 1]) for k in range(0, len(words), 2)}
        for v in (SET_PY, SET_RS, BUF_PY, BUF_RS):
            st = peers[v].starts
            lat[v] = [holds[v][i] - st[i] for i in sorted(st) if i in holds[v]]
        # wait_any's return, from the put's start.
        st = peers[SET_PY].starts
        steps[STEPS[0]] = [t - st[i] for i, t in returned.items() if i in st]
        streams.close()
    finally:
        for p in peers.values():
            if p.proc.poll() is None:
                p.proc.kill()
        for p in procs:
            if p.poll() is None:
                p.kill()
    return {
        "latency_ns": lat,
        "steps_ns": steps,
        "idle_s": idle,
        "rounds": rounds,
        "per_round": per_round,
    }


def _threads(n: int, idle: float, put: Callable[[int], None], take: Callable[[], None]) -> None:
    """``put(i)`` in a producer thread ``idle`` apart, ``take()`` n times here."""

    def producer() -> None:
        for i in range(n):
            time.sleep(idle)
            put(i)

    t = threading.Thread(target=producer)
    t.start()
    for _ in range(n):
        take()
    t.join()


def _dropin_threads(n: int, idle: float) -> tuple[dict[int, int], dict[int, int]]:
    sb = s.StreamBuffer(f"dib-t-{uuid.uuid4().hex[:8]}", "e", "p", "fixed:size=1")
    item = torch.zeros(7, dtype=torch.int64)
    starts: dict[int, int] = {}
    held: dict[int, int] = {}

    def put(i: int) -> None:
        item[0] = i
        sb.pre_read_register(f"x{i}")
        starts[i] = clock(MONO)
        sb.put(f"x{i}", item)

    def take() -> None:
        chunk = sb.next_chunk(WAIT)
        d = chunk.data["data"]
        t = clock(MONO)
        held[int(d[0])] = t

    _threads(n, idle, put, take)
    return starts, held


def _ref_threads(n: int, idle: float) -> tuple[dict[int, int], dict[int, int]]:
    rb = WaitingRefBuffer(1, 1)
    starts: dict[int, int] = {}
    held: dict[int, int] = {}

    def put(i: int) -> None:
        item = torch.zeros(7, dtype=torch.int64)
        item[0] = i
        rb.pre_read_register(f"x{i}")
        starts[i] = clock(MONO)
        rb.put(f"x{i}", item)

    def take() -> None:
        chunk = rb.next_chunk()
        d = chunk.data["data"]
        t = clock(MONO)
        held[int(d[0])] = t

    _threads(n, idle, put, take)
    return starts, held
