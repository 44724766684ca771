from bench_report.fmt import judge, ns, per, rate, ratio, verdict, within


def test_ns_picks_the_unit_at_each_thousand() -> None:
    assert ns(None) == "n/a"
    assert ns(999.94) == "999.9 ns"
    assert ns(1000.0) == "1.00 µs"
    assert ns(999_990.0) == "999.99 µs"
    assert ns(1e6) == "1.00 ms"
    assert ns(2.5e9) == "2500.00 ms"


def test_ratio_rate_and_verdict() -> None:
    assert ratio(3.0, 2.0) == "1.50x"
    assert ratio(None, 2.0) == "n/a" and ratio(3.0, None) == "n/a"
    assert rate(50.0) == "20.0 M/s"  # items per 50 ns
    assert rate(65536.0, 65536) == "1.00 GB/s"  # bytes per ns
    assert rate(None, 56) == "n/a"
    assert (verdict(True), verdict(False), verdict(None)) == ("**met**", "**missed**", "n/a")


def test_judge_is_none_unless_both_were_measured() -> None:
    assert judge(4.0, 1.0, within(4)) is True
    assert judge(4.01, 1.0, within(4)) is False
    assert judge(None, 1.0, within(4)) is None
    assert judge(1.0, None, within(4)) is None
    assert per(None, 4) is None and per(8.0, 4) == 2.0
