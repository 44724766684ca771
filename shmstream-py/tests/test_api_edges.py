"""Issue 26, point 6: the drop-in's API edges against the reference's.

Python ``ChunkPolicy`` subclasses (the reference's abstract methods) cut
streams as the built-in policies do; ``signal_done`` on an opened buffer is
accepted; no message names an API Python does not have; where the drop-in
is stricter than the reference, its exception says what the reference would
have done and how to get that.
"""

import os
import re
import uuid

import numpy as np
import pytest
import shmstream as s


class RefSliding(s.ChunkPolicy):
    """The reference's SlidingWindowChunkPolicy, as a user would write it."""

    def __init__(self, window, stride):
        super().__init__()
        self._window, self._stride = window, stride

    def is_ready(self, buffer_len):
        return buffer_len >= self._window

    def next_chunk_size(self, buffer_len):
        return self._stride

    def window_size(self):
        return self._window


class RefLeftContext(s.ChunkPolicy):
    """The reference's LeftContextChunkPolicy: state through register_chunk."""

    def __init__(self, chunk, left_context):
        super().__init__()
        self._chunk, self._ctx = chunk, left_context

    def is_ready(self, buffer_len):
        return buffer_len >= (self._chunk if not self.first_chunk_read else self._chunk + self._ctx)

    def next_chunk_size(self, buffer_len):
        return self._chunk - self._ctx if not self.first_chunk_read else self._chunk

    def window_size(self):
        return self._chunk if not self.first_chunk_read else self._chunk + self._ctx


class DuckFixed:
    """Not a shmstream class at all: the reference's own ABC subclasses look
    like this (the methods, no base class of ours)."""

    def __init__(self, n, cont=False):
        self.n, self.cont, self.registered = n, cont, []

    def is_ready(self, buffer_len):
        return buffer_len >= self.n

    def next_chunk_size(self, buffer_len):
        return self.n

    def window_size(self):
        return self.n

    def register_chunk(self, chunk_size):
        self.registered.append(chunk_size)

    def continue_after_producer_done(self):
        return self.cont


def trace(policy, total, done=True, pops=None):
    """Registers ``total`` items in reverse arrival order, pops what is
    ready; returns [(index, offset, values, is_final)]."""
    b = s.StreamBuffer("req", "edge", "part", policy, capacity=64, item_bytes=64)
    for i in range(total):
        b.pre_read_register(f"t{i}")
    for i in reversed(range(total)):
        b.put(f"t{i}", np.array([i], np.int64))
    if done:
        b.signal_done()
    out = []
    while b.has_chunk_ready() and (pops is None or len(out) < pops):
        c = b.pop_chunk()
        d = c.data["data"]
        vals = [] if d is None else np.asarray(d).reshape(-1).tolist()
        out.append((c.chunk_index, c.start_offset, vals, c.is_final))
    return out


@pytest.mark.parametrize("total", [0, 1, 5, 7, 12, 13])
def test_python_subclass_cuts_as_the_builtin_policy(total):
    assert trace(RefSliding(4, 3), total) == trace(s.SlidingWindowChunkPolicy(4, 3), total)
    assert trace(RefLeftContext(4, 1), total) == trace(s.LeftContextChunkPolicy(4, 1), total)
    assert trace(DuckFixed(3), total) == trace(s.FixedChunkPolicy(3), total)


def test_python_subclass_is_told_every_advance_and_continues_after_done():
    p = DuckFixed(2, cont=True)
    out = trace(p, 5, pops=6)
    assert [o[2] for o in out] == [[0, 1], [2, 3], [4], [], [], []]
    assert not any(o[3] for o in out)  # continue after done: never final
    assert p.registered == [2, 2, 1, 0, 0, 0]
    ref = RefLeftContext(4, 1)
    trace(ref, 9)
    assert ref.first_chunk_read and ref.items_consumed == 9


def test_python_policy_exception_reaches_the_caller_and_the_stream_survives():
    class Flaky(RefSliding):
        fail = True

        def is_ready(self, buffer_len):
            if self.fail and buffer_len == 2:
                raise RuntimeError("policy bug")
            return super().is_ready(buffer_len)

    p = Flaky(2, 2)
    b = s.StreamBuffer("req", "edge", "part", p, capacity=8, item_bytes=64)
    for i in range(2):
        b.pre_read_register(f"t{i}")
        b.put(f"t{i}", np.array([i]))
    with pytest.raises(RuntimeError, match="policy bug"):
        b.has_chunk_ready()
    p.fail = False
    assert b.has_chunk_ready()
    assert np.asarray(b.pop_chunk().data["data"]).reshape(-1).tolist() == [0, 1]


def test_bad_python_policies_are_refused_clearly():
    class NoWindow:
        def is_ready(self, n):
            return True

    with pytest.raises(TypeError, match="has no next_chunk_size, window_size, register_chunk"):
        s.StreamBuffer("r", "e", "p", NoWindow())

    class Greedy(RefSliding):
        def window_size(self):
            return 99  # more than is_ready saw

    b = s.StreamBuffer("r", "e", "p", Greedy(1, 1), capacity=128, item_bytes=64)
    b.pre_read_register("t0")
    b.put("t0", np.zeros(1))
    with pytest.raises(s.BadPolicy, match=r"is_ready\(1\).*window_size\(\) is 99"):
        b.pop_chunk()


@pytest.fixture
def worker():
    return f"w{os.getpid()}-{uuid.uuid4().hex[:8]}"


def test_python_policies_in_a_stream_set(worker):
    with s.StreamSet(worker, default_policy=lambda: RefLeftContext(3, 1)) as streams:
        hub = s.Hub.attach(worker)
        pa = hub.create_stream("a", "edge", "p", capacity=16, item_bytes=64)
        pb = hub.create_stream("b", "edge", "p", capacity=16, item_bytes=64)
        for p in (pa, pb):
            for i in range(7):
                p.put(f"t{i}", np.array([i], np.int64))
            p.signal_done()
        got = {}
        for _ in range(20):
            for key in streams.wait_any(timeout=1.0):
                for c in streams.ready_chunks(key):
                    d = c.data["data"]
                    vals = [] if d is None else np.asarray(d).reshape(-1).tolist()
                    got.setdefault(streams[key].request_id, []).append(vals)
            if len(got) == 2 and all(streams[k].finished for k in streams.keys()):
                break
        want = [t[2] for t in trace(s.LeftContextChunkPolicy(3, 1), 7)]
        assert got == {"a": want, "b": want}
        assert all(isinstance(streams[k].policy, RefLeftContext) for k in streams.keys())
        # each stream has its own policy object (a policy keeps state)
        assert len({id(streams[k].policy) for k in streams.keys()}) == 2
        with pytest.raises(TypeError, match="factory"):
            s.StreamSet(worker + "x", default_policy=RefSliding(2, 1))

    with s.StreamSet(worker) as streams:
        hub = s.Hub.attach(worker)
        p = hub.create_stream("c", "edge", "p", capacity=16, item_bytes=64)
        for i in range(5):
            p.put(f"t{i}", np.array([i], np.int64))
        p.signal_done()
        for _ in range(50):
            if streams.announced():
                break
            streams.wait_any(timeout=0.02)
        policy = DuckFixed(2)
        key = streams.add("c", "edge", "p", policy)
        assert streams[key].policy is policy
        vals = []
        for _ in range(20):
            for k in streams.wait_any(timeout=1.0):
                for c in streams.ready_chunks(k):
                    vals.append(np.asarray(c.data["data"]).reshape(-1).tolist())
            if streams[key].finished:
                break
        assert vals == [[0, 1], [2, 3], [4]] and policy.registered == [2, 2, 1]


def test_signal_done_on_an_opened_buffer_is_accepted_and_idempotent(stream_id):
    p = s.Producer(*stream_id, capacity=8, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=2", timeout=5)
    p.put("t0", np.array([1]))
    b.signal_done()  # what the worker does when the producer reports done
    b.signal_done()
    assert b.producer_done
    p.put("t1", np.array([2]))
    p.put("t2", np.array([3]))
    p.signal_done()
    chunks = list(b)
    assert [len(c) for c in chunks] == [2, 1] and chunks[-1].is_final


# --- messages name only Python API -------------------------------------
PY_NAMES = set(dir(s.StreamBuffer)) | set(dir(s.Producer)) | set(dir(s.StreamSet))


def python_only(message: str) -> list:
    """The API names in ``message`` that Python does not have (quoted
    values, such as a policy's name, aside)."""
    message = re.sub(r"\"[^\"]*\"|'[^']*'", "", message)
    bad = [m for m in re.findall(r"(\w+)\(", message) if m not in PY_NAMES]
    bad += re.findall(r"\w+::\w+", message)
    bad += [m for m in re.findall(r"(\w+)=", message) if m not in STREAM_BUFFER_ARGS]
    return bad


STREAM_BUFFER_ARGS = {"capacity", "item_bytes", "payload_bytes", "timeout", "prefix", "policy"}


def errors_a_drop_in_user_meets():
    b = s.StreamBuffer("req", "edge", "part", "fixed:size=2", capacity=4, item_bytes=64)
    yield pytest.raises(s.NotReady), b.pop_chunk
    yield pytest.raises(s.UnknownId), lambda: b.put("nope", np.zeros(2))
    b.pre_read_register("t0")
    yield pytest.raises(s.BadTensor), lambda: b.put("t0", np.zeros(100))
    yield pytest.raises(s.BadTensor), lambda: b.pre_read_register("big", 1 << 20)
    for i in range(1, 4):
        b.pre_read_register(f"t{i}")
    yield pytest.raises(s.RingFull), lambda: b.pre_read_register("t4")
    b.signal_done()
    yield pytest.raises(s.AfterDone), lambda: b.pre_read_register("t9")
    too_wide = "sliding:window=9,stride=1"
    yield pytest.raises(s.BadConfig), lambda: s.StreamBuffer("r", "e", "p", too_wide, capacity=4)
    yield pytest.raises(s.BadPolicy), lambda: s.StreamBuffer("r", "e", "p", "fixed:size=0")


def test_messages_name_only_python_api():
    seen = 0
    for raises, call in errors_a_drop_in_user_meets():
        with raises as e:
            call()
        assert python_only(str(e.value)) == [], str(e.value)
        seen += 1
    assert seen == 8


@pytest.mark.parametrize(
    "error,call,reference,how",
    [
        (s.NotReady, "pop", "short chunk", "signal_done()"),
        (s.UnknownId, "put", "keep the tensor until the id is registered", "pre_read_register"),
        (s.AfterDone, "register", "stream reopens", "signal_done() only after"),
    ],
)
def test_stricter_than_the_reference_says_so(error, call, reference, how):
    b = s.StreamBuffer("req", "edge", "part", "fixed:size=2")
    act = {
        "pop": b.pop_chunk,
        "put": lambda: b.put("nope", np.zeros(2)),
        "register": lambda: (b.signal_done(), b.pre_read_register("late")),
    }[call]
    with pytest.raises(error) as e:
        act()
    msg = str(e.value)
    assert "The reference would" in msg and reference in msg and how in msg, msg
    # the stream is intact after the refusal
    b2 = b
    if call != "register":
        b2.pre_read_register("t0")
        b2.put("t0", np.zeros(2))


def test_policy_factory_chooses_per_stream(worker):
    asked = []

    def factory(request_id, edge_name, from_partition):
        asked.append((request_id, edge_name, from_partition))
        return {"text": s.FixedChunkPolicy(2), "audio": RefSliding(2, 1)}.get(edge_name)

    with s.StreamSet(worker, policy_factory=factory) as streams:
        hub = s.Hub.attach(worker)
        ps = [
            hub.create_stream("r", edge, "p", capacity=8, item_bytes=64)
            for edge in ("text", "audio", "other")
        ]
        for p in ps:
            for i in range(3):
                p.put(f"t{i}", np.array([i], np.int64))
            p.signal_done()
        got = {}
        for _ in range(30):
            for key in streams.wait_any(timeout=0.5):
                for c in streams.ready_chunks(key):
                    d = c.data["data"]
                    got.setdefault(streams[key].edge_name, []).append(
                        [] if d is None else np.asarray(d).reshape(-1).tolist()
                    )
            if len(got) == 2 and all(streams[k].finished for k in streams.keys()):
                break
        assert got == {"text": [[0, 1], [2]], "audio": [[0, 1], [1, 2], [2]]}
        assert sorted(a[1] for a in asked) == ["audio", "other", "text"]
        assert streams.announced() == [("r", "other", "p")]  # None: left to add()
        k = streams.find("r", "text", "p")
        assert streams[k].policy == s.FixedChunkPolicy(2)
        assert isinstance(streams[streams.find("r", "audio", "p")].policy, RefSliding)
        with pytest.raises(TypeError, match="not both"):
            s.StreamSet(worker + "y", default_policy="fixed:size=1", policy_factory=factory)
