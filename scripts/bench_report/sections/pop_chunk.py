"""4. `pop_chunk` cost against the window (`benches/pop_chunk.rs`)."""

from ..criterion import Criterion
from ..doc import Doc
from ..fmt import judge, ns, per, ratio, within

WINDOWS = (4, 28, 256, 1024)


def write(doc: Doc, crit: Criterion) -> None:
    w = doc.w
    w("## 4. `pop_chunk` cost vs window size (`benches/pop_chunk.rs`)")
    w()
    w(
        "One shared segment of 16384 items of 64 bytes (a 1 MiB payload) in one process, U64 items, "
        "`Fixed` policy. Timed: `pop_chunk`,"
    )
    w("`stacked()`, reading the view, dropping the chunk. `with poll`: the pop also scans the window's")
    w("newly committed descriptors (as a live consumer does once per item); `pre-polled`: scanned before the clock;")
    w("`runs, with poll`: as `with poll`, the ring refilled by one `put_many` per refill, so the items land as")
    w("descriptor runs (issue 24) and the scan checks one descriptor per run, not one per item.")
    w()
    doc.header("window", "with poll", "per item", "pre-polled", "per item", "runs, with poll", "per item")
    for win in WINDOWS:
        a, b, r = (crit.median(g, str(win)) for g in ("pop_chunk", "pop_chunk_prepolled", "pop_chunk_runs"))
        doc.row(str(win), ns(a), ns(per(a, win)), ns(b), ns(per(b, win)), ns(r), ns(per(r, win)))
    for name, g in (("with poll", "pop_chunk"), ("pre-polled", "pop_chunk_prepolled")):
        a, b = crit.median(g, "4"), crit.median(g, "1024")
        doc.goal(
            f"pop_chunk flat ({name}): window 1024 within 1.2x of window 4",
            judge(b, a, within(1.2)),
            f"1024 costs {ratio(b, a)} of 4",
        )
    a, b = crit.median("pop_chunk_runs", "4"), crit.median("pop_chunk_runs", "1024")
    doc.goal(
        "issue 24: pop_chunk flat for same-shaped runs (with poll): window 1024 within 2x of window 4",
        judge(b, a, within(2)),
        f"1024 costs {ratio(b, a)} of 4",
    )
    w()
