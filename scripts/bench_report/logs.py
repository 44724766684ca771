"""The run's logs besides criterion's estimates: what the memory,
allocation and idle benches print (`BENCH-RESULT ...` lines) and the
strace counts of the futex-count runs. A missing or unreadable log reads as
not measured."""

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FutexRun:
    """One strace run of the cross_process binary in its futex-count role."""

    futex: int
    sched_yield: int
    items: int
    elapsed_ns: int


@dataclass(frozen=True)
class MemoryRow:
    """One layout of `benches/memory.rs`, in bytes."""

    segment: int
    payload: int
    descriptors: int
    buffered: int


@dataclass(frozen=True)
class AllocRow:
    """One path of `benches/allocations.rs`."""

    path: str
    allocations: int
    items: int


@dataclass(frozen=True)
class IdleRun:
    """The idle worker of `benches/wait_any.rs`."""

    streams: int
    wall_ns: int
    cpu_ns: int
    sleeps: int


@dataclass(frozen=True)
class DemoRun:
    """One `ipc-demo run` (its report's throughput and latency lines)."""

    items_per_s: float
    p50_us: float
    p99_us: float
    p999_us: float


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


class RunLogs:
    """The logs `scripts/bench.sh` leaves in its run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def futex(self, name: str) -> FutexRun | None:
        """futex-NAME.txt (`strace -c` table: calls are the 4th column)
        and futex-NAME.log (the binary's item count and elapsed time)."""
        txt = self.run_dir / f"futex-{name}.txt"
        log = self.run_dir / f"futex-{name}.log"
        if not txt.exists() or not log.exists():
            return None
        calls = {"futex": 0, "sched_yield": 0}
        try:
            for line in _lines(txt):
                parts = line.split()
                if parts and parts[-1] in calls:
                    calls[parts[-1]] = int(parts[3])
        except (IndexError, ValueError):
            return None
        result = None
        for line in _lines(log):
            m = re.match(r"BENCH-RESULT futex-items (\d+) (\d+)", line)
            if m:
                result = int(m.group(1)), int(m.group(2))
        if result is None or result[0] == 0:
            return None
        return FutexRun(calls["futex"], calls["sched_yield"], *result)

    def memory(self) -> dict[str, MemoryRow]:
        """memory.log: `BENCH-RESULT memory NAME SEGMENT PAYLOAD DESCRIPTORS BUFFERED`."""
        rows = {}
        for line in _lines(self.run_dir / "memory.log"):
            m = re.match(r"BENCH-RESULT memory (\S+) (\d+) (\d+) (\d+) (\d+)\s*$", line)
            if m:
                seg, pay, desc, buf = (int(x) for x in m.groups()[1:])
                rows[m.group(1)] = MemoryRow(seg, pay, desc, buf)
        return rows

    def allocations(self) -> list[AllocRow]:
        """allocations.log: `BENCH-RESULT alloc PATH ALLOCATIONS ITEMS`."""
        rows = []
        for line in _lines(self.run_dir / "allocations.log"):
            m = re.match(r"BENCH-RESULT alloc (\S+) (\d+) (\d+)", line)
            if m:
                rows.append(AllocRow(m.group(1), int(m.group(2)), int(m.group(3))))
        return rows

    def idle(self) -> IdleRun | None:
        """wait_any.log: `BENCH-RESULT idle_cpu STREAMS WALL_NS CPU_NS SLEEPS` (the last)."""
        idle = None
        for line in _lines(self.run_dir / "wait_any.log"):
            m = re.match(r"BENCH-RESULT idle_cpu (\d+) (\d+) (\d+) (\d+)", line)
            if m:
                streams, wall, cpu, sleeps = (int(x) for x in m.groups())
                idle = IdleRun(streams, wall, cpu, sleeps)
        if idle is not None and idle.wall_ns == 0:
            return None
        return idle

    def demo(self, name: str) -> DemoRun | None:
        """e2e-NAME.log: `ipc-demo run`'s report, its `throughput N items/s`
        and `latency p50 X us  p99 Y us  p99.9 Z us` lines (the last of each)."""
        rate = lat = None
        for line in _lines(self.run_dir / f"e2e-{name}.log"):
            m = re.match(r"throughput\s+(\d+(?:\.\d+)?) items/s", line)
            if m:
                rate = float(m.group(1))
            m = re.match(r"latency\s+p50 (\S+) us\s+p99 (\S+) us\s+p99\.9 (\S+) us", line)
            if m:
                try:
                    lat = tuple(float(x) for x in m.groups())
                except ValueError:
                    lat = None
        if rate is None or lat is None or rate == 0:
            return None
        return DemoRun(rate, *lat)
