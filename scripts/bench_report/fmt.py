"""How numbers read in the report: times, ratios, rates and verdicts, with
"n/a" for whatever this run did not measure."""

from collections.abc import Callable


def ns(t: float | None) -> str:
    """A time in nanoseconds, in the unit that keeps it short."""
    if t is None:
        return "n/a"
    if t < 1e3:
        return f"{t:.1f} ns"
    if t < 1e6:
        return f"{t / 1e3:.2f} µs"
    return f"{t / 1e6:.2f} ms"


def ratio(a: float | None, b: float | None) -> str:
    """a over b, as a factor."""
    return "n/a" if a is None or b is None else f"{a / b:.2f}x"


def rate(t: float | None, unit_bytes: int | None = None) -> str:
    """Throughput of one item per `t` ns: GB/s when the item has a size in
    bytes, else millions of items per second."""
    if t is None:
        return "n/a"
    if unit_bytes:
        return f"{unit_bytes / t:.2f} GB/s"
    return f"{1e3 / t:.1f} M/s"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def judge(a: float | None, b: float | None, test: Callable[[float, float], bool]) -> bool | None:
    """`test(a, b)`, or None (not judged) when either was not measured."""
    return None if a is None or b is None else test(a, b)


def per(t: float | None, n: float) -> float | None:
    """`t` divided among `n` items."""
    return None if t is None else t / n


def within(factor: float) -> Callable[[float, float], bool]:
    """The test `a <= factor * b` (a time within `factor` of another)."""
    return lambda a, b: a <= factor * b
