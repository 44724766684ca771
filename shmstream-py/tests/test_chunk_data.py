"""``chunk.data`` as numpy without torch (issue 24): made in Rust through
numpy's C API, no Python in between; zero copy, read-only, right for every
window and dtype; the array keeps the chunk's slots until it goes, from
any thread, with the collector running."""

import gc
import sys
import threading

import numpy as np
import pytest
import shmstream as s
import shmstream._collate as col

DTYPES = ["bool", "u1", "i1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.setattr(col, "_looked", True)
    monkeypatch.setattr(col, "_torch", None)


def buffer(policy, items, capacity=16):
    sb = s.StreamBuffer("r", "e", "p", policy, capacity=capacity)
    for i, a in enumerate(items):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", a)
    return sb


def data_and_python_calls(chunk):
    """`chunk.data`, and the Python functions it ran (their code names)."""
    seen = []

    def hook(frame, event, arg):
        if event == "call":
            seen.append(frame.f_code.co_name)

    sys.setprofile(hook)
    try:
        d = chunk.data
    finally:
        sys.setprofile(None)
    return d, seen


@pytest.mark.parametrize("window", [1, 4])
def test_numpy_data_runs_no_python(no_torch, window):
    """Before issue 24 it went through `_collate.collate` (collate,
    tensor_of, numpy_of, and numpy's dtype checks: Python frames)."""
    sb = buffer(f"fixed:size={window}", [np.arange(7, dtype=np.int64) + i for i in range(window)])
    c = sb.pop_chunk()
    d, calls = data_and_python_calls(c)
    assert calls == []
    x = d["data"]
    assert isinstance(x, np.ndarray)
    expect = np.arange(7) + np.arange(window)[:, None]
    assert x.tolist() == (expect[0] if window == 1 else expect).tolist()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [1, 3])
def test_numpy_data_is_the_slots_read_only_for_every_dtype(no_torch, dtype, window):
    items = [(np.arange(6).reshape(2, 3) + i).astype(dtype) for i in range(window)]
    sb = buffer(f"fixed:size={window}", items)
    c = sb.pop_chunk()
    x = c.data["data"]
    want = items[0] if window == 1 else np.stack(items)
    # zero copy: the array is the chunk's stacked view (or its one item),
    # rows a slot apart
    view = c.item(0) if window == 1 else c.stacked()
    assert x.__array_interface__["data"][0] == view.data_ptr
    assert x.dtype == np.dtype(dtype) and x.shape == want.shape == view.shape
    assert x.strides == view.strides and x.strides[1:] == want.strides[1:]
    assert x.flags.aligned and x.flags.c_contiguous == (window == 1)
    assert (x == want).all()
    assert not x.flags.writeable and not x.flags.owndata
    with pytest.raises(ValueError):
        x.flags.writeable = True
    assert c.data["data"] is x  # computed once


def test_mixed_shapes_and_bf16_take_the_general_path(no_torch):
    sb = buffer("fixed:size=3", [np.zeros(i + 1, np.float32) + i for i in range(3)])
    x = sb.pop_chunk().data["data"]
    assert isinstance(x, list) and [a.shape for a in x] == [(1,), (2,), (3,)]
    assert [a.tolist() for a in x] == [[0.0], [1.0, 1.0], [2.0, 2.0, 2.0]]
    pytest.importorskip("ml_dtypes")
    import torch

    sb = buffer("fixed:size=2", [torch.full((3,), 1.5, dtype=torch.bfloat16)] * 2)
    x = sb.pop_chunk().data["data"]
    assert x.dtype.name == "bfloat16" and x.astype(np.float32).tolist() == [[1.5] * 3] * 2


def test_numpy_data_keeps_the_slots_after_release_and_del(no_torch):
    sb = buffer("fixed:size=2", [np.full(4, i, np.int32) for i in range(4)], capacity=4)
    c = sb.pop_chunk()
    x = c.data["data"]
    c.release()
    with pytest.raises(s.ChunkReleased):
        _ = c.data
    del c
    gc.collect()
    assert sb.live_chunks == 1  # the array holds the lease
    del sb.pop_chunk().data["data"]
    # positions 0 and 1 are the array's, so none is free (the ring frees
    # in order)
    with pytest.raises(s.RingFull):
        sb.pre_read_register("z")
    assert x.tolist() == [[0] * 4, [1] * 4]
    base = x.base
    del x
    assert sb.live_chunks == 1  # its base still does
    del base
    assert sb.live_chunks == 0
    for i in range(4):
        sb.pre_read_register(f"z{i}")


def test_numpy_data_from_threads_with_the_collector_running(no_torch):
    """Threads take `data` of the same chunks at once (one computes it, the
    others get the same array), drop chunks and arrays in any order while
    another thread collects; every array shows its own items, and every
    slot comes back."""
    n, window = 256, 4
    sb = s.StreamBuffer("r", "e", "p", f"fixed:size={window}", capacity=n * window)
    for i in range(n * window):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", np.full(3, i, np.int64))
    chunks = [sb.pop_chunk() for _ in range(n)]
    got: list[list] = [[] for _ in range(4)]
    stop = threading.Event()

    def collect():
        while not stop.is_set():
            gc.collect()

    def read(k):
        for j in range(n):
            c = chunks[(j + k * 97) % n]
            got[k].append((c.start_offset, c.data["data"]))

    collector = threading.Thread(target=collect)
    collector.start()
    readers = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(30)
    assert not any(t.is_alive() for t in readers)
    by_chunk: dict[int, object] = {}
    for seen in got:
        for start, x in seen:
            assert x.tolist() == [[start + r] * 3 for r in range(window)]
            assert by_chunk.setdefault(start, x) is x  # one array per chunk
    assert len(by_chunk) == n
    chunks.clear()
    del by_chunk, seen, x
    assert sb.live_chunks == n  # the arrays hold every chunk
    got.clear()
    stop.set()
    collector.join(30)
    gc.collect()
    assert sb.live_chunks == 0


def test_threads_racing_for_data_all_get_the_first_stored():
    """Threads that compute one chunk's `data` at once (the general path,
    mixed shapes, runs Python: they interleave) all get the value stored
    first, and `chunk.data` stays it. Before issue 24 the last one stored
    replaced the others', so a thread could hold a `data` the chunk no
    longer showed."""
    rounds, nthreads = 256, 4
    sb = s.StreamBuffer("r", "e", "p", "fixed:size=2", capacity=2 * rounds)
    for i in range(2 * rounds):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", np.zeros(1 + i % 2, np.float32))
    chunks = [sb.pop_chunk() for _ in range(rounds)]
    barrier = threading.Barrier(nthreads)
    got = [[None] * rounds for _ in range(nthreads)]

    def take(k):
        for r, c in enumerate(chunks):
            barrier.wait()
            got[k][r] = c.data

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=take, args=(k,)) for k in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert not any(t.is_alive() for t in threads)
    differ = sum(
        any(got[k][r] is not chunks[r].data for k in range(nthreads)) for r in range(rounds)
    )
    assert differ == 0, f"{differ} of {rounds} chunks: a thread got a data the chunk does not show"


@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3), (1,) * 8])
@pytest.mark.parametrize("window", [1, 2])
def test_numpy_data_of_scalars_empty_and_deepest_items(no_torch, shape, window):
    items = [np.full(shape, i + 1, np.int16) for i in range(window)]
    sb = buffer(f"fixed:size={window}", items)
    c = sb.pop_chunk()
    x = c.data["data"]
    want = items[0] if window == 1 else np.stack(items)
    view = c.item(0) if window == 1 else c.stacked()
    assert isinstance(x, np.ndarray) and x.shape == want.shape == view.shape
    assert x.strides == view.strides and x.dtype == np.int16
    assert (x == want).all() and not x.flags.writeable
