"""The goals every section judged, in one table, and the analysis of the
misses when there are any."""

from ..analysis import ANALYSIS
from ..doc import Doc
from ..fmt import verdict


def write(doc: Doc, leftover: str) -> None:
    w = doc.w
    w("## Goals")
    w()
    doc.header("goal", "result", "status")
    for g in doc.goals:
        doc.row(g.name, g.how, verdict(g.ok))
    w()
    w(f"Segments left in /dev/shm by the run: {leftover or 'none'}.")
    w()
    missed = [g.name for g in doc.goals if g.ok is False]
    w("## Why the misses (analysis with `perf record` on this machine)")
    w()
    if not missed:
        w("Every goal was met in this run.")
    else:
        w("Goals missed in this run: " + "; ".join(missed) + ".")
        w()
        w(ANALYSIS)
    w()
