"""The drop-in benchmark (``shmstream-py/bench/dropin.py``, issue 26) runs
as one command and writes every row it promises: its ``--quick`` run into a
copy of a document with the markers, and its report from fixed numbers.
No timing is asserted: the numbers are the machine's."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "shmstream-py" / "bench"
START, END = "<!-- dropin-bench:start -->", "<!-- dropin-bench:end -->"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import dropin_report
        import dropin_wake
        import sections

        yield dropin_report, dropin_wake, sections
    finally:
        sys.path.remove(str(BENCH))


def _section(text: str) -> str:
    assert START in text and END in text, "the markers are gone"
    return text.split(START, 1)[1].split(END, 1)[0]


def _row(section: str, first_cell: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{section}")


def _rows(section: str, header: str) -> dict[tuple[str, str], list[str]]:
    """The table whose first header cell is ``header``: its rows by their
    first two cells."""
    out: dict[tuple[str, str], list[str]] = {}
    inside = False
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == header:
            inside = True
        elif inside and not line.startswith("|"):
            break
        elif inside and not cells[0].startswith("---"):
            out[(cells[0], cells[1])] = cells[2:]
    return out


TIME = re.compile(r"^\d+\.\d\d (µs|ms)$")


def test_quick_run_writes_every_row_between_the_markers(tmp_path: Path, bench_modules) -> None:
    _, wake, _ = bench_modules
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# before\n\n{START}\nold\n{END}\n\n# after\n")
    env = dict(os.environ)
    shm_before = set(os.listdir("/dev/shm"))
    r = subprocess.run(
        [sys.executable, str(BENCH / "dropin.py"), "--quick", "--write", str(doc)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    left = {n for n in set(os.listdir("/dev/shm")) - shm_before if n.startswith("sstbench-")}
    assert not left, left
    text = doc.read_text()
    assert text.startswith("# before\n\n") and text.endswith(f"{END}\n\n# after\n")
    section = _section(text)
    assert "\nold\n" not in section
    for size in ("56 B", "64 KiB"):
        cells = _row(section, size)
        # drop-in, sized, reference, reference + clone: a time or the error.
        for cell in cells[1:5]:
            assert TIME.match(cell) or cell.startswith("fails: "), (size, cell)
        for cell in cells[3:5]:
            assert TIME.match(cell), ("the reference's design always runs", size, cell)
    for window in ("4", "64", "1024"):
        cells = _row(section, window)
        assert TIME.match(cells[1]) or cells[1].startswith("fails: "), cells
        assert TIME.match(cells[2]), cells
    rows = _rows(section, "producer")
    for producer, wait, consumer in wake.CROSS:
        cells = rows[(producer, f"{consumer}: {wake.CONSUMER_CALL[(wait, consumer)]}")]
        assert TIME.match(cells[0]) and TIME.match(cells[1]), cells
        assert cells[2] == "12", ("every item of the quick run arrived", cells)
        assert (consumer == "Rust") == (cells[3] == "") == (cells[4] == ""), cells
    for label in wake.BUSY:
        call = wake.CONSUMER_CALL[("buffer", "Python")]
        cells = rows[("Rust", f"Python: {call}, {label}")]
        assert TIME.match(cells[0]) and cells[2] == "12", cells
    for label in wake.THREADS:
        who, what = label.split(": ", 1)
        cells = rows[(f"{who}, threads", what)]
        assert TIME.match(cells[0]) and cells[2] == "12", cells
    goals = _rows(section, "wait")
    assert len(goals) == 6, goals
    for cells in goals.values():
        assert re.match(r"^\d+\.\d\dx$", cells[0]) and cells[1] in ("met", "**missed**"), cells
    first, *then = wake.STEPS
    for label in (f"the put's start to {first}", *(f"then {step}" for step in then)):
        cells = _row(section, label)
        assert TIME.match(cells[1]) and TIME.match(cells[2]), cells


def test_a_peer_that_does_not_start_fails_the_run_and_leaves_no_segment(tmp_path: Path) -> None:
    env = dict(os.environ, SHMSTREAM_IPC_DEMO="/bin/false")
    shm_before = set(os.listdir("/dev/shm"))
    r = subprocess.run(
        [sys.executable, str(BENCH / "dropin.py"), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode != 0
    assert "ipc-demo wake --role set" in r.stderr and "did not start" in r.stderr, r.stderr[-2000:]
    left = {n for n in set(os.listdir("/dev/shm")) - shm_before if n.startswith("sstbench-")}
    assert not left, left


def _results(set_py: int, set_rs: int) -> dict:
    import dropin_wake as w

    cross = {v: [10_000, 20_000, 30_000] for v in w.CROSS}
    cross[("Rust", "set", "Python")] = [set_py] * 3
    cross[("Rust", "set", "Rust")] = [set_rs] * 3
    return {
        "date": datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc),
        "cores": 2,
        "python": "3.11",
        "torch": "2",
        "load_start": (1.0, 1.0, 1.0),
        "load_end": (2.0, 2.0, 2.0),
        "elapsed_s": 60.0,
        "quick": False,
        "per_item": {
            ("56 B", "drop-in"): 600.0,
            ("56 B", "drop-in, sized"): 500.0,
            ("56 B", "reference"): 200.0,
            ("56 B", "reference + clone"): 1200.0,
            ("64 KiB", "drop-in"): "fails: BadTensor (too big)",
            ("64 KiB", "drop-in, sized"): 5000.0,
            ("64 KiB", "reference"): 200.0,
            ("64 KiB", "reference + clone"): 10000.0,
        },
        "per_chunk": {
            (4, "drop-in"): 1000.0,
            (4, "reference"): 3000.0,
            (64, "drop-in"): 1000.0,
            (64, "reference"): 10000.0,
            (1024, "drop-in"): 2000.0,
            (1024, "reference"): 200000.0,
        },
        "wake": {
            "cross": cross,
            "threads": {t: [5_000] for t in w.THREADS},
            "gil": {b: [5_000_000] for b in w.BUSY},
            "cpu_per_item_ns": {v: 50_000.0 for v in w.CROSS if v[2] == "Python"},
            "steps": {p: {s: [5_000] for s in w.STEPS} for p in w.PRODUCERS},
            "idle_s": 0.002,
            "rounds": 5,
            "per_round": 100,
        },
    }


def test_report_ratios_and_goal_from_fixed_numbers(bench_modules) -> None:
    report, wake, _ = bench_modules
    met = report.render(_results(set_py=40_000, set_rs=20_000))
    assert _row(met, "56 B")[1:] == [
        "0.60 µs",
        "0.50 µs",
        "0.20 µs",
        "1.20 µs",
        "3.00x",
        "0.50x",
    ]
    assert _row(met, "64 KiB")[1] == "fails: BadTensor (too big)"
    assert _row(met, "64 KiB")[5] == "n/a"
    assert _row(met, "1024")[1:] == ["2.00 µs", "200.00 µs", "100.00x"]
    call = wake.CONSUMER_CALL[("set", "Python")]
    assert _rows(met, "producer")[("Rust", f"Python: {call}")] == [
        "40.00 µs",
        "40.00 µs",
        "3",
        "2.00x",
        "50.00 µs",
    ]
    pair = ("`wait_any`", "Rust producer, Python vs Rust consumer")
    assert _rows(met, "wait")[pair] == ["2.00x", "met"]
    assert _rows(met, "wait")[("`wait_any`", "all Python vs all Rust")] == ["1.00x", "met"]
    missed = report.render(_results(set_py=40_001, set_rs=20_000))
    assert _rows(missed, "wait")[pair] == ["2.00x", "**missed**"]


def test_write_section_appends_when_the_markers_are_absent(tmp_path: Path, bench_modules) -> None:
    report, _, sections = bench_modules
    doc = tmp_path / "b.md"
    doc.write_text("# title\n")
    sections.write_section(doc, report.TAG, "body\n")
    assert doc.read_text() == f"# title\n\n{START}\nbody\n{END}\n"
    sections.write_section(doc, report.TAG, "new\n")
    assert doc.read_text() == f"# title\n\n{START}\nnew\n{END}\n"
