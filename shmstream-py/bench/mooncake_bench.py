"""Mooncake ingress benchmarks (issue 23), one run, one Markdown section.

    python shmstream-py/bench/mooncake_bench.py [--quick] [--write docs/benchmarks.md]
        [--skip-ingress] [--window N] [--only ROW ...] [--shared-pool]

1. Ingress: the engine's ``batch_transfer_sync_read`` into one plain buffer
   registered once, against the same reads through
   ``shmstream.mooncake.Receiver`` into a stream's slots (the worker
   popping in another process), at 64 KiB, 2 MiB and 64 MiB
   (``mooncake_ingress.py``).
2. End to end, the worker's receive path: N = 16, 64, 256 requests, each a
   stream of 56 B codec frames (``LeftContextChunkPolicy(300, 25)``) and of
   64 KiB hidden states (``SlidingWindowChunkPolicy(28, 7)``), plus one
   stream of 2 MiB hidden states, from a sender process; shmstream's
   receiver and worker processes against the reference's path in one
   process (``mooncake_reference.py``). Items per second, announcement to
   chunk p50/p99, the receiving host's CPU (receiver and worker) per item,
   bytes copied and memory registrations per item after the engine's read.

TCP on loopback; ``--quick`` runs fewer items. Prints the section and, with
``--write FILE``, puts it into FILE between ``<!-- mooncake-bench:start -->``
and ``<!-- mooncake-bench:end -->`` (appended when absent). Not run by CI.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import mooncake_ingress  # noqa: E402
import mooncake_ours  # noqa: E402
import mooncake_reference  # noqa: E402
import mooncake_workload as wl  # noqa: E402
from sections import markers, write_section  # noqa: E402

TAG = "mooncake-bench"
SHARED = False  # --shared-pool
START, END = markers(TAG)


def run_ours(ctx: Any, w: wl.Workload, window: int) -> dict[str, Any]:
    worker = f"mcw{os.getpid()}"
    prefix = f"mcb{uuid.uuid4().hex[:6]}-"
    with tempfile.TemporaryDirectory(prefix="shmstream-mcb-") as tmp:
        path = os.path.join(tmp, "control.sock")
        wr, wo = ctx.Event(), ctx.SimpleQueue()
        rr, ro = ctx.Event(), ctx.SimpleQueue()
        so = ctx.SimpleQueue()
        wp = ctx.Process(target=mooncake_ours.work, args=(worker, prefix, len(w.streams()), wr, wo))
        wp.start()
        assert wr.wait(60)
        rp = ctx.Process(target=mooncake_ours.receive, args=(path, worker, prefix, rr, ro))
        rp.start()
        assert rr.wait(60)
        sp = ctx.Process(target=wl.send, args=(path, w, so, window, SHARED))
        sp.start()
        sent, received, worked = so.get(), ro.get(), wo.get()
        for p in (sp, rp, wp):
            p.join(60)
    assert sent["n_errors"] == 0, sent
    assert worked["items"] == w.items(), (worked["items"], w.items())
    r = summarize(w, sent, worked, received["cpu_s"] + worked["cpu_s"], received)
    r["receiver_cpu_s"], r["worker_cpu_s"] = received["cpu_s"], worked["cpu_s"]
    return r


def run_reference(ctx: Any, w: wl.Workload, window: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shmstream-mcb-") as tmp:
        path = os.path.join(tmp, "control.sock")
        ready, out, so = ctx.Event(), ctx.SimpleQueue(), ctx.SimpleQueue()
        rp = ctx.Process(
            target=mooncake_reference.run_process, args=(path, len(w.streams()), ready, out)
        )
        rp.start()
        assert ready.wait(60)
        sp = ctx.Process(target=wl.send, args=(path, w, so, window, SHARED))
        sp.start()
        sent, stats = so.get(), out.get()
        for p in (sp, rp):
            p.join(60)
    assert sent["n_errors"] == 0, sent
    assert stats["items"] == w.items(), (stats["items"], w.items())
    return summarize(w, sent, stats, stats["cpu_s"], stats)


def summarize(w: wl.Workload, sent: dict, worked: dict, cpu_s: float, rx: dict) -> dict[str, Any]:
    lat = np.array(worked["latencies"], dtype=np.int64)
    secs = (worked["last"] - sent["t0"]) / 1e9
    items = w.items()
    return {
        "items": items,
        "items_per_s": items / secs,
        "p50_ms": float(np.quantile(lat, 0.5, method="inverted_cdf")) / 1e6,
        "p99_ms": float(np.quantile(lat, 0.99, method="inverted_cdf")) / 1e6,
        "cpu_us_per_item": cpu_s / items * 1e6,
        "items_per_cpu_s": items / cpu_s,
        "copied_per_item": worked.get("copied", 0) / items,
        "registrations_per_item": rx["registrations"] / items,
        "engine_calls": rx["calls"],
        # Transfers: ours counts them (runs of tensors); the reference's
        # destinations are separate buffers, one transfer per tensor.
        "reads_per_item": rx.get("reads", items) / items,
    }


def render(ingress: list[dict], e2e: list[dict], quick: bool, window: int) -> str:
    load = os.getloadavg()
    lines = [
        START,
        "## Mooncake ingress (issue 23)",
        "",
        f"`python shmstream-py/bench/mooncake_bench.py{' --quick' if quick else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end (shared machine: "
        "other builds ran meanwhile). Mooncake `mooncake-transfer-engine-non-cuda` "
        "0.3.13.post1, TCP transport on loopback; sender and receiving processes on one host.",
        "",
        "### Ingress into slots against the engine's own read into a plain buffer",
        "",
        "The sender's tensors lie back to back in a 64 MiB pool (as `Sender(stream_bytes=...)` "
        "lays a stream out) and the announcements cycle through it. Plain: the engine reads "
        "the announced tensors, one entry each, with one `batch_transfer_sync_read` per "
        "batch (64 x 64 KiB, 8 x 2 MiB, 1 x 64 MiB) into a buffer registered once. Slots: "
        "`Receiver` with its defaults (asynchronous reads, 4 reader tasks per session) "
        "into a stream's slots, a worker process popping and releasing each tensor; "
        "`coalesce_bytes=0` reads each tensor with its own transfer, as the plain read "
        "does (**the comparison the goal is about**); the default (1 MiB) reads runs of "
        "contiguous tensors with one transfer. Medians of interleaved trials, both "
        "destinations prefaulted. CPU: user + system per tensor, of the receiving "
        "process (its engine threads included; the sync read spins while it waits), "
        "the worker from its first pop, and the sender's process.",
        "",
        "| tensor | tensors | plain GB/s | slots, no coalescing | ratio | slots, default "
        "| ratio | CPU us/tensor plain: receiver, sender | no coalescing: receiver, worker, "
        "sender | default: receiver, worker, sender |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ingress:
        size = f"{r['nbytes'] >> 10} KiB" if r["nbytes"] < 1 << 20 else f"{r['nbytes'] >> 20} MiB"
        p = r["plain_gbs"]

        def cpu(name: str, r: dict = r) -> str:
            who = ("recv", "sender") if name == "plain" else ("recv", "worker", "sender")
            return ", ".join(f"{r[f'{name}_{w}_us']:.0f}" for w in who)

        lines.append(
            f"| {size} | {r['count']} | {p:.2f} | {r['slots0_gbs']:.2f} | "
            f"{r['slots0_gbs'] / p:.2f}x | {r['slots_gbs']:.2f} | {r['slots_gbs'] / p:.2f}x | "
            f"{cpu('plain')} | {cpu('slots0')} | {cpu('slots')} |"
        )
    alone = [r for r in ingress if "alone0_gbs" in r]
    for r in alone:
        lines += [
            "",
            f"Without the worker process ({r['nbytes'] >> 10} KiB, no coalescing, no "
            f"consumer; the ring holds all {r['count']} tensors, "
            f"{r['count'] * r['nbytes'] >> 20} MiB, so unlike the 16 MiB ring above its "
            f"slots are never reused warm): {r['alone0_gbs']:.2f} GB/s "
            f"({r['alone0_gbs'] / r['plain_gbs']:.2f}x the plain read), receiver "
            f"{r['alone0_recv_us']:.0f} us/tensor, sender {r['alone0_sender_us']:.0f}.",
        ]
    lines += [
        "",
        "### The worker's receive path, end to end",
        "",
        "Per request a stream of 56 B codec frames (`LeftContextChunkPolicy(300, 25)`) "
        "and one of 64 KiB hidden states (`SlidingWindowChunkPolicy(28, 7)`), plus one "
        f"stream of 2 MiB hidden states; the sender keeps at most {window} tensors "
        "unacknowledged and lays each stream's tensors out back to back in its own "
        "part of its pool (`Sender(stream_bytes=...)`), so shmstream's receiver reads "
        "runs of them with one transfer (`coalesce_bytes`, 1 MiB). "
        "shmstream: receiver process (`Receiver`, hub streams) + "
        "worker process (`StreamSet`, chunks as torch tensors in place). Reference: "
        "one process, per tensor `torch.empty` + `register_memory` + "
        "`batch_transfer_sync_read` (same batching and thread pool) + "
        "`put(uuid, t.clone())`, `torch.stack` per chunk. CPU: the receiving "
        "processes' user + system time. Latency: the sender's announcement to the "
        "chunk in the worker, per chunk (its newest item).",
        "",
        "| N | items | path | items/s | p50 ms | p99 ms | CPU us/item | items per CPU-s "
        "| vs reference | engine transfers/item | bytes copied/item | registrations/item |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in e2e:
        ours, ref = row["ours"], row["reference"]
        for name, r in (("shmstream", ours), ("reference", ref)):
            vs = f"{ours['items_per_cpu_s'] / ref['items_per_cpu_s']:.2f}x" if r is ours else ""
            lines.append(
                f"| {row['n']} | {r['items']} | {name} | {r['items_per_s']:.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_us_per_item']:.0f} | "
                f"{r['items_per_cpu_s']:.0f} | {vs} | {r['reads_per_item']:.3f} | "
                f"{r['copied_per_item']:.0f} | "
                f"{r['registrations_per_item']:.4f} |"
            )
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="FILE")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-ingress", action="store_true")
    ap.add_argument("--requests", type=int, nargs="*", default=[16, 64, 256])
    ap.add_argument("--window", type=int, default=512, help="sender's unacknowledged tensors")
    ap.add_argument("--only", nargs="*", help="rows to run (e.g. 256 '56 B only')")
    ap.add_argument(
        "--shared-pool", action="store_true", help="one sender ring for all streams (no runs)"
    )
    args = ap.parse_args()
    global SHARED  # noqa: PLW0603 (a run-wide setting, read in run_ours/run_reference)
    SHARED = args.shared_pool
    ctx = mp.get_context("spawn")
    ingress = [] if args.skip_ingress else mooncake_ingress.run(args.quick)
    scale = 1 if args.quick else 2
    e2e = []
    workloads = [
        (str(n), wl.Workload(n, 325 * scale, 35 * scale, 35 * scale)) for n in args.requests
    ]
    # One size at a time: the goals are per size.
    workloads.append(("64, 56 B only", wl.Workload(64, 325 * scale, 0, 0)))
    workloads.append(("2 MiB only", wl.Workload(0, 0, 0, 140 * scale)))
    if args.only:
        workloads = [(n, w) for n, w in workloads if any(o in n for o in args.only)]
    for name, w in workloads:
        row = {
            "n": name,
            "ours": run_ours(ctx, w, args.window),
            "reference": run_reference(ctx, w, args.window),
        }
        print(name, row, file=sys.stderr, flush=True)
        e2e.append(row)
    text = render(ingress, e2e, args.quick, args.window)
    print(text)
    if args.write:
        write_section(Path(args.write), TAG, text)


if __name__ == "__main__":
    main()
