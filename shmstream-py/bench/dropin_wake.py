"""The wake-up rows of ``dropin.py``: from the start of a producer's
``put`` of one 56-byte tensor to the consumer holding ``chunk.data["data"]``,
the consumer asleep (the items come ``idle`` seconds apart). Every variant
runs in turns, round after round, so that the machine's load falls on all
of them alike.

Across processes: a Python producer process (``dropin_peer.py``) and a
Rust one (``ipc-demo wake --role hub|stream``), each feeding a Python
consumer (this process: ``StreamSet.wait_any`` + ``ready_chunks``, and
``StreamBuffer.next_chunk``) and a Rust consumer waiting the same ways
(``ipc-demo wake --role set|buffer``), each pair on its own stream. Across
threads of one process: the drop-in (``put`` in one thread, ``next_chunk``
in another) and the reference's design with a ``threading.Condition``."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import shmstream as s
import torch
from dropin_ref import WaitingRefBuffer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
clock, MONO = time.clock_gettime_ns, time.CLOCK_MONOTONIC
WAIT = 10.0  # seconds: a consumer that waits longer says so (never hangs)

# The rows: (producer, wait, consumer), the report's order.
PRODUCERS = ("Python", "Rust")
WAITS = ("set", "buffer")
CONSUMERS = ("Python", "Rust")
CROSS = tuple((p, w, c) for p in PRODUCERS for w in WAITS for c in CONSUMERS)
CONSUMER_CALL = {
    ("set", "Python"): "`StreamSet.wait_any` + `ready_chunks` + `chunk.data`",
    ("set", "Rust"): "`StreamSet::wait_any` + pop",
    ("buffer", "Python"): "`StreamBuffer.next_chunk` + `chunk.data`",
    ("buffer", "Rust"): "`StreamBuffer::next_chunk_timeout`",
}
DROPIN_THREADS = "drop-in `StreamBuffer`: `put` in a thread, `next_chunk` + `chunk.data` in another"
REF_THREADS = (
    "reference's design: `put` in a thread, `threading.Condition` wait + `pop_chunk` in another"
)
THREADS = (DROPIN_THREADS, REF_THREADS)
# The Rust producer's `next_chunk` row again, another Python thread busy:
# at CPython's default switch interval (5 ms), and at BUSY_INTERVAL.
BUSY_INTERVAL = 1e-4
BUSY = (
    "another thread runs Python (switch interval: default)",
    f"another thread runs Python (`sys.setswitchinterval({BUSY_INTERVAL:g})`)",
)
# The steps of the Python consumer in `wait_any`, from the put's start.
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


def _python(kind: str, name: str, prefix: str) -> subprocess.Popen[str]:
    """Starts a Python producer process (``_ready`` waits for its stream)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "dropin_peer.py"), kind, name, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _rust(exe: str, role: str, name: str, prefix: str, items: int = 0) -> subprocess.Popen[str]:
    """Starts a Rust peer, ``ipc-demo wake`` (``_ready`` waits for it)."""
    args = ["wake", "--role", role, "--name", name, "--prefix", prefix]
    if items:
        args += ["--items", str(items)]
    return subprocess.Popen([exe, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


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
    """Latencies (ns): "cross" by (producer, wait, consumer), "threads" by
    label; "steps" of the Python consumers in `wait_any` by producer, then
    step (each from the step before; the first from the put's start)."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    # Not the default "shmstream-": a test session that ends meanwhile
    # removes every "shmstream-*" segment that appeared during it (the
    # suite's conftest), the bench's included.
    prefix = "sstbench-"
    exe = ipc_demo()
    total = rounds * per_round
    holds: dict[tuple[str, str, str], dict[int, int]] = {v: {} for v in CROSS}
    steps: dict[str, dict[str, list[int]]] = {p: {k: [] for k in STEPS} for p in PRODUCERS}
    returned: dict[str, dict[int, int]] = {p: {} for p in PRODUCERS}
    threads: dict[str, list[int]] = {v: [] for v in THREADS}
    cpu: dict[tuple[str, str, str], float] = {v: 0.0 for v in CROSS}  # s, Python consumers
    busy: dict[str, dict[int, int]] = {label: {} for label in BUSY}
    procs: list[subprocess.Popen[str]] = []
    peers: dict[tuple[str, str, str], Peer] = {}
    sets: dict[str, Any] = {}
    bufs: dict[str, Any] = {}
    rust: dict[tuple[str, str, str], subprocess.Popen[str]] = {}

    def name(v: tuple[str, str, str]) -> str:
        return "dib-" + "".join(x[0].lower() for x in v) + f"-{tag}"

    try:
        # The hubs first (the producers attach to them), then the producers
        # (started together), then the buffers' consumers (they open the
        # producers' streams).
        for v in CROSS:
            producer, wait, consumer = v
            if wait == "set" and consumer == "Python":
                sets[producer] = s.StreamSet(name(v), prefix=prefix, default_policy="fixed:size=1")
            elif wait == "set":
                rust[v] = _rust(exe, "set", name(v), prefix, total)
                procs.append(rust[v])
                _ready(rust[v], f"ipc-demo wake --role set ({v})")
        for v in CROSS:
            producer, wait, _ = v
            kind = "hub" if wait == "set" else "stream"
            proc = (
                _python(kind, name(v), prefix)
                if producer == "Python"
                else _rust(exe, kind, name(v), prefix)
            )
            procs.append(proc)
            peers[v] = Peer(proc)
        for v, peer in peers.items():
            _ready(peer.proc, f"the producer of {v}")
        for v in CROSS:
            producer, wait, consumer = v
            if wait == "buffer" and consumer == "Python":
                bufs[producer] = s.StreamBuffer.open(
                    name(v), "e", "p", "fixed:size=1", prefix=prefix
                )
            elif wait == "buffer":
                rust[v] = _rust(exe, "buffer", name(v), prefix, total)
                procs.append(rust[v])
                _ready(rust[v], f"ipc-demo wake --role buffer ({v})")

        def set_py(producer: str, n: int) -> None:
            streams, held = sets[producer], holds[(producer, "set", "Python")]
            st, back = steps[producer], returned[producer]
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
                        held[i], back[i] = td, tw
                        st[STEPS[1]].append(tc - tw)
                        st[STEPS[2]].append(td - tc)
                        got += 1

        def buf_py(producer: str, n: int) -> None:
            buf, held = bufs[producer], holds[(producer, "buffer", "Python")]
            for _ in range(n):
                chunk = buf.next_chunk(WAIT)
                d = chunk.data["data"]
                td = clock(MONO)
                held[int(d[0])] = td

        for _ in range(rounds):
            for v in CROSS:
                producer, wait, consumer = v
                peers[v].go(per_round, idle)
                if consumer == "Python":
                    r0 = resource.getrusage(resource.RUSAGE_THREAD)
                    (set_py if wait == "set" else buf_py)(producer, per_round)
                    r1 = resource.getrusage(resource.RUSAGE_THREAD)
                    cpu[v] += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                peers[v].collect()
            for label, f in ((DROPIN_THREADS, _dropin_threads), (REF_THREADS, _ref_threads)):
                starts, held = f(per_round, idle)
                threads[label].extend(held[i] - starts[i] for i in starts if i in held)
            # The GIL hand-over: the Rust producer's stream again, while
            # another thread of this process runs Python.
            v = ("Rust", "buffer", "Python")
            for label, interval in zip(BUSY, (None, BUSY_INTERVAL)):
                before = dict(holds[v])
                holds[v] = busy[label]
                with _busy_thread(interval):
                    peers[v].go(per_round, idle)
                    buf_py("Rust", per_round)
                    peers[v].collect()
                busy[label], holds[v] = holds[v], before
        for peer in peers.values():
            peer.quit()
        for peer in peers.values():
            peer.proc.wait(timeout=WAIT)
        for v, proc in rust.items():
            out, _ = proc.communicate(timeout=WAIT)
            words = out.split()
            holds[v] = {int(words[k]): int(words[k + 1]) for k in range(0, len(words), 2)}
        cross = {}
        for v in CROSS:
            st = peers[v].starts
            cross[v] = [holds[v][i] - st[i] for i in sorted(st) if i in holds[v]]
        gil = {}
        for label, held in busy.items():
            st = peers[("Rust", "buffer", "Python")].starts
            gil[label] = [held[i] - st[i] for i in sorted(held) if i in st]
        for producer in PRODUCERS:
            st = peers[(producer, "set", "Python")].starts
            steps[producer][STEPS[0]] = [
                t - st[i] for i, t in returned[producer].items() if i in st
            ]
        for streams in sets.values():
            streams.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # What a killed producer (a failed run) left: every name carries
        # this run's tag, and every process of the run is gone.
        for leftover in Path("/dev/shm").glob(f"{prefix}*{tag}*"):
            leftover.unlink(missing_ok=True)
    return {
        "cross": cross,
        "threads": threads,
        "gil": gil,
        "steps": steps,
        # The Python consumer thread's CPU (user + system) per item, ns.
        "cpu_per_item_ns": {v: t * 1e9 / total for v, t in cpu.items() if v[2] == "Python"},
        "idle_s": idle,
        "rounds": rounds,
        "per_round": per_round,
    }


@contextlib.contextmanager
def _busy_thread(interval: float | None) -> Iterator[None]:
    """A thread running pure Python meanwhile (the switch interval set to
    ``interval``, if given, and restored)."""
    old = sys.getswitchinterval()
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    t = threading.Thread(target=spin)
    if interval is not None:
        sys.setswitchinterval(interval)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)


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
