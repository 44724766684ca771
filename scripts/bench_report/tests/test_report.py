"""The whole report: the file it writes, and its structure against the
repository's docs/benchmarks.md (the headings and every table's header and
first column, with every bench and log of a run present)."""

import re
from pathlib import Path

from bench_report.report import write

from .fixtures import estimate, report, tables

UCX = "<!-- ucx-bench:start -->\n## Network\n\n| a |\n|---|\n<!-- ucx-bench:end -->"
PY = "<!-- python-bench:start -->\n## Python\ntext\n<!-- python-bench:end -->"

# Every criterion bench the report reads: (group directory, bench directory).
BENCHES = [
    *[
        (f"ring_throughput_{size}", b)
        for size in ("8B", "56B")
        for b in ("shmstream", "rtrb", "crossbeam_arrayqueue", "shmstream_batch64", "rtrb_chunk64")
    ],
    *[("latency_64B", b) for b in ("floor", "shmstream", "unix_socket")],
    *[("stream_56B", b) for b in ("shmstream", "shmstream_batch64", "unix_socket", "bare_handoff", "memcpy")],
    *[("stream_64KiB", b) for b in ("shmstream", "unix_socket", "bare_handoff", "memcpy")],
    *[(f"stream_{s}", b) for s in ("2MiB", "64MiB") for b in ("shmstream", "bare_handoff", "memcpy")],
    *[("stream_mixed", b) for b in ("shmstream", "memcpy")],
    *[(g, str(w)) for g in ("pop_chunk", "pop_chunk_prepolled", "pop_chunk_runs") for w in (4, 28, 256, 1024)],
    *[("wakeup_64B", b) for b in ("futex_floor", "shmstream")],
    *[("wait_any_wakeup", b) for b in ("single_stream_next_chunk", "streams/1", "streams/64", "streams/1024")],
    *[("ready_k_of_n", f"k{k}/{n}") for k in (1, 16, 64) for n in (64, 1024)],
    ("stream_lifecycle", "create_announce_open_drain_remove"),
]


def full_run(tmp_path: Path) -> None:
    for i, (group, bench) in enumerate(BENCHES):
        estimate(tmp_path / "criterion", group, bench, 100.0 + i)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("full", "paced"):
        (run / f"futex-{name}.txt").write_text(" 90.0 0.1 10 35 futex\n 10.0 0.01 1 364 sched_yield\n")
        (run / f"futex-{name}.log").write_text("BENCH-RESULT futex-items 1000000 5\n")
    (run / "memory.log").write_text(
        "BENCH-RESULT memory byte_granular 16384 4096 6144 1568\n"
        "BENCH-RESULT memory fixed_slots 143360 131072 6144 1568\n"
    )
    (run / "allocations.log").write_text(
        "".join(
            f"BENCH-RESULT alloc {p} 0 100000\n"
            for p in (
                "in_process_consumer",
                "in_process_put_many_64",
                "shared_segment_consumer",
                "stream_buffer_pop_chunk_w28",
            )
        )
    )
    (run / "wait_any.log").write_text("BENCH-RESULT idle_cpu 1000 10000000000 2270000 1\n")
    for name in ("full-off", "full-on", "paced-off", "paced-on"):
        (run / f"e2e-{name}.log").write_text(
            "throughput     1000000 items/s, 0.056 GB/s over 1.000 s\n"
            "latency        p50 1.0 us  p99 2.0 us  p99.9 3.0 us  max 4.0 us  (commit to chunk, 9 items)\n"
        )


# Tables whose first column is a measured value, not a label.
VALUE_FIRST = ("shmstream `put_many` x64", "per stream")


def structure(text: str) -> list[str]:
    """Heading titles (without the parenthesised source) and each table's
    header and first column (its labels)."""
    heads = [re.sub(r" \(.*$", "", line) for line in text.splitlines() if line.startswith("#")]
    cols = [
        " | ".join(t.header) + " :: " + " / ".join("" if t.header[0] in VALUE_FIRST else r[0] for r in t.rows)
        for t in tables(text)
    ]
    return heads + cols


def test_the_report_has_the_structure_of_docs_benchmarks_md(tmp_path: Path) -> None:
    full_run(tmp_path)
    docs = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"
    committed = docs.read_text().split("<!-- ucx-bench:start -->")[0]
    assert structure(report(tmp_path).text()) == structure(committed)


def test_write_keeps_the_other_scripts_sections(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    write(path, "# Benchmarks\n\nnew\n")
    assert path.read_text() == "# Benchmarks\n\nnew\n"
    path.write_text(f"# Benchmarks\n\nold\n\n{PY}\n\n{UCX}\n")
    write(path, "# Benchmarks\n\nnew\n")
    # The network section first, then Python, each after a blank line.
    assert path.read_text() == f"# Benchmarks\n\nnew\n\n{UCX}\n\n{PY}\n"


def test_write_keeps_every_marked_section_in_the_tags_order(tmp_path: Path) -> None:
    tags = (
        "ucx-bench",
        "python-bench",
        "chunk-cost",
        "mooncake-bench",
        "dropin-bench",
        "dropin-worker",
        "dropin-per-item",
        "aio-bench",
    )
    blocks = {t: f"<!-- {t}:start -->\n## {t}\n<!-- {t}:end -->" for t in tags}
    path = tmp_path / "benchmarks.md"
    path.write_text("old\n\n" + "\n\n".join(blocks[t] for t in reversed(tags)) + "\n")
    write(path, "new\n")
    assert path.read_text() == "new\n" + "".join(f"\n{blocks[t]}\n" for t in tags)


def test_an_unclosed_marker_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(f"old\n<!-- ucx-bench:start -->\nhalf\n\n{PY}\n")
    write(path, "new\n")
    assert path.read_text() == f"new\n\n{PY}\n"


def test_write_keeps_the_asyncio_section(tmp_path: Path) -> None:
    aio = "<!-- aio-bench:start -->\n### asyncio\n<!-- aio-bench:end -->"
    path = tmp_path / "benchmarks.md"
    path.write_text(f"# Benchmarks\n\nold\n\n{aio}\n\n{PY}\n")
    write(path, "# Benchmarks\n\nnew\n")
    assert path.read_text() == f"# Benchmarks\n\nnew\n\n{PY}\n\n{aio}\n"


def test_write_keeps_the_python_per_chunk_cost_section(tmp_path: Path) -> None:
    # It was hand-written between two marked sections without markers of
    # its own, and the first report after it dropped it.
    cost = "<!-- chunk-cost:start -->\n### Python per-chunk cost\n<!-- chunk-cost:end -->"
    path = tmp_path / "benchmarks.md"
    path.write_text(f"# Benchmarks\n\nold\n\n{PY}\n\n{cost}\n")
    write(path, "# Benchmarks\n\nnew\n")
    assert path.read_text() == f"# Benchmarks\n\nnew\n\n{PY}\n\n{cost}\n"
