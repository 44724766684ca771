"""The drop-in against a plain-Python buffer of the reference's design, in
one run (issue 26): per item, per chunk, and the wake-up of a consumer.

    python shmstream-py/bench/dropin.py [--quick] [--write docs/benchmarks.md]
    scripts/bench-dropin.sh [--quick] [--no-write]   # installs, builds, writes

Per item (``dropin_costs.per_item``): ``pre_read_register`` + ``put`` of a
56-byte and a 64 KiB tensor. Per chunk (``dropin_costs.per_chunk``):
``pop_chunk`` + ``chunk.data["data"]`` at windows 4, 64 and 1024. Wake-up
(``dropin_wake``): a producer's ``put`` to the consumer holding
``chunk.data["data"]``, the consumer asleep: Python and Rust consumers of
identical producer processes, and both buffers across threads. The drop-in
is built with the reference's constructor arguments only; a row it cannot
run says why (the error) instead of a time.

Prints a Markdown section and, with ``--write FILE``, puts it into FILE
between ``<!-- dropin-bench:start -->`` and ``<!-- dropin-bench:end -->``
(the markers ``scripts/bench_report`` keeps). About a minute; ``--quick``
(a few seconds of samples) is what the tests run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import dropin_costs
import dropin_report
import dropin_wake
import torch
from sections import write_section


def run(quick: bool) -> dict:
    started = time.monotonic()
    out: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_start": os.getloadavg(),
        "quick": quick,
    }
    print(f"dropin: {time.monotonic() - started:.1f} s: per item", file=sys.stderr)
    out["per_item"] = dropin_costs.per_item(trials=4 if quick else 40)
    print(f"dropin: {time.monotonic() - started:.1f} s: per chunk", file=sys.stderr)
    out["per_chunk"] = dropin_costs.per_chunk(chunks=12 if quick else 200)
    print(f"dropin: {time.monotonic() - started:.1f} s: wake-up", file=sys.stderr)
    rounds, per_round = (1, 12) if quick else (5, 100)
    out["wake"] = dropin_wake.run(rounds, per_round, idle=0.002)
    out["load_end"] = os.getloadavg()
    out["elapsed_s"] = time.monotonic() - started
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="FILE", help="put the section into FILE between markers")
    ap.add_argument("--quick", action="store_true", help="few samples (a smoke run)")
    args = ap.parse_args()
    text = dropin_report.render(run(args.quick))
    print(text)
    if args.write:
        write_section(Path(args.write), dropin_report.TAG, text)
        print(f"dropin: wrote the section into {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
