"""The drop-in's per-item cost, ``pre_read_register`` + ``put`` of one
56-byte tensor, at 1, 1k, 10k and 100k outstanding registrations, side by
side in one run (issue 26, point 3):

    python shmstream-py/bench/per_item.py [--before SITE] [--quick]

- ``this build``: the installed ``shmstream``;
- ``before``: the package installed in SITE (``pip install --target SITE
  ./shmstream-py`` from a checkout of the commit to compare with), run in
  a child process with SITE first on its path;
- ``plain Python``: the reference's design (a dict by id), its worker's
  ``put(id, tensor.clone())`` and a bare ``put(id, tensor)``.

At ``k`` outstanding, ``k - 1`` ids stay registered and not put while each
measured pair registers and puts one more: the pending ids a look-up by id
must pass over. The figure is the median over rounds of each round's mean
(``--rounds`` rounds of ``--batch`` pairs); the ids are uuid strings.
Each cell is the least over ``--passes`` passes (children run in turn) of
its median. Also prints where the time goes for each build. Not run by
CI; about five minutes (the before build's linear scans take most of it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

OUTSTANDING = [1, 1_000, 10_000, 100_000]


def ids(n: int, salt: int) -> list[str]:
    return [
        str(uuid.UUID(int=(i + salt * 10**7) * 0x9E3779B97F4A7C15 % (1 << 128))) for i in range(n)
    ]


def make(kind: str):
    """A buffer of `kind` ("shmstream" or "plain") and the item for `like`."""
    if kind == "plain":
        return PlainBuffer()
    import shmstream

    return shmstream.StreamBuffer("bench", "e", "p", "fixed:size=1", capacity=131072, item_bytes=64)


class PlainBuffer:
    """The reference's bookkeeping: an order list and a dict by id."""

    def __init__(self) -> None:
        self._order: list[str] = []
        self._items: dict[str, object] = {}

    def pre_read_register(self, tensor_id: str) -> None:
        if tensor_id in self._items:
            raise KeyError(tensor_id)
        self._order.append(tensor_id)
        self._items[tensor_id] = None

    def put(self, tensor_id: str, item: object) -> None:
        self._items[tensor_id] = item


def per_pair(kind: str, like: str, k: int, batch: int, rounds: int, clone: bool) -> float:
    """Median (over rounds) ns per register + put with `k` outstanding."""
    import numpy as np
    import torch

    item = torch.arange(7) if like == "torch" else np.arange(7, dtype=np.int64)
    buf = make(kind)
    for name in ids(k - 1, salt=1):
        buf.pre_read_register(name)
    names = ids(batch * rounds, salt=2)
    reg, put = buf.pre_read_register, buf.put
    means = []
    for r in range(rounds):
        chunk = names[r * batch : (r + 1) * batch]
        if clone:
            t0 = time.perf_counter_ns()
            for name in chunk:
                reg(name)
                put(name, item.clone())
        else:
            t0 = time.perf_counter_ns()
            for name in chunk:
                reg(name)
                put(name, item)
        means.append((time.perf_counter_ns() - t0) / batch)
    return statistics.median(means)


def timed(f, n: int, reps: int = 5) -> float:
    """Median over `reps` of ns per call of `f` run `n` times (f(n) loops)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        f(n)
        out.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(out)


def breakdown(n: int) -> dict[str, float]:
    """Where a pair's time goes, by parts this build has (ns per call)."""
    import torch

    t = torch.arange(7)
    out: dict[str, float] = {}
    names = ids(n, salt=3)

    def loop(_n):
        for _ in names:
            pass

    def attrs(_n):
        for _ in names:
            t.dtype, t.is_cpu, t.is_contiguous(), t.shape, t.data_ptr()

    out["empty Python loop"] = timed(loop, n)
    out["torch reads (dtype, is_cpu, is_contiguous, shape, data_ptr) from Python"] = timed(attrs, n)
    from shmstream import _tensors

    def host(_n):
        for _ in names:
            _tensors.host_array(t)

    out["host_array(tensor) (the Python way)"] = timed(host, n)
    # Registered and put in turns of 100 ids: at most 100 outstanding.
    parts = {
        "StreamBuffer.pre_read_register": lambda b, name: b.pre_read_register(name),
        "StreamBuffer.put (torch)": lambda b, name: b.put(name, t),
        "native _Producer.pre_read_register alone": lambda b, name: b._p.pre_read_register(
            name, None
        ),
        "native _Producer._put_raw alone (fields given)": lambda b, name: b._p._put_raw(
            name, "i64", (7,), ptr, 56
        ),
    }
    ptr = t.data_ptr()
    for register, put in (list(parts)[:2], list(parts)[2:]):
        b = make("shmstream")
        spent = {register: 0, put: 0}
        reg, put_one = parts[register], parts[put]
        for k in range(0, n, 100):
            turn = names[k : k + 100]
            t0 = time.perf_counter_ns()
            for name in turn:
                reg(b, name)
            t1 = time.perf_counter_ns()
            for name in turn:
                put_one(b, name)
            spent[register] += t1 - t0
            spent[put] += time.perf_counter_ns() - t1
        for part in (register, put):
            out[part] = spent[part] / n
    out["of which the lambda's own call (a Python frame)"] = timed(
        lambda _n: [(lambda b, name: None)(None, x) for x in names], n
    )
    return out


def child(args: argparse.Namespace) -> None:
    rows = {}
    for like in ("torch", "numpy"):
        for k in OUTSTANDING:
            rows[f"{like} {k}"] = per_pair(args.kind, like, k, args.batch, args.rounds, False)
    if args.kind == "plain":
        for k in OUTSTANDING:
            rows[f"clone {k}"] = per_pair("plain", "torch", k, args.batch, args.rounds, True)
    result = {"rows": rows}
    if args.kind == "shmstream":
        result["breakdown"] = breakdown(args.batch * args.rounds)
    print(json.dumps(result))


def run_child(kind: str, site: str | None, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", kind, "--batch", str(args.batch)]
    cmd += ["--rounds", str(args.rounds)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def least(results: list) -> dict | None:
    """Each figure's least value over the passes' results."""
    if results[0] is None:
        return None
    out: dict = {}
    for key in results[0]:
        out[key] = {k: min(r[key][k] for r in results) for k in results[0][key]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", metavar="SITE", help="the before build's package directory")
    ap.add_argument("--quick", action="store_true", help="fewer pairs (a smoke run)")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--child", choices=["shmstream", "plain"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.batch, args.rounds, args.passes = 200, 3, 1
    if args.child:
        args.kind = args.child
        child(args)
        return
    # Passes in turn, each cell the least of its passes' medians: the
    # figure least disturbed by whatever else the machine runs.
    passes = []
    for _ in range(args.passes):
        passes.append(
            (
                run_child("shmstream", None, args),
                run_child("shmstream", args.before, args) if args.before else None,
                run_child("plain", None, args),
            )
        )
    after, before, plain = (least([p[i] for p in passes]) for i in range(3))
    load = os.getloadavg()[0]
    us = lambda ns: f"{ns / 1000:.2f}"  # noqa: E731
    print(
        f"load average at the end: {load:.1f} (2 cores); µs per register + put, "
        f"the least of {args.passes} passes' medians\n"
    )
    head = "| outstanding | this build, torch | this build, numpy |"
    line = "| ---: | ---: | ---: |"
    if before:
        head += " before, torch | before, numpy |"
        line += " ---: | ---: |"
    head += " plain Python put(clone) | plain Python put |"
    line += " ---: | ---: |"
    print(head)
    print(line)
    for k in OUTSTANDING:
        row = f"| {k:,} | {us(after['rows'][f'torch {k}'])} | {us(after['rows'][f'numpy {k}'])} |"
        if before:
            row += f" {us(before['rows'][f'torch {k}'])} | {us(before['rows'][f'numpy {k}'])} |"
        row += f" {us(plain['rows'][f'clone {k}'])} | {us(plain['rows'][f'torch {k}'])} |"
        print(row)
    for name, result in (("this build", after), ("before", before)):
        if not result:
            continue
        print(
            f"\nwhere the time goes, {name} "
            "(ns per call, in turns of 100 registrations and their puts):"
        )
        for part, ns in result["breakdown"].items():
            print(f"- {part}: {ns:.0f}")


if __name__ == "__main__":
    main()
