"""Small criterion trees and run logs written into a test's tmp_path, and a
reader of the report's Markdown tables."""

import json
from dataclasses import dataclass
from pathlib import Path

from bench_report.criterion import Criterion
from bench_report.doc import Doc
from bench_report.logs import RunLogs
from bench_report.report import render
from bench_report.run_info import RunInfo


def estimate(root: Path, group: str, bench: str, median_ns: float) -> None:
    """What criterion leaves for one bench (only the median is read)."""
    d = root / group / bench / "new"
    d.mkdir(parents=True, exist_ok=True)
    body = {"mean": {"point_estimate": median_ns * 3}, "median": {"point_estimate": median_ns}}
    (d / "estimates.json").write_text(json.dumps(body))


def run_info(**changes: object) -> RunInfo:
    fields: dict[str, object] = {
        "date": "2026-12-06 21:00 UTC",
        "cores": "2",
        "model": "Test CPU",
        "kernel": "6.0.0",
        "rustc": "rustc 1.95.0",
        "quick": True,
        "args": "--quick",
        "iceoryx2_note": "not built (--no-iceoryx2)",
        "load": "0.50 0.40 0.30",
        "futex_tool": "strace -f -c",
        "leftover": "",
    }
    fields.update(changes)
    return RunInfo(**fields)  # type: ignore[arg-type]


def report(tmp_path: Path, **run: object) -> Doc:
    """The report over the tree under tmp_path/criterion and the logs in tmp_path/run."""
    (tmp_path / "run").mkdir(exist_ok=True)
    return render(Criterion(tmp_path / "criterion"), RunLogs(tmp_path / "run"), run_info(**run))


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    def row(self, first: str) -> list[str]:
        """The row whose first cell is `first`."""
        found = [r for r in self.rows if r[0] == first]
        assert len(found) == 1, f"{len(found)} rows start with {first!r} in {self.rows}"
        return found[0]

    def cell(self, first: str, column: str) -> str:
        """The cell of the row `first` under the (unique) header `column`."""
        assert self.header.count(column) == 1, f"{column!r} in {self.header}"
        return self.row(first)[self.header.index(column)]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text: str) -> list[Table]:
    """Every Markdown table of `text`, in order."""
    out: list[Table] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = cells(lines[i])
            i += 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append(Table(header, rows))
        else:
            i += 1
    return out


def table(text: str, *header: str) -> Table:
    """The one table whose header starts with `header`."""
    found = [t for t in tables(text) if t.header[: len(header)] == list(header)]
    assert len(found) == 1, f"{len(found)} tables with header {header}"
    return found[0]


def goal(text: str, name: str) -> tuple[str, str]:
    """(result, status) of one goal in the goals table."""
    row = table(text, "goal", "result", "status").row(name)
    return row[1], row[2]
