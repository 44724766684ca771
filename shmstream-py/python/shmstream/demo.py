"""``python -m shmstream.demo``: a Python producer process and a Python
consumer process over one stream, with a progress line and a report."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

import shmstream


def produce(ident: tuple[str, str, str], items: int, ready: mp.Event) -> None:
    producer = shmstream.Producer(*ident, capacity=1024, item_bytes=64)
    ready.set()
    for start in range(0, items, 8):
        ids = [f"t{i}" for i in range(start, min(items, start + 8))]
        for tid in ids:
            producer.pre_read_register(tid)
        for tid in reversed(ids):  # out of order, as RDMA completions land
            i = int(tid[1:])
            producer.put(tid, np.arange(i, i + 7, dtype=np.int64))
    producer.signal_done()
    producer.wait_drained(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--policy", default="sliding:window=28,stride=7")
    args = parser.parse_args()
    ident = (f"demo-{os.getpid()}", "codec_tokens", "talker")
    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=produce, args=(ident, args.items, ready))
    proc.start()
    ready.wait(30)
    buf = shmstream.StreamBuffer.open(*ident, policy=args.policy, timeout=30)
    t0 = time.perf_counter()
    chunks = bad = 0
    for chunk in buf:
        a = np.from_dlpack(chunk)
        first = a[:, 0]
        expect = np.arange(chunk.start_offset, chunk.start_offset + len(chunk))
        bad += int((first != expect).any())
        chunks += 1
        if chunks % 2000 == 0:
            done = chunk.start_offset / args.items
            sys.stderr.write(f"\r[{'#' * int(done * 30):<30}] {done:6.1%}")
        del a, first, chunk
    secs = time.perf_counter() - t0
    proc.join(60)
    sys.stderr.write(f"\r[{'#' * 30}] 100.0%\n")
    print(f"stream {'/'.join(ident)}, policy {args.policy}")
    print(f"{args.items} items in {chunks} chunks, {secs:.3f} s")
    print(f"{args.items / secs / 1e6:.2f} M items/s, {secs / chunks * 1e6:.2f} us per chunk")
    print(f"checksum mismatches: {bad}; producer exit code {proc.exitcode}")
    return 0 if bad == 0 and proc.exitcode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
