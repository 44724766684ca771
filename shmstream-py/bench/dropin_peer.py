"""The producer process of the drop-in benchmark's wake-up rows
(``dropin.py``): puts one 56-byte tensor (a 7 x i64 numpy array, the first its index)
at a time, ``idle`` seconds apart, and reports when each ``put`` started
(CLOCK_MONOTONIC, the clock of every process of the host).

    python dropin_peer.py hub WORKER PREFIX   # the stream WORKER/e/p, announced in WORKER's hub
    python dropin_peer.py stream NAME PREFIX  # the stream NAME/e/p, opened by name

Prints ``ready`` once the stream exists; then, per ``run N IDLE`` line on
stdin, puts N items and prints their start times on one line (``index:ns``
pairs); ``quit`` signals done and exits."""

from __future__ import annotations

import sys
import time

import numpy as np
import shmstream as s


def main() -> None:
    kind, name, prefix = sys.argv[1:4]
    if kind == "hub":
        p = s.Hub.attach(name, prefix=prefix).create_stream(
            name, "e", "p", capacity=64, item_bytes=64
        )
    else:
        p = s.Producer(name, "e", "p", capacity=64, item_bytes=64, prefix=prefix)
    # numpy, not torch: the same put path (``host_array``), and the process
    # starts in a fraction of torch's import time.
    item = np.zeros(7, dtype=np.int64)
    clock, mono = time.clock_gettime_ns, time.CLOCK_MONOTONIC
    print("ready", flush=True)
    index = 0
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        n, idle = int(words[1]), float(words[2])
        starts = []
        for _ in range(n):
            time.sleep(idle)
            item[0] = index
            t0 = clock(mono)
            p.put(f"x{index}", item)
            starts.append(f"{index}:{t0}")
            index += 1
        print(" ".join(starts), flush=True)
    p.signal_done()
    p.close()


if __name__ == "__main__":
    main()
