"""Python benchmarks of shmstream, side by side in one run (issue 10).

    python shmstream-py/bench/bench.py [--write docs/benchmarks.md] [--quick]

1. ``pop_chunk`` + the chunk's tensor (``chunk.data``, ``torch.from_dlpack``,
   ``numpy.from_dlpack``) at window 4, 28, 256 and 1024 (stride window/4),
   56-byte i64 items, against a pure-Python reimplementation of the
   reference's algorithm (a list of tensors, ``torch.stack`` per chunk).
2. Cross-process, a Python producer process to this (consumer) process:
   32 x 64 KiB, 4 x 2 MiB and 1 x 64 MiB, from the producer's first put to
   the consumer holding the tensors, against ``multiprocessing`` queues,
   ``multiprocessing.shared_memory`` with one copy each way, and one memcpy
   of the same bytes (``numpy.copyto``) in this process.
3. Python-level cost per item (``put``; ``register`` + fill + ``commit``)
   and per chunk, and the Python allocations of a chunk (tracemalloc).

Prints a Markdown section and, with ``--write FILE``, puts it into FILE
between ``<!-- python-bench:start -->`` and ``<!-- python-bench:end -->``
(appended when the markers are absent). Not run by CI; about two minutes.

The measurements are ``measure.py``'s, the Markdown ``report.py``'s (tested
with fixed numbers in ``test_report.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import measure
import report
from sections import write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="FILE", help="put the section into FILE between markers")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = ap.parse_args()
    text = report.render(measure.run(args.quick))
    print(text)
    if args.write:
        write_section(Path(args.write), report.TAG, text)
        print(f"bench: wrote the section into {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
