"""``chunk.data`` as torch (issue 24): each chunk's tensor is made from a
DLPack export held in the chunk's own lease handle, and the capsule that
carries it to torch is one object reused from call to call. Neither may
ever show one chunk's memory, shape or lifetime to another: many chunks
alive at once, their tensors and extra exports (``torch.from_dlpack`` of
the chunk, item views) dropped in shuffled order from several threads,
the collector running; every tensor shows its own items to the end, and
every slot comes back."""

import gc
import random
import threading

import numpy as np
import pytest
import shmstream as s

torch = pytest.importorskip("torch")


def filled(n_chunks, window, width=3):
    """A buffer of `n_chunks` chunks of `window` items; item `i` is
    `[i, i, ...]` (int64) and item `i` of every chunk sits at position `i`."""
    n = n_chunks * window
    sb = s.StreamBuffer("r", "e", "p", f"fixed:size={window}", capacity=n)
    for i in range(n):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", np.full(width, i, np.int64))
    return sb


def expected(start, window, width=3):
    rows = [[start + r] * width for r in range(window)]
    return rows[0] if window == 1 else rows


@pytest.mark.parametrize("window", [1, 4])
def test_torch_data_from_threads_dropped_in_shuffled_order(window):
    """Four threads each pop and hold many chunks at once, take `data` as
    torch (and a second export of some: `torch.from_dlpack(chunk)`, an
    item's view), release and drop them in shuffled order while another
    thread collects, and check every tensor still alive after each drop:
    a recycled export or capsule would show another chunk's items, shape
    or a freed slot."""
    nthreads, per_thread, rounds = 4, 32, 4
    sb = filled(nthreads * per_thread * rounds, window)
    lock = threading.Lock()
    bad: list[str] = []
    stop = threading.Event()

    def collect():
        while not stop.is_set():
            gc.collect()

    def check(held):
        for start, kind, x in held:
            want = expected(start, window) if kind != "item" else [start] * 3
            if x.tolist() != want:
                bad.append(f"{kind} of chunk at {start}: {x.tolist()} != {want}")

    def work(k):
        rng = random.Random(k)
        for _ in range(rounds):
            held = []
            for _ in range(per_thread):
                with lock:
                    c = sb.pop_chunk()
                x = c.data["data"]
                held.append((c.start_offset, "data", x))
                r = rng.randrange(3)
                if r == 0:
                    held.append((c.start_offset, "from_dlpack", torch.from_dlpack(c)))
                elif r == 1:
                    held.append((c.start_offset, "item", torch.from_dlpack(c.item(0))))
                if rng.randrange(2):
                    c.release()
                del c, x
            check(held)
            rng.shuffle(held)
            while held:
                held.pop()
                check(held)

    collector = threading.Thread(target=collect)
    collector.start()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    stop.set()
    collector.join(30)
    assert not any(t.is_alive() for t in workers)
    assert bad == []
    gc.collect()
    assert sb.live_chunks == 0  # every export handed its lease back


def test_threads_racing_for_one_chunks_torch_data():
    """Threads take one chunk's torch `data` at once, many chunks in turn:
    all get the chunk's one tensor, of its own items; the chunk's own
    export is taken once, however the race goes."""
    rounds, nthreads, window = 128, 4, 2
    sb = filled(rounds, window)
    chunks = [sb.pop_chunk() for _ in range(rounds)]
    barrier = threading.Barrier(nthreads)
    got = [[None] * rounds for _ in range(nthreads)]

    def take(k):
        for r, c in enumerate(chunks):
            barrier.wait()
            got[k][r] = c.data["data"]

    threads = [threading.Thread(target=take, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    for r, c in enumerate(chunks):
        mine = c.data["data"]
        assert all(got[k][r] is mine for k in range(nthreads))
        assert mine.tolist() == expected(c.start_offset, window)
    got.clear()
    del mine, c
    chunks.clear()
    gc.collect()
    assert sb.live_chunks == 0
