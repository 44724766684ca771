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
    """The producer gave up a registered slot without committing it.

    ``reason`` and ``code`` are what the producer said when it gave the slot
    up (``Slot.abandon(reason, code)``; a transfer engine's or UCX's status
    text and code, say): ``""`` and ``0`` when it only dropped the slot.
    The text is at most ``MAX_REASON_LEN`` (96) bytes; the message names
    the tensor, its position and the reason too."""

    position: int | None
    tensor_id: str | None
    reason: str
    code: int

    def __init__(
        self,
        message: str = "",
        *,
        position: int | None = None,
        tensor_id: str | None = None,
        reason: str = "",
        code: int = 0,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.tensor_id = tensor_id
        self.reason = reason
        self.code = code

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only fields survive pickling (multiprocessing, say).
        return (
            _abandoned,
            (
                self.args[0] if self.args else "",
                self.position,
                self.tensor_id,
                self.reason,
                self.code,
            ),
        )


def _abandoned(
    message: str, position: int | None, tensor_id: str | None, reason: str, code: int
) -> Abandoned:
    return Abandoned(message, position=position, tensor_id=tensor_id, reason=reason, code=code)


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
