"""The Markdown of ``dropin.py``'s run (tested with fixed numbers in
``shmstream-py/tests/test_dropin_bench.py``)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from dropin_costs import SIZES, WINDOWS
from dropin_wake import (
    BUF_PY,
    BUF_RS,
    DROPIN_THREADS,
    REF_THREADS,
    SET_PY,
    SET_RS,
    STEPS,
    VARIANTS,
)

START, END = "<!-- dropin-bench:start -->", "<!-- dropin-bench:end -->"
ITEM_PEERS = ("drop-in", "drop-in, sized", "reference", "reference + clone")
GOAL = 2.0  # issue 26: Python's wake-up p50 within 2x Rust's, same run


def us(ns: float | str | None) -> str:
    if ns is None:
        return "n/a"
    if isinstance(ns, str):
        return ns
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.2f} µs"


def ratio(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return f"{a / b:.2f}x"
    return "n/a"


def pct(xs: list[int], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return float(xs[min(len(xs) - 1, int(q * len(xs)))])


def p50(xs: list[int]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def render(r: dict[str, Any]) -> str:
    w = r["wake"]
    lat: dict[str, list[int]] = w["latency_ns"]
    load0, load1 = r["load_start"], r["load_end"]
    lines = [
        "## The drop-in against the reference's design (issue 26, `dropin.py`)",
        "",
        f"`python shmstream-py/bench/dropin.py{' --quick' if r['quick'] else ''} --write "
        f"docs/benchmarks.md`, {r['date']:%Y-%m-%d %H:%M} UTC, {r['cores']} cores, Python "
        f"{r['python']}, torch {r['torch']}; load average {load0[0]:.1f} at the start, "
        f"{load1[0]:.1f} at the end ({r['elapsed_s']:.0f} s"
        + (", quick: few samples" if r["quick"] else "")
        + "). The drop-in `StreamBuffer` is built with the reference's constructor "
        "arguments only; the reference's design is `dropin_ref.py` (plain Python: `put` "
        "into a dict by id, a deque of the registration order, `torch.stack` per chunk). "
        "Medians; peers interleaved trial by trial.",
        "",
        "### Per item: `pre_read_register` + `put`",
        "",
        "Batches of 256 items, drained between batches (not timed), after two "
        'untimed laps of the ring. "sized": the drop-in with the fixed-memory knobs '
        "(`item_bytes` = the tensor's size). \"+ clone\": the reference worker's "
        "`put(uuid, tensor.clone())` (the drop-in copies into its slot, so needs no clone).",
        "",
        "| tensor | drop-in | drop-in, sized | reference | reference + clone "
        "| drop-in / reference | drop-in / reference + clone |",
        "|---|---|---|---|---|---|---|",
    ]
    pi = r["per_item"]
    for _, label in SIZES:
        v = [pi.get((label, p)) for p in ITEM_PEERS]
        lines.append(
            f"| {label} | "
            + " | ".join(us(x) for x in v)
            + f" | {ratio(v[0], v[2])} | {ratio(v[0], v[3])} |"
        )
    lines += [
        "",
        '### Per chunk: `pop_chunk` + `chunk.data["data"]`',
        "",
        "Sliding window w, stride w/4, 56-byte items put before each pop (not timed); "
        "each chunk dropped before the next stride comes in. The drop-in's time includes "
        "its look at the stride's new items (their descriptors checked once each).",
        "",
        "| window | drop-in | reference (`torch.stack`) | reference / drop-in |",
        "|---|---|---|---|",
    ]
    pc = r["per_chunk"]
    for win in WINDOWS:
        a, b = pc.get((win, "drop-in")), pc.get((win, "reference"))
        lines.append(f"| {win} | {us(a)} | {us(b)} | {ratio(b, a)} |")
    rust_of = {SET_PY: SET_RS, BUF_PY: BUF_RS, DROPIN_THREADS: None, REF_THREADS: None}
    lines += [
        "",
        '### Wake-up: a `put` to the consumer holding `chunk.data["data"]`',
        "",
        f"One 56-byte tensor every {w['idle_s'] * 1e3:g} ms (the consumer is asleep "
        f"when it comes), {w['rounds']} round(s) of {w['per_round']} per row, the rows in "
        "turns. From just before the producer's `put` to the consumer holding the data "
        "(CLOCK_MONOTONIC in both processes). Across processes the producer is a Python "
        "process (`dropin_peer.py`: `Producer.put` of a 7 x i64 numpy array); the Rust consumer "
        "(`ipc-demo wake`) waits the same way on an identical producer's stream. Across "
        "threads: the drop-in's `put` in one thread and `next_chunk` in another, and the "
        "reference's design with a `threading.Condition` (the reference has no wait of "
        "its own; its worker polls). The reference has no cross-process analogue: its "
        "buffer lives in the consumer's process, and its tensors arrive there by RDMA.",
        "",
        "| consumer | p50 | p99 | samples | p50 / Rust's (same wait) |",
        "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        rust = rust_of.get(v)
        vs = ratio(p50(lat[v]), p50(lat[rust])) if rust else ""
        lines.append(
            f"| {v} | {us(p50(lat[v]))} | {us(pct(lat[v], 0.99))} | {len(lat[v])} | {vs} |"
        )
    lines += [
        "",
        f"Goal (issue 26): the Python consumer's p50 within {GOAL:g}x the Rust one's, same run:",
        "",
        "| wait | Python / Rust | status |",
        "|---|---|---|",
    ]
    for py, rs, name in ((SET_PY, SET_RS, "`wait_any`"), (BUF_PY, BUF_RS, "`next_chunk`")):
        a, b = p50(lat[py]), p50(lat[rs])
        met = a is not None and b is not None and a <= GOAL * b
        lines.append(f"| {name} | {ratio(a, b)} | {'met' if met else '**missed**'} |")
    steps = w["steps_ns"]
    lines += [
        "",
        "### Where the Python consumer's wake-up goes (`wait_any` row, p50 of each step)",
        "",
        "| step | p50 |",
        "|---|---|",
        f"| the Rust consumer holds the chunk (the core's wake-up, this producer) "
        f"| {us(p50(lat[SET_RS]))} |",
        f"| the put's start to {STEPS[0]} | {us(p50(steps[STEPS[0]]))} |",
        f"| then {STEPS[1]} | {us(p50(steps[STEPS[1]]))} |",
        f"| then {STEPS[2]} | {us(p50(steps[STEPS[2]]))} |",
        "",
    ]
    lines += NOTES
    return "\n".join(lines).rstrip() + "\n"


# What the run's numbers mean, from the investigation behind them (issue 26).
NOTES: list[str] = []


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    block = f"{START}\n{text}{END}"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        _, tail = rest.split(END, 1)
        new = head + block + tail
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)
