"""The reference worker's streaming path on shmstream, end to end.

One worker process reads every stream of hundreds of requests through one
:class:`shmstream.StreamSet`; a producer process (the upstream partition)
creates two streams per request and sends tensors out of order. The shape
is the reference worker's:

- one buffer per request x edge, its policy from a factory by edge
  (``thinker_to_talker``: ``FixedChunkPolicy(1, continue_after_done=True)``,
  ``talker_to_code2wav``: ``LeftContextChunkPolicy(4, 1)``);
- tensors registered in order and put out of order (``pre_read_register``
  then ``put``), the chunks see them in registration order;
- one ``wait_any`` instead of polling every buffer each iteration;
- a model step with a budget per iteration: chunks beyond it become
  uningested edges (``store_uningested_edge``), served first next time
  (``pop_waiting_edge``);
- speculative decoding: a rejected draft rolls back by storing its edge
  again, to be redone;
- the producer-done path: ``signal_done`` on the worker's buffer when the
  producer reports done, the final chunk closes a code2wav stream, and a
  talker stream, which continues after done, is closed by the worker's own
  logic after its one empty chunk.

Run: ``python worker_loop.py [--requests 300] [--items 12] [--budget 16]``.
It checks every item arrived once and in order, and prints items/s, CPU per
item and wake-ups.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shmstream

try:  # chunk data are torch tensors when torch is there: import it before timing
    import torch  # noqa: F401
except ImportError:
    pass

EDGES = ("thinker_to_talker", "talker_to_code2wav")
FROM = "thinker"
HIDDEN = 14  # float32 x 14 = 56 bytes per hidden state


def policy_factory(request_id: str, edge_name: str, from_partition: str) -> Any:
    """The worker's policy per edge (a fresh object per buffer)."""
    if edge_name == "thinker_to_talker":
        return shmstream.FixedChunkPolicy(1, continue_after_done=True)
    return shmstream.LeftContextChunkPolicy(4, 1)


def item(request: int, edge: int, i: int) -> np.ndarray:
    """Item ``i`` of a request's edge: its identity in every element."""
    if edge == 0:
        return np.full(HIDDEN, request * 1000 + i, np.float32)
    return np.array([request, i], np.int64)


# --- the producer process ------------------------------------------------
def produce(worker: str, requests: int, items: int, seed: int) -> None:
    hub = shmstream.Hub.attach(worker)
    rng = random.Random(seed)
    streams = []
    for r in range(requests):
        for e, edge in enumerate(EDGES):
            p = hub.create_stream(f"req-{r}", edge, FROM, capacity=64, item_bytes=64, timeout=30)
            streams.append((r, e, p))
    # Bursts of 4 ids, registered in order and put out of order, requests
    # interleaved.
    for start in range(0, items, 4):
        for r, e, p in streams:
            ids = list(range(start, min(start + 4, items)))
            for i in ids:
                p.pre_read_register(f"t{i}")
            rng.shuffle(ids)
            for i in ids:
                p.put(f"t{i}", item(r, e, i))
    for _, _, p in streams:
        p.signal_done()
    for _, _, p in streams:
        p.wait_drained(30)


# --- the worker ----------------------------------------------------------
@dataclass
class Edge:
    """What the worker hands on for one chunk (the reference's GraphEdge)."""

    key: Any
    chunk: Any
    attempt: int = 0


@dataclass
class Stats:
    items: int = 0
    chunks: int = 0
    wakeups: int = 0
    stored: int = 0
    popped: int = 0
    rollbacks: int = 0
    done_signals: int = 0
    seen: dict = field(default_factory=dict)


def run_worker(requests: int, items: int, budget: int, seed: int) -> Stats:
    worker = f"wl-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stats = Stats()
    with shmstream.StreamSet(worker, policy_factory=policy_factory, entries=1024) as streams:
        producer = subprocess.Popen(
            [sys.executable, __file__, "--produce", worker, str(requests), str(items), str(seed)]
        )
        backlog: dict = {}  # key -> number of edges stored in its buffer
        open_streams = 2 * requests
        talker_steps: dict = {}  # key -> steps the talker runs after the end
        start = cpu0 = None  # from the first news on: not the producer's start-up
        try:
            while open_streams:
                left = budget
                touched = list(talker_steps)  # streams to look at for the end
                # Uningested edges first, oldest buffer first.
                for key in list(backlog):
                    touched.append(key)
                    buf = streams[key]
                    while backlog[key] and left:
                        edge = buf.pop_waiting_edge()
                        backlog[key] -= 1
                        stats.popped += 1
                        left -= 1
                        if not step(streams, edge, stats):
                            roll_back(buf, edge)  # redo it first, later
                            backlog[key] += 1
                            stats.stored += 1
                            break
                    if not backlog[key]:
                        del backlog[key]
                # Sleep until a stream has news (at once if edges wait).
                keys = streams.wait_any(timeout=0 if backlog or talker_steps else 5.0)
                if not keys and not backlog and producer.poll() not in (None, 0):
                    raise RuntimeError(f"producer exited with {producer.returncode}")
                if keys and start is None:
                    start, cpu0 = time.perf_counter(), cpu_seconds()
                stats.wakeups += 1
                for key in keys:
                    buf = streams[key]
                    for chunk in streams.ready_chunks(key):
                        edge = Edge(key, chunk)
                        if backlog.get(key) or not left:
                            buf.store_uningested_edge(edge)  # keep the order
                            backlog[key] = backlog.get(key, 0) + 1
                            stats.stored += 1
                            continue
                        left -= 1
                        if not step(streams, edge, stats):
                            buf.store_uningested_edge(edge)
                            backlog[key] = backlog.get(key, 0) + 1
                            stats.stored += 1
                # The producer-done path, and closing finished streams.
                for key in dict.fromkeys(touched + keys):
                    if key not in streams or backlog.get(key):
                        continue
                    buf = streams[key]
                    if buf.producer_done and key not in talker_steps:
                        buf.signal_done()  # as the worker does when told
                        stats.done_signals += 1
                        if buf.edge_name == "thinker_to_talker":
                            talker_steps[key] = 2
                    if buf.finished:
                        streams.remove(key)
                        open_streams -= 1
                    elif key in talker_steps and key in stats.seen.get("ended", set()):
                        talker_steps[key] -= 1  # the talker goes on alone
                        if talker_steps[key] == 0:
                            del talker_steps[key]
                            streams.remove(key)
                            open_streams -= 1
                # Hold no chunk past its step: its slots go back to the
                # producer when the last reference goes.
                chunk = edge = buf = None
            elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
        finally:
            if producer.wait(30) != 0:
                raise RuntimeError(f"producer exited with {producer.returncode}")
    stats.seen["elapsed"], stats.seen["cpu"] = elapsed, cpu
    return stats


def roll_back(buf: Any, edge: Edge) -> None:
    """Puts a rejected step's edge back at the head of the buffer's
    uningested edges (they are first in, first out: the ones behind it
    are taken out and stored again after it)."""
    behind = []
    while (e := buf.pop_waiting_edge()) is not None:
        behind.append(e)
    buf.store_uningested_edge(edge)
    for e in behind:
        buf.store_uningested_edge(e)


def step(streams: Any, edge: Edge, stats: Stats) -> bool:
    """One model step on a chunk; False when a speculative draft is
    rejected (every 5th talker chunk, first attempt), to be redone."""
    chunk = edge.chunk
    buf = streams[edge.key]
    talker = buf.edge_name == "thinker_to_talker"
    if talker and chunk.chunk_index % 5 == 4 and edge.attempt == 0:
        edge.attempt += 1
        stats.rollbacks += 1
        return False
    data = chunk.data["data"]
    request = int(buf.request_id.split("-")[1])
    got = stats.seen.setdefault((request, buf.edge_name), [])
    if data is None:
        stats.seen.setdefault("ended", set()).add(edge.key)
        return True
    rows = np.asarray(data).reshape(len(chunk), -1)
    for row in rows[chunk.context_items :]:
        got.append(int(row[0]) % 1000 if talker else int(row[1]))
        assert (int(row[0]) // 1000 if talker else int(row[0])) == request
    stats.items += len(rows) - chunk.context_items
    stats.chunks += 1
    return True


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--produce", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.produce:
        worker, requests, items, seed = a.produce
        produce(worker, int(requests), int(items), int(seed))
        return
    stats = run_worker(a.requests, a.items, a.budget, a.seed)
    want = list(range(a.items))
    bad = [(r, e) for r in range(a.requests) for e in EDGES if stats.seen.get((r, e)) != want]
    if bad:
        raise SystemExit(f"items lost or out of order in {len(bad)} streams, e.g. {bad[:3]}")
    elapsed, cpu = stats.seen["elapsed"], stats.seen["cpu"]
    n = stats.items
    print(f"requests {a.requests} streams {2 * a.requests} items {n} chunks {stats.chunks}")
    print(f"items/s {stats.items / elapsed:.0f}")
    print(f"cpu per item {cpu / stats.items * 1e6:.1f} us")
    print(f"wake-ups {stats.wakeups} ({stats.wakeups / stats.items:.3f} per item)")
    print(
        f"uningested stored {stats.stored} popped {stats.popped} rollbacks {stats.rollbacks} "
        f"done signals {stats.done_signals}"
    )
    print("OK")


if __name__ == "__main__":
    main()
