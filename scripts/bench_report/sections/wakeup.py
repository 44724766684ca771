"""5. Wake-up latency (`cross_process/wakeup.rs`, group `wakeup_64B`) and the
futex calls of a streaming run under strace (role `futex-count`)."""

from ..criterion import Criterion
from ..doc import Doc
from ..fmt import ns, ratio
from ..logs import RunLogs

# (log name, what the run did)
FUTEX_RUNS = (("full", "full speed, 56-byte tensors"), ("paced", "one 56-byte tensor per 5 µs"))


def write(doc: Doc, crit: Criterion, logs: RunLogs, futex_tool: str) -> None:
    w = doc.w
    w("## 5. Wake-up latency and futex calls (`cross_process/wakeup.rs`, `wakeup_64B`, role `futex-count`)")
    w()
    t = crit.median("wakeup_64B", "shmstream")
    f0 = crit.median("wakeup_64B", "futex_floor")
    w("Wake-up latency: the receiver has been asleep for 2 ms, then one 64-byte tensor is sent; from just")
    w("before `register` to the consumer's return from `wait_for` (CLOCK_MONOTONIC in both processes).")
    w("Floor: a bare shared futex between the same two processes (store + FUTEX_WAKE, FUTEX_WAIT).")
    w()
    doc.header("peer", "wake-up latency", "vs floor")
    doc.row("futex floor", ns(f0), "")
    doc.row("shmstream", ns(t), ratio(t, f0))
    w()
    w(f"- System calls counted with `{futex_tool}` over both processes (setup and teardown included):")
    w()
    doc.header("run", "items", "futex calls", "per million items", "sched_yield calls", "per million")
    full = None
    for name, what in FUTEX_RUNS:
        r = logs.futex(name)
        if r is None:
            doc.row(what, *["n/a"] * 5)
            continue
        per_million = r.futex * 1e6 / r.items
        if name == "full":
            full = per_million
        doc.row(
            what,
            str(r.items),
            str(r.futex),
            f"{per_million:.0f}",
            str(r.sched_yield),
            f"{r.sched_yield * 1e6 / r.items:.0f}",
        )
    doc.goal(
        "at most 100 futex calls per million items (consumer keeping up, full speed)",
        None if full is None else full <= 100,
        "n/a" if full is None else f"{full:.0f} per million",
    )
    w()
