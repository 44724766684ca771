"""3. Cross-process streaming throughput (`cross_process/streaming/`, groups `stream/*`)."""

from ..criterion import Criterion
from ..doc import Doc
from ..fmt import judge, ns, per, rate, ratio, within
from .ring import RECORDS as RING_RECORDS

# (criterion's group suffix, bytes per record)
SIZES = (("56B", 56), ("64KiB", 65536), ("2MiB", 2 << 20), ("64MiB", 64 << 20))
MIXED_BYTES = 56 + (64 << 10) + (2 << 20) + (64 << 20)


def write(doc: Doc, crit: Criterion) -> None:
    _by_size(doc, crit)
    _mixed(doc, crit)
    _batch(doc, crit)


def _by_size(doc: Doc, crit: Criterion) -> None:
    w = doc.w
    w("## 3. Cross-process streaming throughput (`cross_process/streaming/`, `stream/*`)")
    w()
    w("The producer writes each tensor in place (one copy from a page-aligned source), the consumer")
    w("(`wait_for`, then `item`) reads every byte in place; the socket is buffered (64 KiB) on both sides;")
    w("memcpy is one copy of the same size in one process, page-aligned. Every size is registered with its")
    w("own size in the byte-granular payload (2 MiB and 64 MiB: 16 and 4 tensors of payload; no socket run).")
    w()
    w("The bare handoff is the floor of a cross-process transfer (issue 14): the producer copies each record")
    w("into the next of as many shared buffers as shmstream's payload holds and publishes a counter, the")
    w("consumer reads the bytes and publishes its counter once per batch; each side reloads the other's")
    w("counter only when its cached copy says full or empty; no descriptor, no checks, no sleeping.")
    w()
    w("Ratios are of throughput: shmstream's over the peer's (above 1: shmstream moves more).")
    w()
    doc.header(
        "size",
        "shmstream",
        "bare handoff",
        "Unix socket",
        "memcpy",
        "vs handoff",
        "vs memcpy",
        "vs socket",
    )
    for label, size in SIZES:
        g = f"stream_{label}"
        s, k, m = crit.median(g, "shmstream"), crit.median(g, "unix_socket"), crit.median(g, "memcpy")
        h = crit.median(g, "bare_handoff")
        # Throughput ratios: the peer's time over shmstream's.
        fh, fm, fk = ratio(h, s), ratio(m, s), ratio(k, s)
        if label == "64KiB":
            doc.goal(
                "issue 14: 64 KiB streaming at 0.9x the bare handoff or better",
                judge(s, h, lambda s, h: h / s >= 0.9),
                f"{fh} of the handoff's throughput",
            )
        if label == "56B":
            doc.goal(
                "issue 14: 56 B streaming at 1x the buffered socket or better",
                judge(s, k, lambda s, k: k / s >= 1.0),
                _bare_na(fk, "of the socket's items/s"),
            )
        if label in ("2MiB", "64MiB"):
            doc.goal(
                f"{label} streaming at 0.8x memcpy or better (issue 11)",
                judge(s, m, lambda s, m: m / s >= 0.8),
                _bare_na(fm, "of memcpy's throughput"),
            )
        doc.row(
            label,
            f"{ns(s)} ({rate(s, size)})",
            f"{ns(h)} ({rate(h, size)})",
            f"{ns(k)} ({rate(k, size)})",
            f"{ns(m)} ({rate(m, size)})",
            fh,
            fm,
            fk,
        )
        if label == "64KiB":
            doc.goal(
                "64 KiB streaming at 0.8x memcpy or better",
                judge(s, m, lambda s, m: m / s >= 0.8),
                f"{fm} of memcpy's throughput",
            )
            doc.goal(
                "64 KiB streaming at 10x the socket",
                judge(s, k, lambda s, k: k / s >= 10),
                f"{fk} of the socket's throughput",
            )
    w()


def _mixed(doc: Doc, crit: Criterion) -> None:
    w = doc.w
    s, m = crit.median("stream_mixed", "shmstream"), crit.median("stream_mixed", "memcpy")
    fm = ratio(m, s)
    w("Mixed sizes in one stream (issue 11): each record is a 56 B, a 64 KiB, a 2 MiB and a 64 MiB tensor in")
    w("turn, each registered with its own size in one stream (4 items, 256 MiB of payload); memcpy copies the")
    w("same four tensors in one process.")
    w()
    doc.header("record", "shmstream", "memcpy", "vs memcpy")
    doc.row(
        "56 B + 64 KiB + 2 MiB + 64 MiB",
        f"{ns(s)} ({rate(s, MIXED_BYTES)})",
        f"{ns(m)} ({rate(m, MIXED_BYTES)})",
        fm,
    )
    doc.goal(
        "mixed sizes in one stream at 0.8x memcpy or better (issue 11)",
        judge(s, m, lambda s, m: m / s >= 0.8),
        f"{fm} of memcpy's throughput",
    )
    w()


def _batch(doc: Doc, crit: Criterion) -> None:
    w = doc.w
    b, s1, k1, h1 = (
        crit.median("stream_56B", n) for n in ("shmstream_batch64", "shmstream", "unix_socket", "bare_handoff")
    )
    w("Batch mode (issue 14), 56-byte tensors: the producer publishes 64 tensors per `put_many` (each registered")
    w("with its size, copied, committed; one doorbell ring per batch); the consumer is the same. Items per second;")
    w("ratios of throughput (above 1: shmstream moves more).")
    w()
    doc.header(
        "shmstream `put_many` x64",
        "one by one",
        "Unix socket",
        "bare handoff",
        "vs one by one",
        "vs socket",
        "vs handoff",
    )
    doc.row(
        f"{ns(b)} ({rate(b)})",
        f"{ns(s1)} ({rate(s1)})",
        f"{ns(k1)} ({rate(k1)})",
        f"{ns(h1)} ({rate(h1)})",
        ratio(s1, b),
        ratio(k1, b),
        ratio(h1, b),
    )
    doc.goal(
        "issue 14: 56 B streaming in batch mode at 20 M items/s or more",
        None if b is None else 1e9 / b >= 20e6,
        "n/a" if b is None else f"{1e3 / b:.1f} M items/s",
    )
    doc.goal(
        "issue 14: 56 B streaming in batch mode at 1x the buffered socket or better",
        judge(b, k1, lambda b, k1: k1 / b >= 1.0),
        f"{ratio(k1, b)} of the socket's items/s",
    )
    # rtrb's chunked API between two threads (section 1) is the per-item
    # floor issue 24 sets for the cross-process batch.
    r = per(crit.median("ring_throughput_56B", "rtrb_chunk64"), RING_RECORDS)
    doc.goal(
        "issue 24: 56 B cross-process in batch mode within 2x rtrb's chunked API per item",
        judge(b, r, within(2)),
        f"{ratio(b, r)} of rtrb's time per record (section 1)",
    )
    w()


def _bare_na(value: str, what: str) -> str:
    """`value what`, or a bare "n/a" (as these goals have always read)."""
    return value if value == "n/a" else f"{value} {what}"
