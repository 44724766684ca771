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

        yield dropin_report, dropin_wake
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


TIME = re.compile(r"^\d+\.\d\d (µs|ms)$")


def test_quick_run_writes_every_row_between_the_markers(tmp_path: Path, bench_modules) -> None:
    _, wake = bench_modules
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# before\n\n{START}\nold\n{END}\n\n# after\n")
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, str(BENCH / "dropin.py"), "--quick", "--write", str(doc)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
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
    for variant in wake.VARIANTS:
        cells = _row(section, variant)
        assert TIME.match(cells[1]) and TIME.match(cells[2]), cells
        assert cells[3] == "12", ("every item of the quick run arrived", cells)
    for wait in ("`wait_any`", "`next_chunk`"):
        cells = _row(section, wait)
        assert re.match(r"^\d+\.\d\dx$", cells[1]) and cells[2] in ("met", "**missed**"), cells
    first, *then = wake.STEPS
    for label in (f"the put's start to {first}", *(f"then {step}" for step in then)):
        assert TIME.match(_row(section, label)[1]), label


def _results(set_py: int, set_rs: int) -> dict:
    import dropin_wake as w

    lat = {v: [10_000, 20_000, 30_000] for v in w.VARIANTS}
    lat[w.SET_PY] = [set_py] * 3
    lat[w.SET_RS] = [set_rs] * 3
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
            "latency_ns": lat,
            "steps_ns": {s: [5_000] for s in w.STEPS},
            "idle_s": 0.002,
            "rounds": 5,
            "per_round": 100,
        },
    }


def test_report_ratios_and_goal_from_fixed_numbers(bench_modules) -> None:
    report, wake = bench_modules
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
    assert _row(met, wake.SET_PY)[1:] == ["40.00 µs", "40.00 µs", "3", "2.00x"]
    assert _row(met, "`wait_any`")[1:] == ["2.00x", "met"]
    missed = report.render(_results(set_py=40_001, set_rs=20_000))
    assert _row(missed, "`wait_any`")[2] == "**missed**"


def test_write_section_appends_when_the_markers_are_absent(tmp_path: Path, bench_modules) -> None:
    report, _ = bench_modules
    doc = tmp_path / "b.md"
    doc.write_text("# title\n")
    report.write_section(doc, "body\n")
    assert doc.read_text() == f"# title\n\n{START}\nbody\n{END}\n"
    report.write_section(doc, "new\n")
    assert doc.read_text() == f"# title\n\n{START}\nnew\n{END}\n"
