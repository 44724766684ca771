"""Python threads on shared shmstream objects (issue 21): no Rust panic
reaches Python, whatever the call order, and the stream stays whole.

The GIL is released in every blocking call and the garbage collector runs
in whatever thread allocates, so each object must be safe when reached
from two threads at once. ``SHMSTREAM_STRESS=1`` runs the long versions.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import shmstream as s
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from threads_model import (
    CHUNK_OPS,
    CONSUMER_OPS,
    DROPIN_ENDS,
    DROPIN_OPS,
    PRODUCER_ENDS,
    PRODUCER_OPS,
    SERIAL,
    SET_ENDS,
    SET_OPS,
    Model,
    array_of,
    new_stream_id,
)

STRESS = os.environ.get("SHMSTREAM_STRESS") == "1"
HERE = Path(__file__).parent


def test_threads_on_one_producer_never_panic_and_keep_the_stream():
    """Defect 1: Slot.abandon(), Slot.__exit__ and a collected Slot gave
    the slot up after the producer's lock was let go, while other threads
    put and registered: 'already borrowed' panics out of the producer's
    RefCell, in deallocators too (where one can abort the process). In a
    child process, so that an abort fails the test instead of ending it."""
    seconds = 60 if STRESS else 5
    proc = subprocess.run(
        [sys.executable, str(HERE / "thread_stress.py"), str(seconds), "21"],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    assert proc.returncode == 0, f"the child ended with {proc.returncode}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["rounds"] >= 1 and report["ops"] > 0, report
    assert report["unexpected"] == {}, report
    assert report["unraisable"] == [], report
    assert report["wrong"] == [], report
    assert "panicked" not in proc.stderr, proc.stderr[-3000:]


# --- every method pair, from threads: hypothesis' state machines ---------
# Each step runs two or three operations (threads_model.py) at once, each
# in its own thread, a few times over; objects are dropped and collected
# between and during steps. Short here; SHMSTREAM_STRESS=1 runs long.
STEPS = 60 if STRESS else 12
SETTINGS = settings(
    max_examples=300 if STRESS else 10,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def unraisable_seen():
    """Collects what deallocators raise (a panic in a Slot's Drop, say)."""
    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(f"{type(u.exc_value).__name__}: {u.exc_value}")
    return seen, previous


class ProducerAndReader(RuleBasedStateMachine):
    """A Producer, its Slots, the StreamBuffer that reads it, chunks, views."""

    def __init__(self):
        super().__init__()
        self.m = Model()
        self.m.stream = "stream"
        sid = new_stream_id()
        self.m.p = s.Producer(*sid, capacity=64, item_bytes=64, timeout=0.005)
        self.m.b = s.StreamBuffer.open(*sid, policy="fixed:size=1", timeout=0)
        self.m.closed = False
        self.unraisable, self.hook = unraisable_seen()

    @rule(
        ops=st.lists(
            st.sampled_from(PRODUCER_OPS + CONSUMER_OPS + CHUNK_OPS), min_size=2, max_size=3
        ),
        reps=st.integers(1, 4),
    )
    def together(self, ops, reps):
        self.m.run_together(ops, reps)

    @precondition(lambda self: self.m.steps >= STEPS * 2 // 3)
    @rule(
        end=st.sampled_from(PRODUCER_ENDS),
        ops=st.lists(st.sampled_from(PRODUCER_OPS + CONSUMER_OPS + CHUNK_OPS), max_size=2),
    )
    def ending(self, end, ops):
        """Closing or ending an object while others use it, late in a run
        (earlier, it would leave little but "closed" to test)."""
        self.m.run_together([end, *ops], 1)

    @invariant()
    def nothing_raised_in_a_deallocator(self):
        assert not self.unraisable, self.unraisable

    def teardown(self):
        m = self.m
        try:
            # Give every open slot up, put every pending id, let go of every
            # chunk and view, then read the rest of the stream.
            while m.slots:
                m.slots.pop()[0].abandon()
            for tid in m.pending:
                try:
                    m.p.put(tid, array_of(tid))
                except s.StreamError:
                    pass  # done or closed: the position stays pending
            m.chunks.clear()
            m.views.clear()
            gc.collect()
            end = None
            while end is None:
                try:
                    chunk = m.b.next_chunk(0.05)
                except s.Abandoned as e:
                    m.note_abandoned(m.stream, e)
                    end = "abandoned"
                except (s.StreamTimeout, s.ProducerGone) as e:
                    end = type(e).__name__
                else:
                    if chunk is None:
                        end = "final"
                    else:
                        m.got(m.stream, chunk)
                        m.chunks.clear()
            assert not m.errors, m.errors
            m.check_order(m.stream)
            popped = len(m.seen[m.stream])
            if m.stream in m.abandoned_at:
                # Everything before the first abandoned position, then it.
                assert popped == m.abandoned_at[m.stream], (popped, m.abandoned_at)
            elif not m.closed and not m.pending:
                # Nothing lost: every registered position was popped.
                assert popped == m.p.registered, (popped, m.p.registered, end)
            gc.collect()
            assert not self.unraisable, self.unraisable
        finally:
            sys.unraisablehook = self.hook


class InProcessBuffer(RuleBasedStateMachine):
    """The drop-in StreamBuffer: its own producer's side and its reader's."""

    def __init__(self):
        super().__init__()
        self.m = Model()
        self.m.stream = "stream"
        self.m.b = s.StreamBuffer(*new_stream_id(), "fixed:size=1", capacity=64, item_bytes=64)
        self.unraisable, self.hook = unraisable_seen()

    @rule(
        ops=st.lists(
            st.sampled_from(DROPIN_OPS + CONSUMER_OPS + CHUNK_OPS), min_size=2, max_size=3
        ),
        reps=st.integers(1, 4),
    )
    def together(self, ops, reps):
        self.m.run_together(ops, reps)

    @precondition(lambda self: self.m.steps >= STEPS * 2 // 3)
    @rule(
        end=st.sampled_from(DROPIN_ENDS),
        ops=st.lists(st.sampled_from(DROPIN_OPS + CONSUMER_OPS + CHUNK_OPS), max_size=2),
    )
    def ending(self, end, ops):
        """Closing or ending an object while others use it, late in a run
        (earlier, it would leave little but "closed" to test)."""
        self.m.run_together([end, *ops], 1)

    def teardown(self):
        try:
            m = self.m
            m.chunks.clear()
            m.views.clear()
            gc.collect()
            while True:
                try:
                    chunk = m.b.pop_chunk()
                except (s.NotReady, s.StreamTimeout):
                    break
                m.got(m.stream, chunk)
                m.chunks.clear()
            assert not m.errors, m.errors
            m.check_order(m.stream)
            assert not self.unraisable, self.unraisable
        finally:
            sys.unraisablehook = self.hook


class SetAndHub(RuleBasedStateMachine):
    """A StreamSet, a Hub on it, hub streams' Producers, the set's buffers,
    chunks and views."""

    def __init__(self):
        super().__init__()
        self.m = Model()
        m = self.m
        m.worker = f"thw{os.getpid()}x{next(SERIAL)}"
        m.set = s.StreamSet(m.worker, default_policy="fixed:size=1", entries=64)
        m.hub = s.Hub.attach(m.worker)
        m.producers, m.finished, m.keys, m.removed = [], [], [], []
        self.unraisable, self.hook = unraisable_seen()

    @rule(
        ops=st.lists(st.sampled_from(SET_OPS + CHUNK_OPS), min_size=2, max_size=3),
        reps=st.integers(1, 4),
    )
    def together(self, ops, reps):
        self.m.run_together(ops, reps)

    @precondition(lambda self: self.m.steps >= STEPS * 2 // 3)
    @rule(
        end=st.sampled_from(SET_ENDS),
        ops=st.lists(st.sampled_from(SET_OPS + CHUNK_OPS), max_size=2),
    )
    def ending(self, end, ops):
        """Closing or ending an object while others use it, late in a run
        (earlier, it would leave little but "closed" to test)."""
        self.m.run_together([end, *ops], 1)

    @invariant()
    def nothing_raised_in_a_deallocator(self):
        assert not self.unraisable, self.unraisable

    @invariant()
    def the_set_caches_only_buffers_of_its_streams(self):
        # A look-up racing a remove() must not cache the removed stream's
        # buffer (which would keep its mapping until close).
        stale = [k for k in list(self.m.set._buffers) if k not in self.m.set]
        assert not stale, stale

    def teardown(self):
        try:
            m = self.m
            m.chunks.clear()
            m.views.clear()
            assert not m.errors, m.errors
            for stream in list(m.seen):
                m.check_order(stream)
            m.set.close()
            m.removed.clear()
            m.producers.clear()
            m.finished.clear()
            gc.collect()
            assert not self.unraisable, self.unraisable
        finally:
            sys.unraisablehook = self.hook


test_producer_and_reader_from_threads = SETTINGS(ProducerAndReader).TestCase
test_in_process_buffer_from_threads = SETTINGS(InProcessBuffer).TestCase
test_stream_set_and_hub_from_threads = SETTINGS(SetAndHub).TestCase
