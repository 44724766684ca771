"""Adaptive batching on the producer (issue 24): ``Producer(batching=n)``,
``set_batching``, ``batching``, ``flush``. One-by-one puts that continue a
run are staged and taken by the consumer as one run; every item arrives
once, in order, as numpy and as torch."""

import gc
import threading

import numpy as np
import pytest
import shmstream as s
import torch


def open_buffer(stream_id, policy):
    return s.StreamBuffer.open(*stream_id, policy=policy, timeout=10)


def frame(i):
    """Codec frame ``i``: 7 x i64 (56 bytes) holding ``i * 10 + k``."""
    return np.arange(7, dtype=np.int64) + i * 10


def test_the_keyword_and_the_methods_turn_batching_on_and_off(stream_id):
    producer = s.Producer(*stream_id, capacity=16, item_bytes=64, batching=64)
    assert producer.batching == 16, "clamped to the capacity"
    producer.set_batching(4)
    assert producer.batching == 4
    producer.set_batching(None)
    assert producer.batching is None
    producer.set_batching(0)
    assert producer.batching is None
    with pytest.raises(OverflowError):
        producer.set_batching(-1)
    assert producer.batching is None, "a refused value changes nothing"
    producer.flush()  # nothing held: nothing to do
    off = s.Producer(stream_id[0] + "-off", *stream_id[1:], capacity=4, item_bytes=64)
    assert off.batching is None, "off by default"


def test_one_by_one_puts_reach_numpy_and_torch_as_one_stacked_run(stream_id):
    producer = s.Producer(*stream_id, capacity=64, item_bytes=64, batching=64)
    buf = open_buffer(stream_id, "fixed:size=8")
    for i in range(16):
        producer.put(f"t{i}", frame(i))
    producer.flush()
    producer.put("t16", torch.from_numpy(frame(16)))
    producer.signal_done()  # publishes the held run (t16) too
    seen = 0
    while (chunk := buf.next_chunk(timeout=5)) is not None:
        n = len(chunk)
        assert chunk.ids == [f"t{i}" for i in range(seen, seen + n)]
        for k in range(n):
            np.testing.assert_array_equal(np.asarray(chunk.item(k)), frame(seen + k))
            assert torch.equal(torch.from_dlpack(chunk.item(k)), torch.from_numpy(frame(seen + k)))
        stacked = chunk.stacked()
        assert stacked is not None, "same-shaped frames back to back stack"
        want = np.stack([frame(i) for i in range(seen, seen + n)])
        np.testing.assert_array_equal(np.asarray(stacked), want)
        assert torch.equal(torch.from_dlpack(chunk.stacked()), torch.from_numpy(want))
        seen += n
        chunk.release()
    assert seen == 17


def test_threads_sharing_one_batching_producer_with_the_gc_running_lose_nothing(stream_id):
    threads, per_thread = 4, 300
    producer = s.Producer(*stream_id, capacity=32, item_bytes=64, timeout=30, batching=8)
    buf = open_buffer(stream_id, "fixed:size=1")
    errors = []
    stop = threading.Event()

    def put(t):
        try:
            for k in range(per_thread):
                producer.put(f"{t}:{k}", frame(t * 1000 + k))
                if k % 50 == 25:
                    producer.flush()
        except Exception as e:  # reported below
            errors.append(e)

    def churn():
        # Garbage with cycles, collected in this thread while the others put.
        while not stop.is_set():
            junk = [[] for _ in range(200)]
            for a, b in zip(junk, junk[1:]):
                a.append(b)
                b.append(a)
            del junk
            gc.collect()
            producer.batching  # noqa: B018 -- a call on the shared object too

    workers = [threading.Thread(target=put, args=(t,)) for t in range(threads)]
    collector = threading.Thread(target=churn)
    collector.start()
    for w in workers:
        w.start()
    last = {}
    count = 0
    while count < threads * per_thread:
        chunk = buf.next_chunk(timeout=30)
        assert chunk is not None
        t, k = map(int, chunk.ids[0].split(":"))
        assert k == last.get(t, -1) + 1, f"thread {t}: {k} after {last.get(t)}"
        last[t] = k
        np.testing.assert_array_equal(np.asarray(chunk.item(0)), frame(t * 1000 + k))
        chunk.release()
        count += 1
    for w in workers:
        w.join()
    stop.set()
    collector.join()
    assert errors == []
    assert last == {t: per_thread - 1 for t in range(threads)}
    producer.signal_done()
    end = buf.next_chunk(timeout=5)
    assert end is not None and len(end) == 0 and end.is_final, "one empty final chunk"
    assert buf.next_chunk(timeout=5) is None
