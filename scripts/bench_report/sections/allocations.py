"""7. Allocations per item on the hot path (`benches/allocations.rs`)."""

from ..doc import Doc
from ..logs import RunLogs


def write(doc: Doc, logs: RunLogs) -> None:
    w = doc.w
    w("## 7. Allocations per item on the hot path (`benches/allocations.rs`)")
    w()
    w("A counting global allocator; 1000 warm-up items, then 100 000 counted.")
    w()
    doc.header("path", "allocations", "items", "per item")
    rows = logs.allocations()
    for r in rows:
        per_item = "n/a" if r.items == 0 else f"{r.allocations / r.items:g}"
        doc.row(r.path, str(r.allocations), str(r.items), per_item)
    # Not judged without a row; missed by any path that allocates.
    ok = all(r.allocations == 0 for r in rows) if rows else None
    doc.goal("0 allocations per item on the hot path", ok, "see the table")
    w()
