"""The native half of shmstream (PyO3). Use the package ``shmstream``."""

from typing import Any

class _View:
    """A tensor in the stream's memory: ``numpy.asarray(view)``, ``torch.from_dlpack(view)``."""

    __array_interface__: dict[str, Any]
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    data_ptr: int
    readonly: bool
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: Any = None,
        dl_device: Any = None,
        copy: Any = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...

class StreamChunk:
    """A chunk popped from a StreamBuffer. Its slots go back to the producer
    when the chunk and every view made from it are gone, or at ``release()``
    (views made before keep theirs)."""

    chunk_index: int
    start_offset: int
    is_final: bool
    context_items: int
    data: dict[str, Any]
    """``{"data": None}`` (no items), the item (one), the stacked ``[n, *shape]``
    view (same shapes) or a list (mixed); torch tensors if torch imports, else
    read-only numpy arrays."""
    ids: list[str]
    alive: bool
    def __len__(self) -> int: ...
    def stacked(self) -> _View | None:
        """The window as one read-only ``[n, *shape]`` view (None: empty or mixed)."""
    def item(self, i: int) -> _View:
        """Item ``i`` as a read-only view of its own shape."""
    def release(self) -> None:
        """Gives up the chunk's lease (views made before keep theirs)."""
    def __enter__(self) -> StreamChunk: ...
    def __exit__(self, *exc: object) -> bool: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: Any = None,
        dl_device: Any = None,
        copy: Any = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...

class Slot:
    """A reserved producer slot: fill it in place, then ``commit(dtype, shape)``.
    Dropped (or left in a ``with``) uncommitted, it is abandoned."""

    tensor_id: str
    len: int
    position: int
    offset: int
    data_ptr: int
    is_open: bool
    __array_interface__: dict[str, Any]
    def numpy(self, dtype: Any = None, shape: Any = None) -> Any:
        """A writable numpy view of the slot (default: its bytes as uint8)."""
    def commit(self, dtype: Any, shape: list[int]) -> None:
        """Publishes the tensor written from the slot's start."""
    def abandon(self, reason: str | None = None, code: int = 0) -> None:
        """Gives the position up; the consumer's ``Abandoned`` carries
        ``reason`` (cut to 96 bytes) and ``code``. No effect once closed."""
    def __enter__(self) -> Slot: ...
    def __exit__(self, *exc: object) -> bool: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: Any = None,
        dl_device: Any = None,
        copy: Any = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...

class StreamKey:
    """Which stream of a StreamSet: its hub entry and that entry's generation
    (hashable; a key never names a later stream of the same entry)."""

    entry: int
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class _Buffer: ...

class _StreamSet:
    """The Rust stream set. ``wait_any`` sleeps once for its whole timeout, in
    slices of at most 1 s; a SIGINT handled in the waiting thread ends the
    sleep at once (KeyboardInterrupt), one handled just before the sleep's
    system call starts is seen when the slice ends (at most 1 s late)."""

    ...

class _SetWatch:
    """A set watched for an event loop (``shmstream._aio``): ``arm()`` makes
    a native thread wait in the set; ``fileno()`` turns readable when
    ``take()`` has the keys (or the set's closed error); ``disarm()`` ends
    the wait at once."""

    running: bool
    def __init__(self, set: _StreamSet) -> None: ...
    def fileno(self) -> int: ...
    def arm(self) -> None: ...
    def disarm(self) -> None: ...
    def take(self) -> list[StreamKey] | None: ...

class _SetUring:
    """A set awaited through an io_uring ``FUTEX_WAIT`` made by the event
    loop's thread (``shmstream._aio``): ``arm()`` looks and returns the keys
    ready, or None when it armed the wait; ``fileno()`` (an eventfd) turns
    readable when the wait ended, and ``take()`` looks again (the keys, or
    None: armed again); ``disarm()`` cancels the wait. OSError from the
    constructor where io_uring's ``FUTEX_WAIT`` is not available."""

    waiting: bool
    def __init__(self, set: _StreamSet) -> None: ...
    def fileno(self) -> int: ...
    def arm(self) -> list[StreamKey] | None: ...
    def disarm(self) -> None: ...
    def take(self) -> list[StreamKey] | None: ...

class _StreamWait:
    """A standalone buffer's (``kind="chunk"``) or a producer's (``"room"``,
    ``"drained"``) awaits (``shmstream._aio``): ``arm()`` looks and returns
    True when what is awaited is there, else False: it waits (an io_uring
    ``FUTEX_WAIT`` when ``uring``, else a native thread); ``fileno()`` turns
    readable when the wait ended, and ``take()`` says whether it is there
    (False: armed again) or raises the stream's error; ``disarm()`` gives
    the wait up. OSError from the constructor with ``uring`` where io_uring's
    ``FUTEX_WAIT`` is not available."""

    kind: str
    waiting: bool
    def __init__(self, target: _Buffer | _Producer, kind: str, uring: bool) -> None: ...
    def fileno(self) -> int: ...
    def arm(self, nbytes: int | None = None) -> bool: ...
    def disarm(self) -> None: ...
    def take(self) -> bool: ...

def _uring_available() -> bool:
    """Whether this kernel offers what ``_SetUring`` needs."""

class _Hub: ...
class _Producer: ...

def policy_name(name: str) -> str: ...
def policy_max_window(name: str) -> int: ...
def list_segments(prefix: str | None = None) -> list[str]:
    """Names (with their leading ``/``) of this user's segments starting with
    ``prefix`` (default: the library's), sorted."""

def remove_dead_segments(prefix: str | None = None) -> list[str]:
    """Removes this user's segments starting with ``prefix`` whose producer
    (or hub worker) is dead, never a live one's; returns the removed names."""

def _ready_chunk(buffer: _Buffer) -> StreamChunk | None:
    """The next chunk if one is ready now, else None; the stream's error
    (``ProducerGone``, ...) once the chunks before it are out."""

def _array_data(array: Any) -> int:
    """The address of a numpy array's first element (numpy's ``PyArray_DATA``)."""
