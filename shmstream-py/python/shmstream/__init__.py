"""shmstream: zero-copy tensor streams between two processes on one host,
cut into chunks the way a streaming model needs them.

In one process, :class:`StreamBuffer` is a drop-in for the reference
``StreamBuffer`` (``pre_read_register``, ``put``, ``has_chunk_ready``,
``pop_chunk``, ...). Across processes, a :class:`Producer` creates the
stream and ``StreamBuffer.open`` reads it. A worker reading many streams
waits for all of them at once with a :class:`StreamSet`; producers create
its streams through a :class:`Hub`. A chunk's ``data`` and its
``__dlpack__`` are views of the shared memory (no copy); its slots go back
to the producer when the chunk and every view made from it are gone.
"""

from __future__ import annotations

from ._buffer import PolicyLike as PolicyLike
from ._buffer import StreamBuffer
from ._errors import (
    Abandoned,
    AfterDone,
    BadConfig,
    BadDType,
    BadId,
    BadPolicy,
    BadTensor,
    ChunkReleased,
    ConsumerGone,
    CorruptStream,
    DuplicateId,
    HubFull,
    NotAnnounced,
    NotReady,
    PeerGone,
    ProducerGone,
    RingFull,
    SetupFailed,
    SlotClosed,
    StreamError,
    StreamExists,
    StreamNotFound,
    StreamTimeout,
    TooManyProducers,
    UnknownId,
    WorkerGone,
)
from ._policies import (
    ChunkPolicy,
    FixedChunkPolicy,
    LeftContextChunkPolicy,
    NamedChunkPolicy,
    RampChunkPolicy,
    ScheduledChunkPolicy,
    SlidingWindowChunkPolicy,
)
from ._policies import policy_name as policy_name
from ._producer import Producer
from ._shmstream import Slot, StreamChunk, StreamKey, list_segments, remove_dead_segments
from ._stream_set import Hub, StreamSet

__all__ = [
    "Abandoned",
    "AfterDone",
    "BadConfig",
    "BadDType",
    "BadId",
    "BadPolicy",
    "BadTensor",
    "ChunkPolicy",
    "ChunkReleased",
    "ConsumerGone",
    "CorruptStream",
    "DuplicateId",
    "FixedChunkPolicy",
    "Hub",
    "HubFull",
    "LeftContextChunkPolicy",
    "NamedChunkPolicy",
    "NotAnnounced",
    "NotReady",
    "PeerGone",
    "Producer",
    "ProducerGone",
    "RampChunkPolicy",
    "RingFull",
    "ScheduledChunkPolicy",
    "SetupFailed",
    "SlidingWindowChunkPolicy",
    "Slot",
    "SlotClosed",
    "StreamBuffer",
    "StreamChunk",
    "StreamError",
    "StreamExists",
    "StreamKey",
    "StreamNotFound",
    "StreamSet",
    "StreamTimeout",
    "TooManyProducers",
    "UnknownId",
    "WorkerGone",
    "list_segments",
    "remove_dead_segments",
]
