from pathlib import Path

from bench_report.logs import AllocRow, DemoRun, FutexRun, IdleRun, MemoryRow, RunLogs

STRACE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 95.12    0.012345          35       353        12 futex
  4.88    0.000633           1       364           sched_yield
------ ----------- ----------- --------- --------- ----------------
100.00    0.012978          18       717        12 total
"""


def test_futex_counts_calls_with_and_without_an_errors_column(tmp_path: Path) -> None:
    (tmp_path / "futex-full.txt").write_text(STRACE)
    (tmp_path / "futex-full.log").write_text("noise\nBENCH-RESULT futex-items 1000000 123456789\n")
    assert RunLogs(tmp_path).futex("full") == FutexRun(353, 364, 1_000_000, 123_456_789)


def test_futex_without_the_item_count_or_a_file_is_none(tmp_path: Path) -> None:
    logs = RunLogs(tmp_path)
    assert logs.futex("full") is None
    (tmp_path / "futex-full.txt").write_text(STRACE)
    assert logs.futex("full") is None  # no log
    (tmp_path / "futex-full.log").write_text("the run failed\n")
    assert logs.futex("full") is None
    (tmp_path / "futex-full.log").write_text("BENCH-RESULT futex-items 0 5\n")
    assert logs.futex("full") is None  # no items: nothing to divide by


def test_a_syscall_strace_did_not_see_counts_zero(tmp_path: Path) -> None:
    (tmp_path / "futex-paced.txt").write_text(" 100.00 0.1 10 350 futex\n")
    (tmp_path / "futex-paced.log").write_text("BENCH-RESULT futex-items 200000 99\n")
    assert RunLogs(tmp_path).futex("paced") == FutexRun(350, 0, 200_000, 99)


def test_memory_allocations_and_idle_lines(tmp_path: Path) -> None:
    (tmp_path / "memory.log").write_text(
        "Compiling\nBENCH-RESULT memory byte_granular 16384 4096 6144 1568\n"
        "BENCH-RESULT memory broken 1 2\nBENCH-RESULT memory fixed_slots 143360 131072 6144 1568\n"
    )
    (tmp_path / "allocations.log").write_text(
        "BENCH-RESULT alloc in_process_consumer 0 100000\nBENCH-RESULT alloc shared 3 1000\n"
    )
    (tmp_path / "wait_any.log").write_text(
        "BENCH-RESULT idle_cpu 10 1 2 3\nBENCH-RESULT idle_cpu 1000 10000000000 2270000 1\n"
    )
    logs = RunLogs(tmp_path)
    assert logs.memory() == {
        "byte_granular": MemoryRow(16384, 4096, 6144, 1568),
        "fixed_slots": MemoryRow(143360, 131072, 6144, 1568),
    }
    assert logs.allocations() == [
        AllocRow("in_process_consumer", 0, 100000),
        AllocRow("shared", 3, 1000),
    ]
    assert logs.idle() == IdleRun(1000, 10_000_000_000, 2_270_000, 1)  # the last line


def test_missing_logs_read_as_not_measured(tmp_path: Path) -> None:
    logs = RunLogs(tmp_path / "nowhere")
    assert logs.memory() == {} and logs.allocations() == [] and logs.idle() is None


def test_a_demo_report_needs_both_its_throughput_and_its_latency(tmp_path: Path) -> None:
    logs = RunLogs(tmp_path)
    assert logs.demo("full-off") is None  # no log
    thr = "throughput     4310597 items/s, 0.241 GB/s over 0.232 s\n"
    lat = "latency        p50 116.1 us  p99 318.7 us  p99.9 2406.4 us  max 5161.0 us  (commit to chunk, 9 items)\n"
    (tmp_path / "e2e-full-off.log").write_text(thr)
    assert logs.demo("full-off") is None
    (tmp_path / "e2e-full-off.log").write_text(lat)
    assert logs.demo("full-off") is None
    (tmp_path / "e2e-full-off.log").write_text("noise\n" + thr + lat)
    assert logs.demo("full-off") == DemoRun(4310597.0, 116.1, 318.7, 2406.4)
    # Items too small to carry a stamp: no latency line to read.
    (tmp_path / "e2e-full-off.log").write_text(thr + "latency        not measured (items under 24 bytes)\n")
    assert logs.demo("full-off") is None
    (tmp_path / "e2e-full-off.log").write_text(thr.replace("4310597", "0") + lat)
    assert logs.demo("full-off") is None
