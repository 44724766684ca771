"""The exceptions of shmstream: one hierarchy under :class:`StreamError`,
deriving also from the built-in exceptions Python users catch."""

from __future__ import annotations


class StreamError(Exception):
    """Base of every shmstream error."""


class SetupFailed(StreamError, OSError):
    """Creating or opening a stream's segment failed."""


class StreamNotFound(SetupFailed, FileNotFoundError):
    """No segment of that stream exists (yet, or any more)."""


class StreamExists(SetupFailed, FileExistsError):
    """A live process already owns a segment of that stream."""


class HubFull(SetupFailed):
    """Every entry of the worker's hub holds a stream (remove some, or make a bigger hub)."""


class TooManyProducers(SetupFailed):
    """Every producer slot of the worker's hub is taken."""


class NotAnnounced(StreamNotFound):
    """``StreamSet.add`` of a stream no producer announced (yet)."""


class BadConfig(StreamError, ValueError):
    """A stream's configuration (names, sizes, timeout) is unusable."""


class BadPolicy(BadConfig):
    """A chunk policy cannot be built (bad name, key or value)."""


class PeerGone(StreamError, ConnectionError):
    """The other side of the stream is gone."""


class ProducerGone(PeerGone):
    """The producer died (or dropped its end) without signalling done."""


class ConsumerGone(PeerGone):
    """The consumer died or dropped its end."""


class WorkerGone(SetupFailed, ConsumerGone):
    """The worker (the consumer that created the hub) is gone."""


class StreamTimeout(StreamError, TimeoutError):
    """A wait ended before its condition held; the call can be retried."""


class RingFull(StreamError):
    """No room in the ring until the consumer releases chunks."""


class CorruptStream(StreamError):
    """Shared memory holds a value no correct peer writes."""


class NotReady(StreamError, RuntimeError):
    """``pop_chunk()`` when ``has_chunk_ready()`` is false."""


class AfterDone(StreamError, RuntimeError):
    """The producer already signalled done."""


class Abandoned(StreamError):
    """The producer gave up a registered slot without committing it."""


class BadId(StreamError, ValueError):
    """A tensor id is empty or too long."""


class UnknownId(BadId):
    """``put`` with an id not registered, or already put."""


class DuplicateId(BadId):
    """``pre_read_register`` with an id registered and not yet put."""


class BadTensor(StreamError, ValueError):
    """A tensor that the stream cannot carry as given (size, shape, layout, device)."""


class BadDType(BadTensor, TypeError):
    """An element type the stream cannot carry (or read without ml_dtypes)."""


class ChunkReleased(StreamError, RuntimeError):
    """A view asked of a chunk after ``release()``."""


class SlotClosed(StreamError, RuntimeError):
    """A slot used after its commit (or abandonment)."""


__all__ = [name for name, obj in globals().items() if isinstance(obj, type)]
