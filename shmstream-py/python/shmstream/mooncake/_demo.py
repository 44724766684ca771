"""The processes of ``python -m shmstream.demo --source mooncake``: a sender
(its own engine; items written into its registered pool and announced on
the control socket), a receiver (the stream's producer: reads every item
into its slot) and the demo's consumer (the calling process)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import shmstream

from ._receiver import Receiver
from ._sender import Sender
from ._server import ControlServer

FLUSH = 64  # announcements per write on the control socket
WINDOW = 512  # announced and unacknowledged: bounds the queue the latency measures


def receive(ident: tuple[str, str, str], capacity: int, path: str, ready: Any, out: Any) -> None:
    """The receiver process: creates the stream, serves the control socket
    until the sender is done, reports its counters, waits for the drain."""
    from ..demo import WORDS  # noqa: PLC0415 (demo imports this module)

    producer = shmstream.Producer(*ident, capacity=capacity, item_bytes=WORDS * 8)

    def factory(ack: Any) -> Receiver:
        r = Receiver(on_complete=ack)
        r.add_stream(ident, producer)
        return r

    with ControlServer(path, factory) as server:
        ready.set()
        server.serve(until_idle=True)
        c = server.receiver.counters
    out.put(
        {
            "items": c.items,
            "engine_calls": c.engine_calls,
            "reads": c.reads,
            "coalesced": c.coalesced,
            "registrations": c.registrations,
            "failures": c.failures,
        }
    )
    producer.wait_drained(60)


def send(ident: tuple[str, str, str], items: int, path: str) -> None:
    """The sender process: ``items`` rows of the demo (position, stamp,
    checksum, position x4), each stamped just before its announcement.
    One stream, so its rows lie back to back in the pool (until it wraps)
    and the receiver reads runs of them with one transfer each."""
    from ..demo import WORDS, checksum  # noqa: PLC0415

    row = np.empty(WORDS, np.int64)
    with Sender(path, pool_bytes=4 << 20, window=WINDOW) as snd:
        for i in range(items):
            row[0] = i
            row[2] = checksum(np.array([i], np.int64))[0]
            row[3:] = i
            row[1] = time.monotonic_ns()
            snd.send(ident, f"t{i}", row)
            if i % FLUSH == FLUSH - 1:
                snd.flush()
                snd.poll_acks(0)
        snd.done(ident)
        snd.wait_acks(120)
        if snd.errors:
            raise SystemExit(f"mooncake sender: {len(snd.errors)} errors, first {snd.errors[0]}")
