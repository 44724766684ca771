"""Mooncake ingress: the process that receives tensors from other machines
with Mooncake's transfer engine (``mooncake.engine.TransferEngine``, as the
serving systems this buffer is for deploy it) reads them straight into
shmstream slots.

A :class:`Receiver` registers each stream's payload memory with the engine
once, reserves a slot per announced remote tensor in announcement order,
reads into it with the engine (a stream's tensors that lie back to back
at the sender as in the ring: one transfer for the run) and commits it
when the read completes. :class:`ControlServer` takes the announcements (one JSON line
per tensor) from senders on a Unix socket; :class:`Sender` is such a
sender (demo, tests, benchmarks). Install with
``pip install "shmstream[mooncake]"``; the module imports without the
engine, which is loaded at the first engine call.
"""

from ._announce import Announcement, parse
from ._engine import engine_class, new_engine, session_id
from ._receiver import Counters, ReadFailed, Receiver
from ._sender import Sender
from ._server import ControlServer

__all__ = [
    "Announcement",
    "ControlServer",
    "Counters",
    "ReadFailed",
    "Receiver",
    "Sender",
    "engine_class",
    "new_engine",
    "parse",
    "session_id",
]
