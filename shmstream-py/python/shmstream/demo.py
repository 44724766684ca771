"""``python -m shmstream.demo``: a Python producer process and a Python
consumer process over one stream, with a progress line and ipc-demo's
consumer report: items verified in order, chunks, throughput, commit-to-chunk
latency percentiles, bytes copied, sleeps, and the producer's back-pressure
(``--json``: the report as one JSON line, with ipc-demo's field names).

Each item is 7 int64: its stream position, the producer's CLOCK_MONOTONIC
stamp (ns) taken just before its commit, a checksum of the position, and
four more words of the position. The producer registers 8 slots at a time,
fills them in place and commits them in reverse order (as RDMA completions
land); the consumer reads every window in place through DLPack.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from typing import Any

import numpy as np

import shmstream

WORDS = 7  # int64 per item: 56 bytes
BATCH = 8


def checksum(positions: np.ndarray) -> np.ndarray:
    return (positions * 2654435761 + 7) % (1 << 31)


def produce(ident: tuple[str, str, str], items: int, capacity: int, ready: Any, out: Any) -> None:
    """The producer process: creates the stream, streams ``items`` items,
    and sends its back-pressure counts (``{"items": n, "payload_bytes": m}``)
    through ``out`` before waiting for the consumer to drain the stream."""
    producer = shmstream.Producer(*ident, capacity=capacity, item_bytes=WORDS * 8)
    ready.set()
    waits = {"items": 0, "payload_bytes": 0}
    for start in range(0, items, BATCH):
        slots = []
        for i in range(start, min(items, start + BATCH)):
            try:
                slot = producer.register(f"t{i}", WORDS * 8, timeout=0)
            except shmstream.RingFull:
                # Every item takes 56 of the 64 payload bytes per slot, so
                # the item slots run out first, never the payload bytes.
                waits["items"] += 1
                slot = producer.register(f"t{i}", WORDS * 8, timeout=None)
            slots.append((i, slot))
        for i, slot in reversed(slots):  # out of order
            row = slot.numpy(np.int64, (WORDS,))
            row[0] = i
            row[2] = (i * 2654435761 + 7) % (1 << 31)
            row[3:] = i
            row[1] = time.monotonic_ns()
            slot.commit("i64", [WORDS])
    producer.signal_done()
    out.put(waits)
    producer.wait_drained(60)


def percentiles(ns: np.ndarray) -> dict[str, int] | None:
    """Nearest-rank percentiles (as ipc-demo's), or None without samples."""
    if ns.size == 0:
        return None
    q = np.quantile(ns, [0.5, 0.99, 0.999], method="inverted_cdf")
    return {
        "samples": int(ns.size),
        "p50_ns": int(q[0]),
        "p99_ns": int(q[1]),
        "p999_ns": int(q[2]),
        "max_ns": int(ns.max()),
    }


def consume(buf: shmstream.StreamBuffer, items: int, progress: bool) -> dict[str, Any]:
    """Reads the stream to its final chunk, verifying every item in place;
    ipc-demo's consumer report as a dict."""
    latency = np.empty(items, dtype=np.int64)
    seen = 0  # items verified, in order: positions 0..seen
    chunks = finals = empties = context = stacked = bad = 0
    first_stamp = None
    sleeps0 = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    for chunk in buf:
        chunks += 1
        finals += chunk.is_final
        n = len(chunk)
        if n == 0:
            empties += 1
            continue
        stacked += chunk.stacked() is not None
        a = np.from_dlpack(chunk)  # [n, 7] int64, read-only, in place
        now = time.monotonic_ns()
        start = chunk.start_offset
        new = start + n - seen  # items this chunk shows for the first time
        context += n - new
        pos = a[:, 0]
        if start > seen or not (
            (pos == np.arange(start, start + n)).all()
            and (a[:, 2] == checksum(pos)).all()
            and (a[:, 3:] == pos[:, None]).all()
        ):
            bad += 1
        if new > 0:
            stamps = a[n - new :, 1]
            if first_stamp is None:
                first_stamp = int(stamps[0])
            latency[seen : seen + new] = now - stamps
            seen += new
        del a, pos
        if progress and chunks % 2000 == 0:
            done = seen / items
            sys.stderr.write(f"\r[{'#' * int(done * 30):<30}] {done:6.1%}")
    end = time.monotonic_ns()
    sleeps = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - sleeps0
    if progress:
        sys.stderr.write(f"\r[{'#' * 30}] 100.0%\n")
    secs = (end - first_stamp) / 1e9 if first_stamp is not None else 0.0
    nbytes = seen * WORDS * 8
    return {
        "policy": buf.policy.name,
        "items": seen,
        "expected_items": items,
        "lost": items - seen,
        "order_verified": bad == 0 and seen == items,
        "bad_chunks": bad,
        "chunks": chunks,
        "final_chunks": finals,
        "empty_chunks": empties,
        "context_items": context,
        "stacked_windows": stacked,
        "bytes": nbytes,
        "seconds": secs,
        "items_per_s": seen / secs if secs else 0.0,
        "gb_per_s": nbytes / secs / 1e9 if secs else 0.0,
        "latency": percentiles(latency[:seen]),
        "bytes_copied": 0,
        "consumer_sleeps": sleeps,
    }


def us(ns: int) -> str:
    return f"{ns / 1000:.1f} us"


def render(r: dict[str, Any]) -> str:
    """The report as ipc-demo prints it."""
    lines = [
        f"stream         {r['stream']}",
        f"policy         {r['policy']}",
        f"items          {r['items']} of {r['expected_items']} expected, {r['lost']} lost, "
        + (
            "every one verified in order"
            if r["order_verified"]
            else f"{r['bad_chunks']} BAD chunks"
        ),
        f"chunks         {r['chunks']} ({r['final_chunks']} final, {r['empty_chunks']} empty, "
        f"{r['stacked_windows']} stacked views, {r['context_items']} context items re-shown)",
        f"throughput     {r['items_per_s']:.0f} items/s, {r['gb_per_s']:.3f} GB/s "
        f"over {r['seconds']:.3f} s",
    ]
    lat = r["latency"]
    if lat:
        lines.append(
            f"latency        p50 {us(lat['p50_ns'])}  p99 {us(lat['p99_ns'])}  "
            f"p99.9 {us(lat['p999_ns'])}  max {us(lat['max_ns'])}  "
            f"(commit to chunk, {lat['samples']} items)"
        )
    else:
        lines.append("latency        not measured (no items)")
    lines.append(
        f"copied         {r['bytes_copied']} bytes on the consumer side "
        f"({r['bytes']} bytes read in place to verify)"
    )
    lines.append(
        f"sleeps         {r['consumer_sleeps']} (voluntary context switches of the consumer)"
    )
    bp = r["backpressure"]
    if bp is not None:
        lines.append(
            f"backpressure   the producer waited {bp['items']} times for an item slot, "
            f"{bp['payload_bytes']} times for payload bytes"
        )
    lines.append(f"producer       exit code {r['producer_exit_code']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--policy", default="sliding:window=28,stride=7")
    parser.add_argument("--capacity", type=int, default=1024, help="items the ring holds")
    parser.add_argument("--json", action="store_true", help="the report as one JSON line")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--source",
        choices=("python", "mooncake"),
        default="python",
        help="python: a producer process writes the items; mooncake: a sender process "
        "announces them and a receiver process reads them into the slots with Mooncake's "
        "transfer engine (TCP on loopback; needs the [mooncake] extra)",
    )
    args = parser.parse_args(argv)
    ident = (f"demo-{os.getpid()}", "codec_tokens", "talker")
    ctx = mp.get_context("spawn")
    if args.source == "mooncake":
        return main_mooncake(args, ident, ctx)
    ready, out = ctx.Event(), ctx.SimpleQueue()
    proc = ctx.Process(target=produce, args=(ident, args.items, args.capacity, ready, out))
    proc.start()
    if not ready.wait(60):
        proc.kill()
        raise SystemExit("demo: the producer did not create the stream within 60 s")
    try:
        buf = shmstream.StreamBuffer.open(*ident, policy=args.policy, timeout=30)
        report = consume(buf, args.items, progress=not args.no_progress and not args.json)
        # The producer sends its counts right after signalling done.
        while out.empty() and proc.is_alive():
            time.sleep(0.001)
        report["backpressure"] = None if out.empty() else out.get()
        del buf
        proc.join(60)
    finally:
        if proc.is_alive():  # the consumer failed: the producer waits in vain
            proc.kill()
            proc.join(5)
    report["stream"] = "/".join(ident)
    report["producer_exit_code"] = proc.exitcode
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"shmstream.demo: {args.items} items of {WORDS * 8} bytes, "
            "Python producer and consumer in two processes"
        )
        print(render(report))
    ok = report["order_verified"] and proc.exitcode == 0
    return 0 if ok else 1


def main_mooncake(args: argparse.Namespace, ident: tuple[str, str, str], ctx: Any) -> int:
    """sender -> receiver (the producer) -> this process (the consumer)."""
    import tempfile  # noqa: PLC0415

    from .mooncake import _demo  # noqa: PLC0415 (optional extra)

    with tempfile.TemporaryDirectory(prefix="shmstream-mc-") as tmp:
        path = os.path.join(tmp, "control.sock")
        ready, out = ctx.Event(), ctx.SimpleQueue()
        receiver = ctx.Process(target=_demo.receive, args=(ident, args.capacity, path, ready, out))
        receiver.start()
        sender = None
        try:
            if not ready.wait(60):
                raise SystemExit("demo: the receiver did not create the stream within 60 s")
            sender = ctx.Process(target=_demo.send, args=(ident, args.items, path))
            sender.start()
            buf = shmstream.StreamBuffer.open(*ident, policy=args.policy, timeout=30)
            report = consume(buf, args.items, progress=not args.no_progress and not args.json)
            while out.empty() and receiver.is_alive():
                time.sleep(0.001)
            counts = None if out.empty() else out.get()
            del buf
            sender.join(60)
            receiver.join(60)
        finally:
            for proc in (sender, receiver):
                if proc is not None and proc.is_alive():
                    proc.kill()
                    proc.join(5)
    report["stream"] = "/".join(ident)
    report["backpressure"] = None
    report["producer_exit_code"] = receiver.exitcode
    report["sender_exit_code"] = sender.exitcode if sender is not None else None
    report["mooncake"] = counts
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"shmstream.demo: {args.items} items of {WORDS * 8} bytes, a Mooncake sender, "
            "receiver and consumer in three processes (TCP on loopback; latency is "
            "announcement to chunk)"
        )
        print(render(report))
        if counts is not None:
            print(
                f"mooncake       {counts['items']} tensors in {counts['reads']} reads "
                f"({counts['engine_calls']} engine calls), "
                f"{counts['registrations']} memory registration(s), "
                f"{len(counts['failures'])} failures; sender exit code {sender.exitcode}"
            )
    ok = report["order_verified"] and receiver.exitcode == 0 and sender.exitcode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
