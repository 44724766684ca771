"""1. Ring throughput between two threads (`bench-peers/benches/ring_throughput.rs`)."""

from ..criterion import Criterion
from ..doc import Doc
from ..fmt import judge, ns, per, rate, ratio, within

# One criterion iteration moves this many records.
RECORDS = 65536
SIZES = ("8B", "56B")


def write(doc: Doc, crit: Criterion) -> None:
    w = doc.w
    w("## 1. Ring throughput, two threads (`bench-peers/benches/ring_throughput.rs`)")
    w()
    w("Producer thread to consumer thread, 1024-record queues; a side that finds the queue full or empty")
    w("spins 64 times, then yields (all peers alike; shmstream's `register` then sleeps). Time per record")
    w("(criterion's median batch of 65 536 records, divided).")
    w("shmstream: `register` + `write` (copy + commit), `poll` + `item` (read in place) + `consume`.")
    w()
    doc.header(
        "record",
        "shmstream",
        "rtrb",
        "crossbeam ArrayQueue",
        "shmstream / rtrb",
        "shmstream / ArrayQueue",
    )
    for size in SIZES:
        g = f"ring_throughput_{size}"
        s, r, a = (per(crit.median(g, bench), RECORDS) for bench in ("shmstream", "rtrb", "crossbeam_arrayqueue"))
        doc.row(
            size,
            f"{ns(s)} ({rate(s)})",
            f"{ns(r)} ({rate(r)})",
            f"{ns(a)} ({rate(a)})",
            ratio(s, r),
            ratio(s, a),
        )
        how = f"{ratio(s, r)} of rtrb's time per record"
        doc.goal(f"ring throughput {size}: at least as fast as rtrb", judge(s, r, within(1)), how)
        doc.goal(f"issue 14: ring throughput {size} one by one within 4x rtrb", judge(s, r, within(4)), how)
        if size == "56B":
            doc.goal("issue 24: ring throughput 56B one by one within 1.5x rtrb", judge(s, r, within(1.5)), how)
    w()
    w("Batch mode (issue 14): the producer hands over 64 records at a time. shmstream: one `put_many` of 64")
    w("`BatchItem`s (the round that fits reserved with one store of `registered`, a `seq` store per record, one")
    w("doorbell ring per round); rtrb: `write_chunk_uninit(64)` + `fill_from_iter`, its consumer `read_chunk` of")
    w("all there is. Consumers as above (shmstream's releases what it read with one store per look).")
    w()
    doc.header(
        "record",
        "shmstream `put_many` x64",
        "rtrb chunks of 64",
        "shmstream / rtrb chunks",
        "speed-up over shmstream one by one",
    )
    for size in SIZES:
        g = f"ring_throughput_{size}"
        s, r, one = (
            per(crit.median(g, bench), RECORDS) for bench in ("shmstream_batch64", "rtrb_chunk64", "shmstream")
        )
        doc.row(size, f"{ns(s)} ({rate(s)})", f"{ns(r)} ({rate(r)})", ratio(s, r), ratio(one, s))
        doc.goal(
            f"issue 14: ring throughput {size} in batches of 64 within 2x rtrb's chunked API",
            judge(s, r, within(2)),
            f"{ratio(s, r)} of rtrb's time per record",
        )
    w()
