"""Producer.put_many (issue 14): a batch in one native call, one wake-up per batch."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import shmstream as s
import torch


def open_buffer(stream_id, policy):
    return s.StreamBuffer.open(*stream_id, policy=policy, timeout=10)


def frames(n, start=0):
    """``n`` codec frames (7 x i64), frame ``i`` holding ``i * 10 + k``."""
    return (np.arange(start, start + n, dtype=np.int64)[:, None] * 10 + np.arange(7)).astype(
        np.int64
    )


def test_pairs_of_ids_and_arrays_arrive_in_order_with_their_ids(stream_id):
    producer = s.Producer(*stream_id, capacity=16, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=4")
    f = frames(3)
    producer.put_many(
        [("a", f[0]), (None, torch.from_numpy(f[1].copy())), ("c", np.arange(3, dtype=np.float32))]
    )
    producer.put_many([("d", f[2])])
    assert producer.registered == 4
    chunk = buf.next_chunk(timeout=5)
    assert chunk.ids == ["a", "1", "c", "d"]
    items = [np.asarray(chunk.item(i)) for i in range(4)]
    np.testing.assert_array_equal(items[0], f[0])
    np.testing.assert_array_equal(items[1], f[1])
    np.testing.assert_array_equal(items[2], np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(items[3], f[2])


def test_a_stacked_array_is_split_into_rows_that_stack_again(stream_id):
    producer = s.Producer(*stream_id, capacity=64, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=28")
    f = frames(28)
    producer.put_many([f"t{i}" for i in range(27)] + [None], stacked=f)
    producer.signal_done()
    chunk = buf.next_chunk(timeout=5)
    assert len(chunk) == 28 and chunk.ids[0] == "t0" and chunk.ids[27] == "27"
    view = np.asarray(chunk.stacked())
    assert view.shape == (28, 7) and view.dtype == np.int64
    np.testing.assert_array_equal(view, f)


def test_a_batch_larger_than_the_ring_waits_for_a_consumer_in_another_thread(stream_id):
    producer = s.Producer(*stream_id, capacity=8, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=1")
    n = 500
    got = []

    def consume():
        while len(got) < n:
            chunk = buf.next_chunk(timeout=10)
            got.append(int(np.asarray(chunk.item(0))[0]))
            chunk.release()

    t = threading.Thread(target=consume)
    t.start()
    producer.put_many([None] * n, stacked=frames(n))
    t.join(timeout=30)
    assert got == [i * 10 for i in range(n)]


def test_a_bad_item_names_its_index_and_the_items_before_it_are_published(stream_id):
    producer = s.Producer(*stream_id, capacity=16, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=1")
    f = frames(4)
    with pytest.raises(s.BadId) as e:
        producer.put_many([("t0", f[0]), ("t1", f[1]), ("x" * 65, f[2]), ("t3", f[3])])
    message = str(e.value)
    assert message.startswith("item 2 of the batch: ")
    assert "1 to 64 bytes" in message and "65" in message
    assert "the 2 items before it are published" in message
    assert producer.registered == 2
    # The stream is intact: the rest goes in afterwards.
    producer.put_many([("t2", f[2]), ("t3", f[3])])
    ids = []
    for _ in range(4):
        chunk = buf.next_chunk(timeout=5)
        ids += chunk.ids
        chunk.release()
    assert ids == ["t0", "t1", "t2", "t3"]


def test_a_bad_dtype_publishes_nothing(stream_id):
    producer = s.Producer(*stream_id, capacity=16, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=1")
    with pytest.raises(s.BadDType) as e:
        producer.put_many([("a", np.zeros(2)), ("b", np.zeros(2, np.complex64))])
    assert str(e.value).startswith("item 1 of the batch: ")
    assert "nothing was published" in str(e.value)
    assert producer.registered == 0
    del buf


def test_refused_shapes_and_arguments(stream_id):
    producer = s.Producer(*stream_id, capacity=16, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=1")
    with pytest.raises(s.BadTensor) as e:
        producer.put_many(["a", "b", "c"], stacked=frames(2))
    assert "first dimension must be 3" in str(e.value)
    with pytest.raises(s.BadTensor) as e:
        producer.put_many([("a", np.zeros((4, 4))[:, 1])])
    assert "contiguous" in str(e.value)
    with pytest.raises(TypeError):
        producer.put_many(["a", "b"])  # ids without stacked=
    with pytest.raises(s.BadTensor) as e:
        producer.put_many([("big", np.zeros(1 << 20, np.uint8))])
    assert "payload" in str(e.value)
    producer.put_many([])
    assert producer.registered == 0
    del buf


def test_a_full_ring_times_out_after_publishing_what_fits(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64, timeout=0.12)
    buf = open_buffer(stream_id, "fixed:size=1")  # attached, never reads
    t0 = time.monotonic()
    with pytest.raises(s.RingFull) as e:
        producer.put_many([None] * 6, stacked=frames(6))
    assert 0.11 <= time.monotonic() - t0 < 0.5
    assert "item 4 of the batch" in str(e.value) and "0.120 s" in str(e.value)
    assert producer.registered == 4
    del buf


def test_a_batch_blocked_on_a_full_ring_honours_ctrl_c(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)  # waits for ever
    buf = open_buffer(stream_id, "fixed:size=1")  # attached, never reads
    sent = {}

    def interrupt():
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Timer(0.2, interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        producer.put_many([None] * 6, stacked=frames(6))
    assert time.monotonic() - sent["at"] < 0.4
    assert producer.registered == 4
    del buf
