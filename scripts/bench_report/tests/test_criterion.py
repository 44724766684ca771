from pathlib import Path

from bench_report.criterion import Criterion

from .fixtures import estimate


def test_median_reads_the_median_point_estimate(tmp_path: Path) -> None:
    estimate(tmp_path, "latency_64B", "floor", 51.25)
    estimate(tmp_path, "wait_any_wakeup", "streams/1024", 9660.0)  # a BenchmarkId's level
    crit = Criterion(tmp_path)
    assert crit.median("latency_64B", "floor") == 51.25
    assert crit.median("wait_any_wakeup", "streams/1024") == 9660.0


def test_missing_or_unreadable_estimates_are_none(tmp_path: Path) -> None:
    crit = Criterion(tmp_path)
    assert crit.median("latency_64B", "floor") is None
    for bench, body in [
        ("corrupt", "{"),
        ("no_median", '{"mean": {"point_estimate": 1.0}}'),
        ("null", '{"median": {"point_estimate": null}}'),
        ("text", '{"median": {"point_estimate": "12"}}'),
        ("list", "[1, 2]"),
    ]:
        d = tmp_path / "g" / bench / "new"
        d.mkdir(parents=True)
        (d / "estimates.json").write_text(body)
        assert crit.median("g", bench) is None, bench
