"""The Python benchmarks' report from fixed numbers (no measurement, no
numpy, torch or shmstream): cells, ratios and goal verdicts, and the
section's place in the file. Run by scripts/test-bench-report.sh."""

from __future__ import annotations

import datetime
from pathlib import Path

from report import END, START, TAG, render
from results import Results
from sections import write_section

WINDOWS = [4, 28, 256, 1024]
VARIANTS = ["pop", "data", "torch.from_dlpack", "numpy.from_dlpack", "reference"]
SHAPES = [(32, 64 << 10, "32 x 64 KiB"), (4, 2 << 20, "4 x 2 MiB"), (1, 64 << 20, "1 x 64 MiB")]
FLOORS = {
    "`torch.from_dlpack(view)`": 1470.0,
    "`torch._C._from_dlpack(capsule)` (where `torch.from_dlpack` ends)": 720.0,
    "`view.__dlpack__(max_version=(1, 0))` (the capsule alone)": 220.0,
    "`numpy.from_dlpack(view)`": 520.0,
    "`torch.stack` of 28 x `[7]` i64 (the reference's per-chunk copy)": 3180.0,
}


def results(data_ns: float = 1000.0, numpy_ns: float = 900.0) -> Results:
    # Per chunk: pop 400 ns, chunk.data `data_ns` (1024: 1.25x that), torch.from_dlpack
    # 2 us, numpy `numpy_ns`, the reference 10 us x window / 4.
    chunk = {}
    for win in WINDOWS:
        chunk[(win, "pop")] = 400.0
        chunk[(win, "data")] = data_ns * (1.25 if win == 1024 else 1.0)
        chunk[(win, "torch.from_dlpack")] = 2000.0
        chunk[(win, "numpy.from_dlpack")] = numpy_ns
        chunk[(win, "reference")] = 2500.0 * win
    cross = {}
    for _, size, label in SHAPES:
        memcpy = size / 8.0  # 8 bytes per ns (exact: ratios land on their bounds)
        cross.update(
            {
                (label, "shmstream"): 1.5 * memcpy,
                (label, "shmstream, put_many"): 1.6 * memcpy,
                (label, "mp.Queue"): 30 * memcpy,
                (label, "shared_memory"): 3 * memcpy,
                (label, "memcpy"): memcpy,
                (label, "memcpy into the ring's memory"): 2 * memcpy,
                (label, "puts"): 1.2 * memcpy,
                (label, "puts, consumer not waiting"): 1.1 * memcpy,
            }
        )
    return Results(
        date=datetime.datetime(2026, 12, 6, 21, 30, tzinfo=datetime.timezone.utc),
        cores=2,
        arch="x86_64",
        kernel="6.0.0",
        python="3.11.7",
        torch="2.0",
        numpy="2.0",
        load_start=(0.5, 0.4, 0.3),
        load_end=(1.0, 0.9, 0.8),
        elapsed_s=55.4,
        quick=True,
        timer_overhead_ns=60.0,
        windows=WINDOWS,
        chunk_ns=chunk,
        chunk_mean_ns={key: 2 * v for key, v in chunk.items()},
        stride1_ns=1270.0,
        floor_ns=FLOORS,
        poll_ns=[16.0, 17.0, 30.0],
        shapes=SHAPES,
        cross_ns=cross,
        per_item_ns={"Producer `put` (numpy 7 x i64, registers it)": 1580.0},
        alloc={"blocks": 7.0, "bytes": 607.4, "left": 0.04},
    )


def row(text: str, first: str) -> list[str]:
    found = [line for line in text.splitlines() if line.startswith(f"| {first} |")]
    assert len(found) == 1, (first, found)
    return [c.strip() for c in found[0].strip("|").split("|")]


def test_chunk_and_cross_process_cells() -> None:
    text = render(results())
    assert "- Date: 2026-12-06 21:30 UTC" in text
    assert "- Run time: 55 s (--quick)" in text
    assert "less the timer's own 60 ns" in text
    # The median poll (17 ns) x stride 256 = 4352 ns.
    assert "17 ns per item" in text and "+4.35 us" in text
    assert row(text, "28") == [
        "28",
        "0.40 us",
        "1.00 us",
        "2.00 us",
        "0.90 us",
        "70.00 us",
        "70.0x",
        "2.00 us, 0.140 ms",
    ]
    assert row(text, "32 x 64 KiB") == [
        "32 x 64 KiB",
        "12.29 us",
        "9.83 us",
        "13.11 us",
        "0.246 ms",
        "24.58 us",
        "8.19 us",
        "16.38 us",
        "1.50x",
        "1.60x",
        "0.80x",
        "20.0x",
        "2.0x",
    ]
    assert row(text, "`numpy.from_dlpack(view)`") == ["`numpy.from_dlpack(view)`", "0.52 us"]


def test_goals_at_their_bounds() -> None:
    text = render(results())
    flat = "flat in the window (`chunk.data`, largest / smallest over windows 4..1024)"
    assert row(text, flat) == [flat, "1.25x", "met"]
    assert row(text, "<= 2.5 us per chunk with a torch tensor, any window")[2] == "met"
    assert row(text, "< 1 us per chunk with a numpy view, any window") == [
        "< 1 us per chunk with a numpy view, any window",
        "0.90 us",
        "met",
    ]
    assert row(text, "4 x 2 MiB within 1.5x of one memcpy (`put`)") == [
        "4 x 2 MiB within 1.5x of one memcpy (`put`)",
        "1.50x",
        "met",
    ]
    many = "4 x 2 MiB within 1.5x of one memcpy (`put_many`)"
    assert row(text, many)[1:] == ["1.60x", "**missed**"]

    # The torch goal takes the faster of `chunk.data` and `torch.from_dlpack`.
    text = render(results(data_ns=2600.0, numpy_ns=1000.0))
    torch_goal = "<= 2.5 us per chunk with a torch tensor, any window"
    numpy_goal = "< 1 us per chunk with a numpy view, any window"
    assert row(text, torch_goal)[1:] == ["2.00 us", "met"]
    assert row(text, numpy_goal)[1:] == ["1.00 us", "**missed**"]


def test_write_section_replaces_or_appends(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\nbody\n")
    write_section(path, TAG, "one")
    assert path.read_text() == f"# Benchmarks\n\nbody\n\n{START}\none\n{END}\n"
    write_section(path, TAG, "two")
    assert path.read_text() == f"# Benchmarks\n\nbody\n\n{START}\ntwo\n{END}\n"
