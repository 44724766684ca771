"""Threads on one producer, run in a child process by test_threads.py (a
panic in a Slot's dealloc can abort the process, so the test only reads
what this prints and how it ended).

``python thread_stress.py SECONDS SEED`` runs rounds until SECONDS pass.
Each round makes a fresh stream and races threads on its one Producer
until its ring is full: two register slots and commit or give them up
(``abandon()``, a ``with`` block, dropping the slot with or without
``gc.collect()``), two ``put`` and ``put_many``, and a consumer reads
along. A round's stream is read back whole: every position before the
first abandoned one arrives in order with the bytes of its id, then the
abandoned one is reported. Prints one JSON line: rounds, operations, the
exceptions the threads saw that are not the documented ones (by class
and message), those raised in deallocators (``sys.unraisablehook``), and
what the consumer found wrong.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import random
import sys
import threading
import time
from collections import Counter

import numpy as np
import shmstream as s

# A full ring (the round is over; nothing waits for room) and nothing else.
EXPECTED = (s.RingFull,)


def value_of(tid: str) -> int:
    """The value the item of `tid` holds: a slot's is negative, a put's not."""
    return -int(tid[1:]) - 1 if tid[0] == "s" else int(tid[1:])


def round_of(n: int, rng: random.Random, out: dict) -> None:
    sid = (f"thr-{os.getpid()}-{n}", "e", "p")
    p = s.Producer(*sid, capacity=4096, item_bytes=64, timeout=0)
    b = s.StreamBuffer.open(*sid, policy="fixed:size=1", timeout=0)
    abandoned: list[int] = []  # positions given up
    writers = [("s0", slots), ("s1", slots), ("p0", puts), ("p1", puts), ("w0", looks)]
    start = threading.Barrier(len(writers) + 1)
    finished = threading.Event()
    seen = {"next": 0, "end": None}

    def record(e: BaseException) -> None:
        out["unexpected"][f"{type(e).__name__}: {str(e)[:120]}"] += 1

    def run(name: str, body) -> None:
        start.wait()
        try:
            body(name, random.Random(f"{rng.random()}"), p, abandoned, record, out)
        except BaseException as e:  # PanicException is a BaseException
            record(e)

    def consume() -> None:
        start.wait()
        while seen["end"] is None:
            try:
                chunk = b.next_chunk(0.02)
            except s.StreamTimeout:
                if finished.is_set():
                    return
                continue
            except s.Abandoned as e:
                seen["end"] = str(e)
                return
            except BaseException as e:
                record(e)
                return
            check(chunk)

    def check(chunk) -> None:
        if chunk is None or chunk.start_offset != seen["next"]:
            out["wrong"].append(f"round {n}: {chunk!r} where {seen['next']} was due")
            seen["end"] = "wrong"
            return
        tid = chunk.ids[0]
        value = int(np.asarray(chunk.item(0))[0])
        if value != value_of(tid):
            out["wrong"].append(f"round {n}: item {tid!r} at {seen['next']} holds {value}")
        seen["next"] += 1
        chunk.release()

    threads = [threading.Thread(target=run, args=w) for w in writers]
    threads.append(threading.Thread(target=consume))
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    finished.set()
    threads[-1].join()
    # What the consumer had not read yet, then the verdict.
    while seen["end"] is None:
        try:
            check(b.next_chunk(0))
        except (s.StreamTimeout, s.Abandoned) as e:
            seen["end"] = str(e) if isinstance(e, s.Abandoned) else None
            break
    first = min(abandoned, default=None)
    if first is None:
        if seen["end"] is not None:
            out["wrong"].append(f"round {n}: {seen['end']} with nothing abandoned")
    elif seen["next"] != first or f"position {first} " not in f"{seen['end']} ":
        out["wrong"].append(
            f"round {n}: read {seen['next']} items then {seen['end']!r}; first abandoned {first}"
        )
    out["ops"] += p.registered


def slots(name, r, p, abandoned, record, out) -> None:
    kept = []
    for i in range(1_000_000):
        try:
            slot = p.register(f"s{i}")
        except EXPECTED:
            break
        # Mostly committed: the consumer stops at the first abandoned one.
        how = r.randrange(12)
        try:
            if how < 7:
                slot.numpy(np.int64, (1,))[0] = value_of(f"s{i}")
                slot.commit("i64", [1])
                continue
            abandoned.append(slot.position)
            if how == 7:
                slot.abandon()
            elif how == 8:
                with slot:
                    pass
            elif how == 9:
                del slot
                gc.collect()
            elif how == 10:
                del slot
            else:
                kept.append(slot)
                del slot
                if len(kept) > 8:
                    kept.clear()  # dropped together
        except BaseException as e:
            record(e)
    del kept
    gc.collect()


def puts(name, r, p, abandoned, record, out) -> None:
    for i in range(1_000_000):
        tid = f"p{i}"
        try:
            if r.random() < 0.5:
                p.put(tid, np.array([i], np.int64))
            else:
                p.put_many([(tid, np.array([i], np.int64))])
        except EXPECTED:
            break


def looks(name, r, p, abandoned, record, out) -> None:
    """Takes the producer's lock without the GIL as often as it can."""
    while p.registered < 4096:
        try:
            p.wait_drained(0)
        except (s.StreamTimeout, s.StreamError):
            pass


def round_full(n: int, rng: random.Random, out: dict) -> None:
    """One thread holds slots and gives them up one by one while others
    wait for room in the full ring (a wait is a run of slices, each
    taking the producer's lock again)."""
    sid = (f"thf-{os.getpid()}-{n}", "e", "p")
    p = s.Producer(*sid, capacity=64, item_bytes=64, timeout=0)
    held = [p.register(f"s{i}") for i in range(16)]
    for i in range(48):
        p.put(f"p{i}", np.array([i], np.int64))
    r = random.Random(f"{rng.random()}")
    started = threading.Barrier(4)
    done = threading.Event()

    def record(e: BaseException) -> None:
        out["unexpected"][f"{type(e).__name__}: {str(e)[:120]}"] += 1

    def wait_for_room(i: int) -> None:
        started.wait()
        while not done.is_set():
            try:
                p.put(f"w{i}", np.array([i], np.int64), timeout=0.05)
            except EXPECTED:
                pass
            except BaseException as e:
                record(e)
                return

    waiters = [threading.Thread(target=wait_for_room, args=(i,)) for i in range(3)]
    for t in waiters:
        t.start()
    started.wait()
    while held:
        slot = held.pop()
        out["ops"] += 1
        try:
            how = r.randrange(4)
            if how == 0:
                slot.abandon()
            elif how == 1:
                with slot:
                    pass
            elif how == 2:
                del slot
                gc.collect()
            else:
                del slot
        except BaseException as e:
            record(e)
    done.set()
    for t in waiters:
        t.join()


def main() -> None:
    seconds, seed = float(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    out = {"rounds": 0, "ops": 0, "unexpected": Counter(), "unraisable": [], "wrong": []}

    def hook(u) -> None:
        out["unraisable"].append(f"{type(u.exc_value).__name__}: {str(u.exc_value)[:120]}")

    sys.unraisablehook = hook
    # The GIL changes hands every millisecond (CPython's default: 5 ms):
    # more calls are then under way without it when a slot is given up;
    # a9f0152 panicked about twice as often so.
    sys.setswitchinterval(0.001)
    # A hang (a deadlock) shows every thread's stack and ends the child.
    faulthandler.dump_traceback_later(seconds + 20, exit=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        round_of(out["rounds"], rng, out)
        round_full(out["rounds"], rng, out)
        out["rounds"] += 1
    gc.collect()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
