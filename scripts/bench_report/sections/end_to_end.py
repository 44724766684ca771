"""9. The demo end to end, 56-byte items with and without batching (issue 24)."""

from ..doc import Doc
from ..logs import RunLogs

# (log name, the run: its pace and its batching)
RUNS = (
    ("full-off", "full speed, batching off"),
    ("full-on", "full speed, batching 64"),
    ("paced-off", "1 M items/s, batching off"),
    ("paced-on", "1 M items/s, batching 64"),
)


def _us(v: float) -> str:
    return f"{v:.1f} µs"


def write(doc: Doc, logs: RunLogs) -> None:
    w = doc.w
    w("## 9. End to end: `ipc-demo run`, 56-byte items (issue 24)")
    w()
    w("Two processes, 1 000 000 items of i64[7], the demo's defaults (ring of 1024, `sliding:window=28,stride=7`,")
    w("commits out of order within groups of 8); `--batching 64` turns on adaptive batching on the producer.")
    w("Latency: commit to the consumer holding the chunk, timed once both sides are attached. At full speed,")
    w("a producer ahead of its consumer keeps the ring full, and the latency is the time an item waits in it;")
    w("paced (`--rate 1000000`), it is the hand-over plus an item's wait for the last item of its chunk (a chunk")
    w("every 7 items: up to 7 µs at this pace).")
    w()
    doc.header("run", "items/s", "p50", "p99", "p99.9")
    for name, label in RUNS:
        r = logs.demo(name)
        if r is None:
            doc.row(label, "n/a", "n/a", "n/a", "n/a")
        else:
            doc.row(label, f"{r.items_per_s / 1e6:.2f} M", _us(r.p50_us), _us(r.p99_us), _us(r.p999_us))
    w()
