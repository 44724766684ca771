"""asyncio against the blocking waits, in one run (issue 25).

    python shmstream-py/bench/aio.py [--write docs/benchmarks.md] [--quick] [--buffer-only]

1. Wake-up latency: a producer process puts one 56-byte item (its
   ``CLOCK_MONOTONIC`` stamp inside) every 2 ms into one of N open streams
   of a :class:`StreamSet` (N = 1, 64, 1024), round-robin; this process
   waits with ``wait_any`` (sync) and then with ``await_any`` inside
   ``async for key, chunk in streams`` (asyncio; also under uvloop when it
   imports) and takes the time from the put to the chunk in hand.
2. A standalone buffer's wake-up: a producer process puts one such item
   every 2 ms into one stream (``Producer``), and this process reads it
   through ``StreamBuffer.open``, in interleaved blocks of 200 items:
   ``next_chunk`` (sync), ``anext_chunk`` with io_uring, ``anext_chunk``
   with the fallback's thread (the first 10 of each block left out: the
   items the switch let pile up). ``--buffer-only`` runs just this.
3. Throughput: 56-byte items (7 x i64), one chunk each (``fixed:size=1``),
   from a producer process writing batches of 64 (``put_many``) into 4
   streams, read by ``for key in wait_any(): for chunk in ready_chunks(key)``
   against ``async for key, chunk in streams``.

Prints a Markdown section and, with ``--write FILE``, puts it into FILE
between ``<!-- aio-bench:start -->`` and ``<!-- aio-bench:end -->``
(appended when the markers are absent). Not run by CI; about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import shmstream
from sections import write_section
from shmstream import _aio

# (row label, loop, how the set's awaits wait: shmstream._aio.SET_WAITER)
VARIANTS = [
    ("asyncio, io_uring FUTEX_WAIT", "asyncio", "uring"),
    ("asyncio, native thread (fallback)", "asyncio", "thread"),
    ("uvloop, io_uring FUTEX_WAIT", "uvloop", "uring"),
]

PRODUCER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream
    worker, mode, n, count, phases = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    hub = shmstream.Hub.attach(worker)
    tag = worker
    if mode == "latency":
        ps = [hub.create_stream(f"{tag}-{i}", "e", "p", capacity=16, item_bytes=64)
              for i in range(n)]
        print("ready", flush=True)
        sys.stdin.readline()
        item = np.zeros(7, dtype=np.int64)
        for phase in range(phases):
            for i in range(count):
                time.sleep(0.002)
                item[0] = time.monotonic_ns()
                ps[(i * 7919) % n].put(f"t{phase}-{i}", item)
            sys.stdin.readline()  # the consumer's next phase is ready
    else:
        ps = [hub.create_stream(f"{tag}-{i}", "e", "p", capacity=1024, item_bytes=56)
              for i in range(n)]
        print("ready", flush=True)
        batch = np.zeros((64, 7), dtype=np.int64)
        for phase in range(phases):
            sys.stdin.readline()
            for b in range(count // 64 // n):
                for k, p in enumerate(ps):
                    p.put_many([None] * 64, stacked=batch)
        print("done", flush=True)
        sys.stdin.readline()
    """
)


BUFFER_PRODUCER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream
    p = shmstream.Producer(*sys.argv[1:4], capacity=16, item_bytes=64)
    print("ready", flush=True)
    item = np.zeros(7, dtype=np.int64)
    i = 0
    while True:  # killed when the reader is done
        time.sleep(0.002)
        item[0] = time.monotonic_ns()
        p.put(f"t{i}", item)
        i += 1
    """
)

# (row label, how a buffer's awaits wait: None for the sync next_chunk)
BUFFER_VARIANTS = [
    ("sync next_chunk", None),
    ("anext_chunk, io_uring FUTEX_WAIT", "uring"),
    ("anext_chunk, native thread (fallback)", "thread"),
]


def stamp_of(chunk) -> float:
    now = time.monotonic_ns()
    return (now - int(np.asarray(chunk.item(0))[0])) / 1e3


async def buffer_async(buf, count: int) -> list[float]:
    out = []
    while len(out) < count:
        chunk = await buf.anext_chunk()
        out.append(stamp_of(chunk))
        chunk.release()
    return out


def run_buffer_latency(rounds: int, block: int) -> dict[str, list[float]]:
    """The standalone buffer's wake-up, the variants interleaved in
    ``rounds`` rounds of ``block`` items each."""
    sid = (f"aio-buf-{os.getpid()}-{uuid.uuid4().hex[:6]}", "e", "p")
    proc = subprocess.Popen(
        [sys.executable, "-c", BUFFER_PRODUCER, *sid], stdout=subprocess.PIPE, text=True
    )
    out: dict[str, list[float]] = {label: [] for label, _ in BUFFER_VARIANTS}
    try:
        assert proc.stdout.readline().strip() == "ready"
        buf = shmstream.StreamBuffer.open(*sid, "fixed:size=1")
        skip = 10
        for _ in range(rounds):
            for label, mode in BUFFER_VARIANTS:
                if mode is None:
                    got = []
                    while len(got) < block + skip:
                        chunk = buf.next_chunk()
                        got.append(stamp_of(chunk))
                        chunk.release()
                else:
                    _aio.SET_WAITER = mode
                    buf._aio = None
                    got = asyncio.run(buffer_async(buf, block + skip))
                out[label] += got[skip:]
    finally:
        proc.kill()
        proc.wait()
    return out


def buffer_report(lat: dict[str, list[float]]) -> list[str]:
    base = statistics.median(lat["sync next_chunk"])
    lines = [
        "",
        "A standalone buffer (`StreamBuffer.open`, one item every 2 ms from a "
        "producer process), the variants interleaved in blocks of 200 (µs):",
        "",
        "| wait | p50 | p90 | p99 | vs sync p50 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, xs in lat.items():
        med = statistics.median(xs)
        lines.append(
            f"| {name} | {med:.0f} | {pct(xs, 0.9):.0f} | {pct(xs, 0.99):.0f} | {med / base:.2f}x |"
        )
    return lines


def spawn(worker: str, mode: str, n: int, count: int, phases: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, worker, mode, str(n), str(count), str(phases)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def tell(proc: subprocess.Popen) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()


def adopt_all(streams: shmstream.StreamSet, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(streams) < n:
        assert time.monotonic() < deadline
        streams.wait_any(timeout=0.05)


def latency_sync(streams, count: int) -> list[float]:
    out = []
    while len(out) < count:
        for key in streams.wait_any():
            for chunk in streams.ready_chunks(key):
                now = time.monotonic_ns()
                out.append((now - int(np.asarray(chunk.item(0))[0])) / 1e3)
    return out


async def latency_async(streams, count: int) -> list[float]:
    out = []
    async for _key, chunk in streams:
        now = time.monotonic_ns()
        out.append((now - int(np.asarray(chunk.item(0))[0])) / 1e3)
        if len(out) == count:
            return out
    return out


def run_latency(n: int, count: int, loops: list[tuple[str, str, str]]) -> dict[str, list[float]]:
    worker = f"aio-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    results: dict[str, list[float]] = {}
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        proc = spawn(worker, "latency", n, count, 1 + len(loops))
        try:
            adopt_all(streams, n)
            tell(proc)
            results["sync wait_any"] = latency_sync(streams, count)
            for label, loop, mode in loops:
                tell(proc)
                results[label] = run_async(streams, loop, mode, latency_async(streams, count))
            tell(proc)
        finally:
            proc.kill()
            proc.wait()
    return results


def run_async(streams, loop: str, mode: str, coro):
    """Runs ``coro`` on a fresh loop of that kind, the set's awaits waiting
    the ``mode`` way."""
    _aio.SET_WAITER = mode
    streams._aio = None
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def throughput_sync(streams, total: int) -> float:
    got = 0
    t0 = time.perf_counter()
    while got < total:
        for key in streams.wait_any():
            for _chunk in streams.ready_chunks(key):
                got += 1
    return got / (time.perf_counter() - t0)


async def throughput_async(streams, total: int) -> float:
    got = 0
    t0 = time.perf_counter()
    async for _key, _chunk in streams:
        got += 1
        if got == total:
            break
    return got / (time.perf_counter() - t0)


def run_throughput(total: int, loops: list[tuple[str, str, str]]) -> dict[str, float]:
    n = 4
    worker = f"aio-tput-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    out: dict[str, float] = {}
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        proc = spawn(worker, "throughput", n, total, 1 + len(loops))
        total = total // 64 // n * 64 * n
        try:
            adopt_all(streams, n)
            tell(proc)
            out["sync wait_any + ready_chunks"] = throughput_sync(streams, total)
            for label, loop, mode in loops:
                tell(proc)
                out[label] = run_async(streams, loop, mode, throughput_async(streams, total))
        finally:
            proc.kill()
            proc.wait()
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def report(
    lat: dict[int, dict[str, list[float]]],
    buffer_lat: dict[str, list[float]],
    tput: dict[str, float],
) -> str:
    lines = [
        "### asyncio against the blocking waits (issue 25)",
        "",
        "`python shmstream-py/bench/aio.py` (2 cores, shared with other work; "
        "one item every 2 ms from a producer process, round-robin over the "
        "open streams; the time from its put to the chunk in the consumer's hand, µs).",
        "",
        "| open streams | wait | p50 | p90 | p99 | vs sync p50 |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n, by in lat.items():
        base = statistics.median(by["sync wait_any"])
        for name, xs in by.items():
            med = statistics.median(xs)
            lines.append(
                f"| {n} | {name} | {med:.0f} | {pct(xs, 0.9):.0f} | {pct(xs, 0.99):.0f} "
                f"| {med / base:.2f}x |"
            )
    lines += buffer_report(buffer_lat)
    lines += [
        "",
        "56-byte items, one chunk each, 4 streams, a producer process writing "
        "batches of 64 (`put_many`):",
        "",
        "| reader | items/s | vs sync |",
        "|---|---:|---:|",
    ]
    base = tput["sync wait_any + ready_chunks"]
    for name, v in tput.items():
        lines.append(f"| {name} | {v:,.0f} | {v / base:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--buffer-only", action="store_true")
    args = ap.parse_args()
    rounds = 2 if args.quick else 5
    if args.buffer_only:
        print(f"load average {os.getloadavg()[0]:.2f}")
        print("\n".join(buffer_report(run_buffer_latency(rounds, 200))))
        return
    loops = VARIANTS
    try:
        import uvloop  # noqa: F401
    except ImportError:
        print("uvloop does not import: its rows are left out", file=sys.stderr)
        loops = [v for v in VARIANTS if v[1] != "uvloop"]
    count = 200 if args.quick else 1000
    lat = {n: run_latency(n, count, loops) for n in (1, 64, 1024)}
    buffer_lat = run_buffer_latency(rounds, 200)
    tput = run_throughput(50_000 if args.quick else 1_000_000, loops)
    section = report(lat, buffer_lat, tput)
    print(section)
    if args.write:
        write_section(args.write, "aio-bench", section)


if __name__ == "__main__":
    main()
