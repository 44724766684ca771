"""The operations test_threads.py's state machines run two or three at a
time from as many threads: every public method of Producer, Slot,
StreamBuffer, StreamSet, Hub, StreamChunk and the views made from them.

An operation takes the machine, whose lists (slots, chunks, views, keys,
producers) its threads share: one takes an object out (``take``) to use
it alone, or uses the newest one in place (``peek``) while another thread
may use it too. Every item written holds the number in its id (``t17``
holds 17), so whoever reads a chunk checks its bytes; each popped chunk's
start offset is noted, so the machine checks at the end that its stream
arrived in order with nothing lost.
"""

from __future__ import annotations

import gc
import itertools
import os
import re
import threading
from collections import defaultdict

import numpy as np
import shmstream as s
import torch

# What a call may raise when another thread got there first, a ring is
# full, nothing is ready, or an object was closed: the documented errors.
DOCUMENTED = (
    s.RingFull,
    s.StreamTimeout,
    s.SlotClosed,
    s.ChunkReleased,
    s.NotReady,
    s.AfterDone,
    s.Abandoned,
    s.PeerGone,  # ProducerGone, ConsumerGone, WorkerGone
    s.NotAnnounced,
    s.HubFull,
    KeyError,  # StreamSet[key] of a stream removed meanwhile
)

SERIAL = itertools.count()
# (operation, outcome) -> calls, over the session (what the runs covered)
TALLY: dict = defaultdict(int)
JOIN_WITHIN = 20.0  # seconds: a call that takes longer is a hang


class Nothing(Exception):
    """No object of that kind to use right now (not an error)."""


def documented(e: BaseException) -> bool:
    # A plain StreamError: "closed" (a producer or set), or wait_drained's
    # "not published" while a slot is open.
    return isinstance(e, DOCUMENTED) or type(e) is s.StreamError


def take(items: list):
    try:
        return items.pop()
    except IndexError:
        raise Nothing from None


def peek(items: list):
    try:
        return items[-1]
    except IndexError:
        raise Nothing from None


def value_of(tid: str) -> int:
    return int(tid[1:])


def array_of(tid: str) -> np.ndarray:
    return np.array([value_of(tid)], np.int64)


class Model:
    """What every machine shares: ids, the lists, the checks, the runner."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.slots: list = []  # (Slot, id)
        self.pending: list = []  # ids pre_read_registered, not put yet
        self.chunks: list = []
        self.views: list = []
        self.seen: dict = defaultdict(list)  # stream -> start offsets popped
        self.abandoned_at: dict = {}  # stream -> position reported abandoned
        self.errors: list = []
        self.steps = 0
        self.lock = threading.Lock()  # for the notes only

    def tid(self) -> str:
        return f"t{next(self.ids)}"

    def wrong(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def got(self, stream: str, chunk) -> None:
        """A chunk just popped: note where it starts, check its bytes."""
        if chunk is None:
            return
        if len(chunk):
            with self.lock:
                self.seen[stream].append(chunk.start_offset)
        ids = chunk.ids
        for i, tid in enumerate(ids):
            held = int(np.asarray(chunk.item(i))[0])
            if held != value_of(tid):
                self.wrong(f"{stream}: item {tid} at {chunk.start_offset + i} holds {held}")
        self.chunks.append(chunk)

    def note_abandoned(self, stream: str, e: s.Abandoned) -> None:
        m = re.search(r"position (\d+)", str(e))
        if m is None:
            self.wrong(f"{stream}: Abandoned without a position: {e}")
            return
        at = int(m.group(1))
        if self.abandoned_at.setdefault(stream, at) != at:
            self.wrong(f"{stream}: abandoned at {at} after {self.abandoned_at[stream]}")

    def run_together(self, ops, reps: int) -> None:
        """Runs each of `ops` `reps` times, each in its own thread, all
        started at once; fails on a call's undocumented exception (a Rust
        panic is a PanicException) or a thread still running after
        JOIN_WITHIN seconds."""
        self.steps += 1
        start = threading.Barrier(len(ops))

        def body(op) -> None:
            start.wait()
            for _ in range(reps):
                outcome = "ok"
                try:
                    op(self)
                except Nothing:
                    outcome = "nothing"
                except BaseException as e:  # PanicException is a BaseException
                    outcome = type(e).__name__
                    if not documented(e):
                        self.wrong(f"{op.__name__}: {type(e).__name__}: {e}")
                TALLY[(op.__name__, outcome)] += 1

        threads = [threading.Thread(target=body, args=(op,), daemon=True) for op in ops]
        for t in threads:
            t.start()
        for t in threads:
            t.join(JOIN_WITHIN)
        hung = [op.__name__ for op, t in zip(ops, threads) if t.is_alive()]
        assert not hung, f"still running after {JOIN_WITHIN} s: {hung}"
        assert not self.errors, self.errors

    def check_order(self, stream: str) -> None:
        """The chunks popped started at 0, 1, 2, ... each once (fixed:size=1)."""
        seen = sorted(self.seen[stream])
        assert seen == list(range(len(seen))), f"{stream}: popped {seen}"


def write(slot, tid: str) -> None:
    slot.numpy(np.int64, (1,))[0] = value_of(tid)


# --- a Producer and its Slots (the machine has .p, .closed) -------------
def register_commit(m):
    tid = m.tid()
    slot = m.p.register(tid)
    write(slot, tid)
    slot.commit("i64", [1])


def register_keep(m):
    tid = m.tid()
    m.slots.append((m.p.register(tid), tid))


def commit_taken(m):
    slot, tid = take(m.slots)
    try:
        write(slot, tid)
        slot.commit(np.int64, [1])
    except BaseException:
        m.slots.append((slot, tid))
        raise


def commit_shared(m):
    # Two threads may commit (or one abandon) the same slot: one wins, the
    # others get SlotClosed. Both write the same bytes.
    slot, tid = peek(m.slots)
    write(slot, tid)
    slot.commit("i64", [1])


def abandon_shared(m):
    slot, _ = peek(m.slots)
    slot.abandon()


def exit_taken(m):
    slot, _ = take(m.slots)
    with slot:
        pass


def drop_taken(m):
    take(m.slots)
    gc.collect(0)


def look_at_slot(m):
    slot, _ = peek(m.slots)
    repr(slot)
    _ = (slot.is_open, slot.len, slot.position, slot.offset, slot.tensor_id, slot.data_ptr)
    capsule = slot.__dlpack__()
    del capsule
    a = np.asarray(slot)
    t = torch.from_dlpack(slot)
    del a, t


def put(m):
    tid = m.tid()
    m.p.put(tid, array_of(tid))


def put_many(m):
    a, b = m.tid(), m.tid()
    m.p.put_many([(a, array_of(a)), (b, array_of(b))])


def put_stacked(m):
    ids = [m.tid(), m.tid()]
    m.p.put_many(ids, stacked=np.stack([array_of(t) for t in ids]))


def pre_read_register(m):
    tid = m.tid()
    m.p.pre_read_register(tid)
    m.pending.append(tid)


def put_pending(m):
    tid = take(m.pending)
    try:
        m.p.put(tid, array_of(tid))
    except BaseException:
        m.pending.append(tid)
        raise


def wait_drained(m):
    m.p.wait_drained(0.002)


def producer_looks(m):
    p = m.p
    _ = (p.capacity, p.item_bytes, p.payload_bytes, p.registered, p.payload_region)
    repr(p)


def signal_done(m):
    m.p.signal_done()


def close_producer(m):
    m.closed = True
    m.p.close()


PRODUCER_OPS = [
    register_commit,
    register_keep,
    register_keep,
    commit_taken,
    commit_shared,
    abandon_shared,
    exit_taken,
    drop_taken,
    look_at_slot,
    put,
    put_many,
    put_stacked,
    pre_read_register,
    put_pending,
    wait_drained,
    producer_looks,
]
PRODUCER_ENDS = [signal_done, close_producer]


# --- a StreamBuffer (the machine has .b, .stream) and its chunks --------
def pop_chunk(m):
    try:
        m.got(m.stream, m.b.pop_chunk())
    except s.Abandoned as e:
        m.note_abandoned(m.stream, e)


def next_chunk(m):
    try:
        m.got(m.stream, m.b.next_chunk(0.002))
    except s.Abandoned as e:
        m.note_abandoned(m.stream, e)


def has_chunk_ready(m):
    m.b.has_chunk_ready()


def buffer_looks(m):
    b = m.b
    _ = (b.consumed, b.finished, b.live_chunks, b.capacity, b.payload_region, b.producer_done)
    _ = (b.request_id, b.edge_name, b.from_partition, b._consumed)
    repr(b)


def edges(m):
    m.b.store_uningested_edge(("edge", m.tid()))
    m.b.pop_waiting_edge()


# Popping weighs as much as the chunk operations that need chunks.
CONSUMER_OPS = [pop_chunk, pop_chunk, next_chunk, next_chunk, has_chunk_ready, buffer_looks, edges]


# --- the drop-in StreamBuffer's own producer's side (.b) -----------------
def dropin_register(m):
    tid = m.tid()
    m.b.pre_read_register(tid)
    m.pending.append(tid)


def dropin_put(m):
    tid = take(m.pending)
    try:
        m.b.put(tid, array_of(tid))
    except BaseException:
        m.pending.append(tid)
        raise


def dropin_done(m):
    m.b.signal_done()


DROPIN_OPS = [dropin_register, dropin_put, dropin_put]
DROPIN_ENDS = [dropin_done]


# --- chunks and their views (any machine) -------------------------------
def chunk_data(m):
    c = peek(m.chunks)
    d = c.data["data"]
    if len(c):
        # One item: its tensor; several: stacked (fixed:size=1 gives one).
        got = int(np.asarray(d).reshape(-1)[0])
        if got != value_of(c.ids[0]):
            m.wrong(f"chunk {c.start_offset}: data holds {got}, id {c.ids[0]}")


def chunk_views(m):
    c = peek(m.chunks)
    repr(c)
    _ = (c.chunk_index, c.start_offset, c.is_final, c.context_items, c.alive, len(c))
    if not len(c):
        return
    kept = [np.asarray(c.item(0)), c.stacked(), torch.from_dlpack(c), np.from_dlpack(c)]
    kept.append(c.__dlpack__(max_version=(1, 0)))
    if int(kept[0][0]) != value_of(c.ids[0]):
        m.wrong(f"chunk {c.start_offset}: item 0 holds {int(kept[0][0])}")
    m.views.append(kept[next(m.ids) % len(kept)])  # one of them outlives the call


def chunk_release(m):
    peek(m.chunks).release()


def chunk_exit(m):
    with take(m.chunks):
        pass


def chunk_drop(m):
    take(m.chunks)
    gc.collect(0)


def view_drop(m):
    take(m.views)
    gc.collect(0)


def collect(m):
    # The young generations, where the objects of a step are: a full
    # collection costs 0.2 s with torch loaded (teardown runs one).
    gc.collect(1)


CHUNK_OPS = [chunk_data, chunk_views, chunk_release, chunk_exit, chunk_drop, view_drop, collect]


# --- a StreamSet and a Hub (the machine has .set, .hub, .producers) -----
def create_stream(m):
    rid = f"{m.worker}-s{next(m.ids)}"
    p = m.hub.create_stream(rid, "e", "p", capacity=8, item_bytes=64, timeout=0.005)
    m.producers.append((rid, p))


def put_to_stream(m):
    _, p = peek(m.producers)
    tid = m.tid()
    p.put(tid, array_of(tid))


def put_many_to_stream(m):
    _, p = peek(m.producers)
    ids = [m.tid(), m.tid()]
    p.put_many(ids, stacked=np.stack([array_of(t) for t in ids]))


def done_stream(m):
    rid, p = take(m.producers)
    p.signal_done()
    m.finished.append((rid, p))


def close_stream(m):
    _, p = take(m.producers)
    p.close()


def wait_any(m):
    m.keys.extend(m.set.wait_any(0.002))


def a_key(m):
    """The newest key wait_any returned, else any key of the set."""
    keys = m.keys or m.set.keys()
    return peek(keys)


def ready_chunks(m):
    key = a_key(m)
    stream = m.set[key].request_id
    try:
        for chunk in m.set.ready_chunks(key):
            m.got(stream, chunk)
    except s.Abandoned as e:
        m.note_abandoned(stream, e)


def set_buffer(m):
    key = a_key(m)
    b = m.set[key]
    b.has_chunk_ready()
    _ = (b.live_chunks, b.consumed, b.finished, b.policy, key in m.set)
    try:
        m.got(b.request_id, b.pop_chunk())
    except s.Abandoned as e:
        m.note_abandoned(b.request_id, e)


def remove_stream(m):
    key = take(m.keys)
    m.removed.append(m.set.remove(key))


def discard_stream(m):
    m.set.discard(a_key(m))


def add_stream(m):
    announced = m.set.announced()
    if announced:
        m.keys.append(m.set.add(*announced[0], "fixed:size=1"))


def set_looks(m):
    st = m.set
    _ = (len(st), st.keys(), list(st), st.name, st.prefix, st.default_policy, st.closed)
    st.find(f"{m.worker}-s0", "e", "p")
    st.take_adopt_errors()
    repr(st)
    _ = (m.hub.name, repr(m.hub))


def close_set(m):
    m.set.close()


SET_OPS = [
    create_stream,
    create_stream,
    put_to_stream,
    put_to_stream,
    put_many_to_stream,
    wait_any,
    wait_any,
    ready_chunks,
    ready_chunks,
    set_buffer,
    remove_stream,
    discard_stream,
    add_stream,
    set_looks,
]
SET_ENDS = [close_set, done_stream, close_stream]


def new_stream_id() -> tuple[str, str, str]:
    return (f"tht-{os.getpid()}-{next(SERIAL)}", "e", "p")
