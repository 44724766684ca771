"""Criterion's estimates of one run, as `cargo bench` leaves them."""

import json
from pathlib import Path


class Criterion:
    """The estimates under a criterion directory (`target/criterion`):
    GROUP/BENCH/new/estimates.json, where a group or bench name's `/`
    (criterion's `BenchmarkId::new("streams", 1)`) is a directory level and
    a group name's `/` (`stream/56B`) became `_`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def median(self, group: str, bench: str) -> float | None:
        """The median's point estimate, ns per iteration, or None when the
        bench did not run (or left no readable estimate)."""
        path = self.root / group / bench / "new" / "estimates.json"
        try:
            value = json.loads(path.read_text())["median"]["point_estimate"]
        except (OSError, KeyError, TypeError, ValueError):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)
