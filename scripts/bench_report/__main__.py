"""Command line of the report: `scripts/bench.sh` passes what it knows of
the run; the machine's facts are looked up here."""

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

from .criterion import Criterion
from .logs import RunLogs
from .report import render, write
from .run_info import RunInfo


def _command(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def _cpu_model() -> str:
    for line in _command("lscpu").splitlines():
        if line.startswith("Model name:"):
            return line.removeprefix("Model name:").strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_report", description=__doc__)
    ap.add_argument("--run-dir", type=Path, required=True, help="bench.sh's logs")
    ap.add_argument("--criterion", type=Path, required=True, help="criterion's output directory")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    ap.add_argument("--quick", action="store_true", help="the run used criterion's short times")
    ap.add_argument("--args", default="", help="bench.sh's arguments, for the Reproduce line")
    ap.add_argument("--iceoryx2-note", default="not built", help='"built", or why not')
    ap.add_argument("--futex-tool", default="(strace missing: not counted)")
    ap.add_argument("--leftover", default="", help="segments the run left in /dev/shm")
    ap.add_argument("--load", default="?", help="the load average at the start")
    args = ap.parse_args(argv)

    run = RunInfo(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cores=str(len(os.sched_getaffinity(0))),
        model=_cpu_model(),
        kernel=platform.release(),
        rustc=_command("rustc", "--version"),
        quick=args.quick,
        args=args.args,
        iceoryx2_note=args.iceoryx2_note,
        load=args.load,
        futex_tool=args.futex_tool,
        leftover=args.leftover,
    )
    report = render(Criterion(args.criterion), RunLogs(args.run_dir), run).text()
    write(args.out, report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
