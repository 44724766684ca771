"""6. Shared memory for 56-byte tensors at window 28 (`benches/memory.rs`)."""

from ..doc import Doc
from ..logs import RunLogs


def write(doc: Doc, logs: RunLogs) -> None:
    w = doc.w
    w("## 6. Shared memory for 56-byte tensors at window 28 (`benches/memory.rs`)")
    w()
    w("A stream sized for a window of 28 codec frames (32 items, the smallest payload of one page), after")
    w("28,000 frames went through it; the segment's memory is reserved at create, so the file's allocated")
    w("bytes are what it touches. The first version's fixed 4 KiB slots are computed for comparison.")
    w()
    doc.header(
        "layout",
        "segment",
        "payload",
        "descriptors",
        "buffered (28 x 56 B)",
        "segment / buffered",
        "payload / buffered",
    )
    rows = logs.memory()
    for name, r in rows.items():
        doc.row(
            name,
            str(r.segment),
            str(r.payload),
            str(r.descriptors),
            str(r.buffered),
            _times(r.segment, r.buffered),
            _times(r.payload, r.buffered),
        )
    m = rows.get("byte_granular")
    if m is not None and m.buffered > 0:
        doc.goal(
            "issue 11: shared memory for 56 B items at window 28 within 2x the buffered bytes",
            m.segment <= 2 * m.buffered,
            f"segment {m.segment / m.buffered:.1f}x, payload alone {m.payload / m.buffered:.1f}x "
            f"(a page at least; descriptors {m.descriptors} B)",
        )
    w()


def _times(a: int, b: int) -> str:
    return "n/a" if b == 0 else f"{a / b:.1f}x"
