"""The Python per-chunk cost (issue 24): ``pop_chunk`` + ``chunk.data["data"]``
as torch and as numpy, at windows 1..1024, against the floors of the view
calls alone (``torch._C._from_dlpack`` of a capsule made beforehand;
``numpy.from_dlpack`` of a held view).

    python shmstream-py/bench/chunk_cost.py              # one run, a table
    python shmstream-py/bench/chunk_cost.py --json       # one run, JSON lines
    python shmstream-py/bench/chunk_cost.py --compare DIR --runs 5

``--compare DIR`` runs this script in turns with ``PYTHONPATH=DIR`` (another
build of the package installed there: ``pip install --target DIR``) and
without, and prints the medians of the runs' medians side by side with the
ratios. Each chunk is timed alone (``measure.bench_chunks``' way); a
variant's data cost is its median less the ``pop`` median of the same run.
Not run by CI; about 20 s per run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Callable

WINDOWS = [1, 4, 28, 256, 1024]
VARIANTS = ["pop", "torch", "numpy", "numpy.from_dlpack", "torch apart", "numpy apart"]
FLOORS = ["torch capsule", "numpy.from_dlpack(view)"]


def one_run(quick: bool) -> dict[str, float]:
    import measure
    import numpy as np
    import shmstream as s
    import shmstream._collate as col
    import torch

    now = measure.now
    overhead = measure.timer_overhead()
    col.torch_module()
    with_torch = col._torch
    out: dict[str, float] = {}
    target = 300 if quick else 1500
    for window in WINDOWS:
        stride = max(1, window // 4)
        sb = s.StreamBuffer(
            "bench",
            f"cost{window}",
            "py",
            s.SlidingWindowChunkPolicy(window, stride),
            capacity=measure.CAP,
            item_bytes=56,
            payload_bytes=measure.CAP * 64,
        )
        fill = measure.filler(sb, window, stride)
        pop = sb.pop_chunk
        np_from_dlpack = np.from_dlpack
        ts: dict[str, list[int]] = {v: [] for v in VARIANTS}
        # The variants in turns, a refill each, so that drift hits them alike.
        while min(len(t) for t in ts.values()) < target:
            for v in VARIANTS:
                k = min(fill(), 200) - 1
                col._torch = None if v.startswith("numpy") else with_torch
                gc.collect()
                c = pop()  # cold after the refill: not timed
                del c
                acc = ts[v]
                x: Any = None
                if v == "pop":
                    for _ in range(k):
                        t = now()
                        c = pop()
                        acc.append(now() - t)
                elif v == "numpy.from_dlpack":
                    for _ in range(k):
                        t = now()
                        c = pop()
                        x = np_from_dlpack(c)
                        acc.append(now() - t)
                elif v.endswith("apart"):
                    # the data alone: the pop timed apart (and not counted)
                    for _ in range(k):
                        c = pop()
                        t = now()
                        x = c.data["data"]
                        acc.append(now() - t)
                else:
                    for _ in range(k):
                        t = now()
                        c = pop()
                        x = c.data["data"]
                        acc.append(now() - t)
                kind = np.ndarray if v.startswith("numpy") else torch.Tensor
                assert x is None or (
                    isinstance(x, kind) and x.shape[0] == (7 if window == 1 else window)
                ), v
                del c, x
        col._torch = with_torch
        fill()
        for v in VARIANTS:
            out[f"{window} {v}"] = statistics.median(ts[v]) - overhead
        out.update(floors(sb, window, overhead, target))
    return out


def floors(sb: Any, window: int, overhead: float, target: int) -> dict[str, float]:
    """The view calls alone on a held chunk of this window: the conversion of
    a capsule made beforehand (torch's share of any ``torch.from_dlpack``),
    and ``numpy.from_dlpack`` of a held view."""
    import measure
    import numpy as np
    import torch

    now = measure.now
    chunk = sb.pop_chunk()
    view = chunk.item(0) if window == 1 else chunk.stacked()
    convert = torch._C._from_dlpack
    caps = [view.__dlpack__(max_version=(1, 0)) for _ in range(target)]
    ts: dict[str, list[int]] = {k: [] for k in FLOORS}
    x: Any = None
    gc.collect()
    for cap in caps:
        t = now()
        x = convert(cap)
        ts["torch capsule"].append(now() - t)
    del caps, x
    np_from_dlpack = np.from_dlpack
    calls: dict[str, Callable[[], Any]] = {"numpy.from_dlpack(view)": lambda: np_from_dlpack(view)}
    for name, call in calls.items():
        for _ in range(target):
            t = now()
            call()
            ts[name].append(now() - t)
    return {f"{window} {k}": statistics.median(v) - overhead for k, v in ts.items()}


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    """Medians over runs, per label (``before``/``after``) side by side."""
    labels = list(runs)
    med = {lab: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for lab, rs in runs.items()}
    lines = []
    head = ["window", "quantity"] + labels
    if len(labels) == 2:
        head.append(f"{labels[1]} / {labels[0]}")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for w in WINDOWS:
        rows: list[tuple[str, Callable[[dict[str, float]], float]]] = [
            ("pop_chunk alone", lambda m, w=w: m[f"{w} pop"]),
            ('pop + data["data"] (torch)', lambda m, w=w: m[f"{w} torch"]),
            ('pop + data["data"] (numpy)', lambda m, w=w: m[f"{w} numpy"]),
            ("pop + numpy.from_dlpack(chunk)", lambda m, w=w: m[f"{w} numpy.from_dlpack"]),
            ("torch: data less pop", lambda m, w=w: m[f"{w} torch"] - m[f"{w} pop"]),
            ("numpy: data less pop", lambda m, w=w: m[f"{w} numpy"] - m[f"{w} pop"]),
            ('torch: data["data"] timed alone', lambda m, w=w: m[f"{w} torch apart"]),
            ('numpy: data["data"] timed alone', lambda m, w=w: m[f"{w} numpy apart"]),
            ("floor: torch._C._from_dlpack(ready capsule)", lambda m, w=w: m[f"{w} torch capsule"]),
            ("torch data less pop / floor", None),  # type: ignore[list-item]
            ("torch data timed alone / floor", None),  # type: ignore[list-item]
        ]
        for name, f in rows:
            if f is None:
                m = med
                if "alone" in name:
                    vals = [
                        m[lab][f"{w} torch apart"] / m[lab][f"{w} torch capsule"] for lab in labels
                    ]
                else:
                    vals = [
                        (m[lab][f"{w} torch"] - m[lab][f"{w} pop"]) / m[lab][f"{w} torch capsule"]
                        for lab in labels
                    ]
                cells = [f"{v:.2f}x" for v in vals]
                if len(labels) == 2:
                    cells.append("")
            else:
                vals = [f(med[lab]) for lab in labels]
                cells = [f"{v:.0f} ns" for v in vals]
                if len(labels) == 2:
                    cells.append(f"{vals[1] / vals[0]:.2f}x")
            lines.append(f"| {w} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one run's medians as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer chunks (a smoke run)")
    ap.add_argument("--compare", metavar="DIR", help="runs in turns: PYTHONPATH=DIR, then not")
    ap.add_argument("--runs", type=int, default=5, help="runs per side with --compare")
    args = ap.parse_args()
    if not args.compare:
        r = one_run(args.quick)
        print(json.dumps(r) if args.json else table({"this build": [r]}))
        return
    here = os.path.dirname(os.path.abspath(__file__))
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    cmd = [sys.executable, os.path.abspath(__file__), "--json"] + (
        ["--quick"] if args.quick else []
    )
    loads = [os.getloadavg()[0]]
    for i in range(args.runs):
        for lab in ("before", "after") if i % 2 == 0 else ("after", "before"):
            env = dict(os.environ)
            path = [args.compare] if lab == "before" else []
            env["PYTHONPATH"] = os.pathsep.join(path + [here])
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[lab].append(json.loads(done.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
            print(f"run {i + 1} {lab} done", file=sys.stderr)
    print(table(runs))
    lo, hi = min(loads), max(loads)
    print(f"\n{args.runs} runs per side, in turns; load average (1 min) {lo:.2f}..{hi:.2f}")


if __name__ == "__main__":
    main()
