"""The drop-in's per-item calls (issue 26, point 3): ``pre_read_register``
and ``put`` find a pending id in O(1) however many are outstanding, and the
fast way of reading a tensor (in Rust, once its type and dtype were seen)
refuses exactly what the Python way refuses."""

import os
import time
import uuid

import numpy as np
import pytest
import shmstream as s
import torch

N = 100_000
# CPU seconds for N registrations and N puts, checked every 1000 calls.
# Not a speed claim: the O(1) look-up takes about 0.1-0.3 s here (a loaded
# 2-core machine included), a tenth of the bound or less; the linear scan
# of 2b15629 needs 20 s or more (each call compares the id with every
# pending one, 5 * 10^9 comparisons per pass) and fails at the bound.
BOUND = 2.5


def ids(n):
    return [str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % (1 << 128))) for i in range(n)]


def buffer(capacity=131072, **kw):
    return s.StreamBuffer("r", "e", "p", "fixed:size=1", capacity=capacity, item_bytes=64, **kw)


@pytest.mark.parametrize("like", ["torch", "numpy"])
def test_100k_outstanding_ids_put_newest_first_cost_bounded_cpu(like):
    sb = buffer()
    names = ids(N)
    item = torch.arange(7) if like == "torch" else np.arange(7, dtype=np.int64)
    start = time.thread_time()

    def within_bound(what):
        used = time.thread_time() - start
        assert used < BOUND, f"{used:.2f} s of CPU for {what} (bound {BOUND} s): not O(1)"

    for k in range(0, N, 1000):
        for name in names[k : k + 1000]:
            sb.pre_read_register(name)
        within_bound(f"{k + 1000} registrations")
    with pytest.raises(s.DuplicateId):
        sb.pre_read_register(names[0])
    for k in range(N, 0, -1000):
        for name in reversed(names[k - 1000 : k]):
            sb.put(name, item)
        within_bound(f"{N} registrations and the newest {N - k + 1000} puts")
    sb.signal_done()
    got = 0
    while sb.has_chunk_ready():
        chunk = sb.pop_chunk()
        if len(chunk):
            assert chunk.data["data"].flatten().tolist() == list(range(7))
            got += 1
    assert got == N


def test_a_pending_id_is_refused_until_put_then_free_again():
    sb = buffer(capacity=16)
    sb.pre_read_register("a")
    sb.pre_read_register("b")
    with pytest.raises(s.DuplicateId):
        sb.pre_read_register("a")
    sb.put("a", torch.tensor([1.0]))
    sb.pre_read_register("a")  # put: the id names a later tensor now
    with pytest.raises(s.DuplicateId):
        sb.pre_read_register("a")
    sb.put("b", torch.tensor([2.0]))
    sb.put("a", torch.tensor([3.0]))
    sb.signal_done()
    got = [c.data["data"].flatten().tolist() for c in sb if len(c)]
    assert got == [[1.0], [2.0], [3.0]]


def test_a_refused_put_keeps_the_id_pending():
    sb = buffer(capacity=16)
    sb.pre_read_register("x")
    with pytest.raises(s.StreamError, match="does not fit"):
        sb.put("x", torch.zeros(100))  # 400 bytes in the 64 reserved
    with pytest.raises(s.DuplicateId):
        sb.pre_read_register("x")
    sb.put("x", torch.ones(4))
    with pytest.raises(s.StreamError):
        sb.put("x", torch.ones(4))  # put already: no longer pending


@pytest.mark.parametrize("like", ["torch", "numpy"])
def test_the_fast_way_refuses_what_the_python_way_refuses(like):
    """Once a type and dtype were seen (and are read in Rust), tensors the
    Python way refuses (non-contiguous, expanded, a subclass's own rules,
    other dtypes) still take the Python way: same errors, same data."""
    sb = buffer(capacity=64)
    make = torch.tensor if like == "torch" else np.array
    for i in range(3):  # the first teaches the fast way; the rest use it
        sb.pre_read_register(f"ok{i}")
        sb.put(f"ok{i}", make([[1, 2, 3], [4, 5, 6]]))
    sb.pre_read_register("bad")
    strided = make([[1, 2, 3], [4, 5, 6]]).T
    with pytest.raises(s.BadTensor, match="non-contiguous"):
        sb.put("bad", strided)
    if like == "torch":
        with pytest.raises(s.BadTensor, match="non-contiguous"):
            sb.put("bad", torch.arange(3).expand(1000, 3))  # stride 0: 24 bytes, not 24000
    else:
        with pytest.raises(s.BadDType):
            sb.put("bad", np.array(["a", "b"]))
        with pytest.raises(s.BadDType):
            sb.put("bad", np.arange(3, dtype=">i8"))  # big-endian: another descr
    with pytest.raises(TypeError):
        sb.put("bad", [1, 2, 3])
    # Still pending after every refusal; a float32 item (a new dtype) goes.
    sb.put("bad", make([0.5, 1.5], dtype=np.float32 if like == "numpy" else torch.float32))
    sb.signal_done()
    got = [c.data["data"].flatten().tolist() for c in sb if len(c)]
    assert got == [[1, 2, 3, 4, 5, 6]] * 3 + [[0.5, 1.5]]


def test_a_buffer_of_another_process_stream_has_no_per_item_calls(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)
    sb = s.StreamBuffer.open(*stream_id, "fixed:size=1")
    for call in (lambda: sb.pre_read_register("a"), lambda: sb.put("a", torch.ones(2))):
        with pytest.raises(s.StreamError, match="register and put through its Producer"):
            call()
    producer.close()


def test_a_stream_set_buffer_has_no_per_item_calls_either():
    """``set[key]`` is a buffer of another process's stream too: the same
    clear error, not an AttributeError of the per-instance calls."""
    name = f"pi{os.getpid()}"
    with s.StreamSet(name, default_policy="fixed:size=1") as streams:
        hub = s.Hub.attach(name)
        producer = hub.create_stream("r", "e", "p", capacity=4, item_bytes=64)
        producer.put("t0", np.arange(2, dtype=np.int64))
        (key,) = streams.wait_any(timeout=5)
        sb = streams[key]
        for call in (lambda: sb.pre_read_register("a"), lambda: sb.put("a", torch.ones(2))):
            with pytest.raises(s.StreamError, match="register and put through its Producer"):
                call()
        producer.close()
