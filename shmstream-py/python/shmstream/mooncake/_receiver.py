"""The receiving side: remote tensors land in their stream's slots through
Mooncake's transfer engine, with one memory registration per stream."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .._errors import RingFull, SetupFailed, StreamError
from ._announce import Announcement
from ._engine import new_engine

Ident = tuple[str, str, str]
Completion = Callable[[Announcement, Optional[str]], None]

MAX_BATCH = 64  # reads per engine call: bounded so one batch's failure retries cheaply
COALESCE_BYTES = 1 << 20  # the longest read that covers several tensors
# The most padding between two tensors that one read may cover: a ring's
# placement aligns a tensor to at most 64 bytes (`placement_align`), so
# consecutive reservations of one stream are at most 63 bytes apart.
MAX_GAP = 63
# The async reads' polling: the first nap, doubling each round up to the
# last. Not shortened when a round completed some reads while others are
# pending: on a busy engine a reader then polls (and commits, and wakes the
# consumer) a few times per batch instead of once per completion; at 64 KiB
# that took the receiver's and the worker's CPU per tensor down by about
# 15% and 30% here. An idle engine's read is still seen after 20 us.
NAP_FIRST = 20e-6
NAP_MAX = 2e-3

Item = tuple["_Stream", Announcement, Any]


class ReadFailed(StreamError):
    """A read of the engine failed: names the tensor, the session and the status."""


@dataclass
class _Stream:
    ident: Ident
    producer: Any
    region: tuple[int, int]
    owner: Any = None
    owned: bool = False
    backlog: deque[Announcement] = field(default_factory=deque)
    inflight: int = 0
    done_asked: bool = False
    failed: str | None = None
    unsettled: bool = False  # a read given up on that the engine may still finish


@dataclass
class Counters:
    """What the receiver did (the benchmark's per-item figures come from here)."""

    items: int = 0
    bytes: int = 0
    engine_calls: int = 0
    reads: int = 0  # contiguous transfers submitted (one per tensor, or per coalesced run)
    coalesced: int = 0  # tensors read by a transfer that covered several
    registrations: int = 0
    failures: list[str] = field(default_factory=list)


class Receiver:
    """Reads announced remote tensors into the slots of shmstream streams.

    ``engine``: an initialized ``mooncake.engine.TransferEngine`` (None:
    one is initialized with ``hostname``, P2PHANDSHAKE metadata and
    ``protocol`` ``tcp`` or ``rdma``). Streams are added with
    :meth:`add_stream` (a :class:`~shmstream.Producer`), or created on
    their first announcement through ``hub`` (a :class:`~shmstream.Hub`)
    with ``capacity``, ``item_bytes`` and ``payload_bytes``, or what
    ``stream_options(ident)`` returns (a dict of those) for the stream.

    :meth:`submit` takes announcements in the sender's order: it reserves
    each tensor's slot in that order (so the consumer's stream order is
    the announcement order) and queues it per sender session; at most
    ``per_session`` reader tasks per session (on ``threads`` threads; default
    4 with async reads, 1 with sync: on TCP here four concurrent sync calls
    to one session were slower than one, four async batches faster) each
    take up to ``max_batch`` runs off the queue at a time, read them and
    commit each slot when its read returned 0: completions, and commits,
    come in any order. A run is consecutive tensors of one stream whose
    remote addresses lie as far apart as their slots (the sender laid them
    out back to back, as the ring did): ONE transfer of their summed
    length, at most ``coalesce_bytes`` (0: never); the slot addresses are
    checked, so a ring wrap or a gap at the sender starts a new run. While
    the engine is busy the queue grows and runs get longer; an idle engine
    reads a tensor at once. ``reads="async"`` (the default) submits each
    run with ``batch_transfer_async_read`` and polls
    ``transfer_check_status`` with sleeps growing from 20 us to 2 ms while
    its reads are pending (``NAP_FIRST``, ``NAP_MAX``), committing the
    runs each round found complete; the sync call spins a core while it waits
    (here async took 30-50% less CPU at 56 B, 64 KiB and 2 MiB). A read not
    finished after ``read_timeout`` seconds counts as failed.
    ``reads="sync"``: one ``batch_transfer_sync_read`` per batch of runs.
    A failed run (the engine settled it) is retried one tensor at a time,
    so that only the tensors whose own read fails are abandoned (each with
    its engine status).
    A stream whose ring is full keeps its announcements in a backlog that
    :meth:`pump` retries; other streams go on meanwhile.

    A read that fails (engine status < 0) abandons its slot (the consumer
    sees :class:`~shmstream.Abandoned` naming the tensor at that position,
    nothing half-written, with the engine's status as its ``code`` and
    ``reason``) and ends that stream: the failure (tensor,
    session, address, status) is in :attr:`counters` and on stderr, later
    announcements of the stream are refused, and its ring takes no new
    registration, so a transfer the engine gave up on (a timeout) can never
    land in a reused slot. ``on_complete(announcement, error)`` is called
    for every announcement once its slot is committed (error None) or it
    failed or was refused (error a message), from a reader thread.
    """

    def __init__(
        self,
        engine: Any = None,
        *,
        hub: Any = None,
        hostname: str = "127.0.0.1",
        protocol: str = "tcp",
        capacity: int = 256,
        item_bytes: int = 65536,
        payload_bytes: int | None = None,
        max_batch: int = MAX_BATCH,
        threads: int = 4,
        per_session: int | None = None,
        reads: str = "async",
        read_timeout: float = 30.0,
        coalesce_bytes: int = COALESCE_BYTES,
        stream_options: Callable[[Ident], dict[str, Any]] | None = None,
        on_complete: Completion | None = None,
    ) -> None:
        self.engine = engine if engine is not None else new_engine(hostname, protocol=protocol)
        self._hub = hub
        self._options = {
            "capacity": capacity,
            "item_bytes": item_bytes,
            "payload_bytes": payload_bytes,
        }
        self._stream_options = stream_options
        self._max_batch = max(1, max_batch)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="mooncake-read")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._streams: dict[Ident, _Stream] = {}
        if reads not in ("async", "sync"):
            raise SetupFailed(f"mooncake Receiver: reads={reads!r}, expected 'async' or 'sync'")
        self._reads = reads
        self._read_timeout = read_timeout
        self._coalesce = max(0, coalesce_bytes)
        # Sync calls spin a thread each, and concurrent ones to one session
        # were slower on TCP here; async reads were faster four batches deep.
        if per_session is None:
            per_session = 4 if reads == "async" else 1
        self._per_session = max(1, per_session)
        # Per sender session: tensors reserved and not yet handed to the
        # engine, and the reader tasks taking them (at most per_session).
        self._queues: dict[str, deque[Item]] = {}
        self._readers: dict[str, int] = {}
        self._quarantine: list[_Stream] = []
        self._on_complete = on_complete
        self.counters = Counters()

    # --- streams ----------------------------------------------------------
    def add_stream(
        self, ident: Ident, producer: Any, owner: Any = None, *, owned: bool = False
    ) -> None:
        """Reads the announcements of stream ``ident`` into ``producer``'s
        slots: registers its payload region (both halves of the mirror)
        with the engine, once. The receiver signals done on it after the
        stream's 'done' and its last commit; ``owned``: it also closes it
        then (streams it creates through the hub are owned)."""
        addr, length = producer.payload_region
        rc = self.engine.register_memory(addr, length)
        if rc != 0:
            raise SetupFailed(
                f"stream {'/'.join(ident)}: mooncake register_memory({addr:#x}, {length}) "
                f"returned {rc}"
            )
        with self._lock:
            self.counters.registrations += 1
            self._streams[ident] = _Stream(ident, producer, (addr, length), owner, owned)

    def _stream(self, ident: Ident, owner: Any) -> _Stream:
        st = self._streams.get(ident)
        if st is not None:
            return st
        if self._hub is None:
            raise StreamError(
                f"stream {'/'.join(ident)}: not added to the receiver (add_stream), "
                "and it has no hub to create it in"
            )
        options = self._options if self._stream_options is None else self._stream_options(ident)
        producer = self._hub.create_stream(*ident, **options)
        self.add_stream(ident, producer, owner, owned=True)
        return self._streams[ident]

    @property
    def streams(self) -> int:
        """Streams being received (added, not yet finished)."""
        with self._lock:
            return len(self._streams)

    # --- announcements -----------------------------------------------------
    def submit(self, announcements: Iterable[Announcement], owner: Any = None) -> None:
        """Reserves the announced tensors' slots in order and starts their reads."""
        ready: list[Item] = []
        touched: dict[Ident, _Stream] = {}
        for ann in announcements:
            try:
                st = self._stream(ann.stream, owner)
            except StreamError as e:
                self._complete(ann, str(e))
                continue
            touched[st.ident] = st
            with self._lock:
                why = st.failed or ("announced after 'done'" if st.done_asked else None)
                if ann.done:
                    st.done_asked = True
                elif why is None:
                    st.backlog.append(ann)
            if why is not None and not ann.done:
                self._complete(ann, f"stream {'/'.join(st.ident)} refused {ann.tensor_id!r}: {why}")
        for st in touched.values():
            self._reserve(st, ready)
        self._dispatch(ready)
        for st in touched.values():
            self._maybe_finish(st)

    def pump(self) -> bool:
        """Retries the backlogs of full rings; whether any backlog remains."""
        ready: list[Item] = []
        with self._lock:
            streams = list(self._streams.values())
        for st in streams:
            if st.backlog:
                self._reserve(st, ready)
        self._dispatch(ready)
        for st in streams:
            self._maybe_finish(st)
        return any(s.backlog for s in streams)

    def _reserve(self, st: _Stream, ready: list[Item]) -> None:
        # Under the lock: a reader thread failing the stream clears its backlog.
        while True:
            with self._lock:
                if not st.backlog or st.failed is not None:
                    return
                ann = st.backlog[0]
                try:
                    slot = st.producer.register(ann.tensor_id, ann.nbytes, timeout=0)
                except RingFull:
                    return
                except StreamError as e:
                    error = e
                else:
                    st.backlog.popleft()
                    st.inflight += 1
                    ready.append((st, ann, slot))
                    continue
            self._fail(st, f"registering {ann.tensor_id!r}: {error}")
            return

    def _dispatch(self, ready: list[Item]) -> None:
        """Queues the reserved tensors per session and starts readers (at
        most ``per_session`` per session). A reader takes up to
        ``max_batch`` runs from its queue at a time, so while the engine is
        busy the tensors that arrive meanwhile queue up and are read in
        longer runs; when it is idle, a tensor is read at once."""
        starts: list[str] = []
        with self._lock:
            touched: dict[str, deque[Item]] = {}
            for item in ready:
                q = self._queues.setdefault(item[1].session, deque())
                q.append(item)
                touched[item[1].session] = q
            for session, q in touched.items():
                active = self._readers.get(session, 0)
                more = min(self._per_session - active, -(-len(q) // self._max_batch))
                if more > 0:
                    self._readers[session] = active + more
                    starts += [session] * more
        for session in starts:
            self._pool.submit(self._reader, session)

    def _reader(self, session: str) -> None:
        while True:
            with self._lock:
                q = self._queues.get(session)
                if not q:
                    self._readers[session] -= 1
                    return
                runs = self._take_runs(q)
            try:
                self._read(session, runs)
            except Exception as e:  # noqa: BLE001 (settled by _read; the reader goes on)
                print(f"shmstream.mooncake: reader of {session}: {e!r}", file=sys.stderr)

    def _take_runs(self, q: deque[Item]) -> list[list[Item]]:
        """Takes up to ``max_batch`` runs off the front of ``q``: each run is
        consecutive tensors of one stream lying as far apart at the sender
        as their slots lie here (a gap of at most ``MAX_GAP`` padding
        bytes), read as one transfer of at most ``coalesce_bytes``. The
        slot addresses are checked, not assumed: a ring that wrapped (or a
        sender that left a gap) starts a new run."""
        runs: list[list[Item]] = []
        # Per stream: the open run, its first slot's address, the last
        # tensor's slot address and remote address.
        open_runs: dict[int, tuple[list[Item], int, int, int]] = {}
        while q:
            st, ann, slot = q[0]
            if ann.nbytes == 0:
                if len(runs) == self._max_batch:
                    break
                runs.append([q.popleft()])
                open_runs.pop(id(st), None)
                continue
            ptr = slot.data_ptr
            cur = open_runs.get(id(st))
            if cur is not None:
                run, first, last_ptr, last_addr = cur
                gap = ptr - last_ptr
                prev = run[-1][1].nbytes
                if (
                    ann.addr - last_addr == gap
                    and prev <= gap <= prev + MAX_GAP
                    and ptr + ann.nbytes - first <= self._coalesce
                ):
                    run.append(q.popleft())
                    open_runs[id(st)] = (run, first, ptr, ann.addr)
                    continue
            if len(runs) == self._max_batch:
                break
            run = [q.popleft()]
            runs.append(run)
            open_runs[id(st)] = (run, ptr, ptr, ann.addr)
        return runs

    @staticmethod
    def _span(run: list[Item]) -> tuple[int, int, int]:
        """(local address, remote address, length) of a run's one transfer."""
        first, last = run[0], run[-1]
        ptr = first[2].data_ptr
        return ptr, first[1].addr, last[2].data_ptr + last[1].nbytes - ptr

    # --- the reads (reader threads) ----------------------------------------
    def _read(self, session: str, runs: list[list[Item]]) -> None:
        items = [it for run in runs for it in run]
        try:
            if self._reads == "async":
                self._read_async(session, runs)
                return
            live = [run for run in runs if run[0][1].nbytes > 0]
            status = self._engine_read(session, live) if live else 0
            if status >= 0:
                self._commit_all(items)
                return
            # The engine's status is per batch: find which reads failed,
            # a run's tensors one at a time.
            for run in runs:
                if run[0][1].nbytes == 0:
                    own = 0
                elif len(live) > 1:
                    own = self._engine_read(session, [run])
                else:
                    own = status
                if own < 0 and len(run) > 1:
                    for it in run:
                        self._finish_read(*it, self._engine_read(session, [[it]]))
                    continue
                for it in run:
                    self._finish_read(*it, own)
        except BaseException as e:  # noqa: BLE001 (a reader thread must settle every slot)
            for st, ann, slot in items:
                if slot.is_open:
                    slot.abandon(f"mooncake read raised {e!r}")
                    self._fail(st, f"reading {ann.tensor_id!r}: {e!r}")
                    self._settle(st, ann, f"{e!r}")
            raise

    def _read_async(self, session: str, runs: list[list[Item]]) -> None:
        """One asynchronous read per run (the engine's status of a batch
        covers its first task only), polled with growing sleeps."""
        pending: list[tuple[int, list[Item]]] = []
        ready = [it for run in runs for it in run if it[1].nbytes == 0]
        todo = [run for run in runs if run[0][1].nbytes > 0]
        while True:
            submitted = 0
            for run in todo:
                ptr, addr, length = self._span(run)
                bid = self.engine.batch_transfer_async_read(session, [ptr], [addr], [length])
                if bid <= 0 or bid >= 1 << 63:  # 0, or -1 as an unsigned batch id
                    for it in run:
                        self._finish_read(*it, -1)
                else:
                    submitted += 1
                    pending.append((bid, run))
            self._count(submitted, todo)
            todo = []
            deadline = time.monotonic() + self._read_timeout
            nap = NAP_FIRST
            while pending or ready:
                if ready:
                    self._commit_all(ready)
                    ready = []
                if not pending:
                    break
                time.sleep(nap)
                nap = min(nap * 2, NAP_MAX)
                left = []
                for bid, run in pending:
                    status = self.engine.transfer_check_status(bid)
                    if status == 1:
                        ready.extend(run)
                    elif status == -1 and len(run) > 1:
                        # Settled by the engine: retried one tensor at a
                        # time, to fail only the tensors that fail alone.
                        todo.extend([it] for it in run)
                    elif status == -1:
                        self._finish_read(*run[0], -1)
                    elif time.monotonic() > deadline:
                        # Not finished: the slots are abandoned and the
                        # stream ends, so a late completion lands in a
                        # ring that is never registered into again, and
                        # stays mapped (quarantined) until the receiver
                        # closes.
                        for it in run:
                            it[0].unsettled = True
                            self._finish_read(*it, status if status < 0 else -3)
                    else:
                        left.append((bid, run))
                pending = left
                if todo:
                    break  # submit the retries, then poll everything
            if not todo:
                return

    def _count(self, submitted: int, runs: list[list[Item]]) -> None:
        with self._lock:
            self.counters.engine_calls += submitted
            self.counters.reads += len(runs)
            self.counters.coalesced += sum(len(run) for run in runs if len(run) > 1)

    def _commit_all(self, items: list[Item]) -> None:
        """The whole batch read: commits it with one lock round for the
        bookkeeping (the common path, per batch rather than per item)."""
        done: list[Item] = []
        for st, ann, slot in items:
            try:
                slot.commit(ann.dtype, list(ann.shape))
            except StreamError:
                self._finish_read(st, ann, slot, 0)  # names the refusal, settles
                continue
            done.append((st, ann, slot))
        touched = {}
        with self._lock:
            for st, ann, _ in done:
                self.counters.items += 1
                self.counters.bytes += ann.nbytes
                st.inflight -= 1
                touched[id(st)] = st
            self._idle.notify_all()
        for _, ann, _ in done:
            self._complete(ann, None)
        for st in touched.values():
            self._maybe_finish(st)

    def _engine_read(self, session: str, runs: list[list[Item]]) -> int:
        spans = [self._span(run) for run in runs]
        status = self.engine.batch_transfer_sync_read(
            session,
            [ptr for ptr, _, _ in spans],
            [addr for _, addr, _ in spans],
            [length for _, _, length in spans],
        )
        with self._lock:
            self.counters.engine_calls += 1
            self.counters.reads += len(runs)
            self.counters.coalesced += sum(len(run) for run in runs if len(run) > 1)
        return int(status)

    def _finish_read(self, st: _Stream, ann: Announcement, slot: Any, status: int) -> None:
        if status >= 0:
            try:
                slot.commit(ann.dtype, list(ann.shape))
            except StreamError as e:
                slot.abandon(f"commit refused: {e}")
                self._fail(st, f"committing {ann.tensor_id!r}: {e}")
                self._settle(st, ann, str(e))
                return
            with self._lock:
                self.counters.items += 1
                self.counters.bytes += ann.nbytes
            self._settle(st, ann, None)
            return
        # The engine returned: the transfer finished or failed (or the engine
        # gave up on it). The slot is abandoned and the stream ends, so its
        # ring is never registered into again while this receiver lives.
        outcome = (
            f"not finished after {self._read_timeout} s (engine status {status})"
            if st.unsettled
            else f"failed: engine status {status}"
        )
        # The consumer's Abandoned carries the engine's status as its code
        # and this text (cut to 96 bytes: the status first, then where
        # from; the consumer's error names the tensor and position).
        slot.abandon(
            f"mooncake read {outcome}, {ann.nbytes} B from {ann.session} at {ann.addr:#x}",
            status,
        )
        why = (
            f"mooncake read of tensor {ann.tensor_id!r} (stream {'/'.join(st.ident)}) from "
            f"{ann.session} at {ann.addr:#x}, {ann.nbytes} bytes, {outcome}"
        )
        self._fail(st, why)
        self._settle(st, ann, why)

    def _settle(self, st: _Stream, ann: Announcement, error: str | None) -> None:
        with self._lock:
            st.inflight -= 1
            self._idle.notify_all()
        self._complete(ann, error)
        self._maybe_finish(st)

    def _complete(self, ann: Announcement, error: str | None) -> None:
        if self._on_complete is not None:
            self._on_complete(ann, error)

    # --- the end of a stream ------------------------------------------------
    def _fail(self, st: _Stream, why: str) -> None:
        with self._lock:
            first = st.failed is None
            if first:
                st.failed = why
                self.counters.failures.append(why)
            refused = list(st.backlog)
            st.backlog.clear()
        if first:
            print(f"shmstream.mooncake: {why}", file=sys.stderr, flush=True)
        for ann in refused:
            self._complete(ann, f"stream {'/'.join(st.ident)} refused {ann.tensor_id!r}: {why}")

    def abort_owner(self, owner: Any, why: str) -> None:
        """Ends every unfinished stream of ``owner`` (a sender's connection
        closed before its 'done'): the consumer sees the producer gone
        after the items committed before."""
        with self._lock:
            streams = [s for s in self._streams.values() if s.owner is owner]
        for st in streams:
            if not st.done_asked:
                self._fail(st, why)
                with self._lock:
                    st.done_asked = True
            self._maybe_finish(st)

    def _maybe_finish(self, st: _Stream) -> None:
        with self._lock:
            if not st.done_asked or st.inflight or st.backlog:
                return
            if self._streams.get(st.ident) is not st:
                return
            del self._streams[st.ident]
        if st.failed is None:
            st.producer.signal_done()
        self._retire(st)

    def _retire(self, st: _Stream, closing: bool = False) -> None:
        if st.unsettled and not closing:
            with self._lock:
                self._quarantine.append(st)
            return
        # Unregister before the mapping can go (the producer's close unmaps it).
        self.engine.unregister_memory(st.region[0])
        if st.owned:
            st.producer.close()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until no read is in flight; whether that happened in time."""
        with self._idle:
            return self._idle.wait_for(
                lambda: all(s.inflight == 0 for s in self._streams.values()), timeout
            )

    def close(self) -> None:
        """Waits for the reads in flight, then ends every stream left (failed
        ones without 'done'), unregisters their memory and drops them."""
        self._pool.shutdown(wait=True)
        with self._lock:
            left = list(self._streams.values()) + self._quarantine
            self._streams.clear()
            self._quarantine = []
        for st in left:
            self._retire(st, closing=True)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
