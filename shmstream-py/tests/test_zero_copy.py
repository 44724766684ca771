"""Zero copy, proven: views lie in the segment's mapping, bytes written
through a producer slot are the bytes a chunk shows, a view held after the
chunk is gone keeps its bytes while the producer runs at full speed, and
the slots go back when the last view is collected."""

import gc
import threading
import time

import numpy as np
import pytest
import shmstream as s
import torch


def inside(ptr, nbytes, region):
    base, length = region
    return base <= ptr and ptr + nbytes <= base + length


def test_views_point_into_the_segment_mapping(stream_id):
    producer = s.Producer(*stream_id, capacity=16, item_bytes=64)
    buf = s.StreamBuffer.open(*stream_id, policy="sliding:window=8,stride=5")
    payload = producer.payload_bytes
    base, mapped = buf.payload_region
    seen = across = 0
    # 56-byte items, 448-byte windows every 280 bytes: over 120 items
    # (6720 bytes) the payload (4096 bytes) wraps once, and the window at
    # 3920..4368 straddles its end.
    for i in range(120):
        producer.put(f"t{i}", np.full(7, i, np.int64))
        while buf.has_chunk_ready():
            chunk = buf.pop_chunk()
            t = torch.from_dlpack(chunk)
            a = np.from_dlpack(chunk)
            d = chunk.data["data"]
            assert t.data_ptr() == a.__array_interface__["data"][0] == d.data_ptr()
            assert inside(t.data_ptr(), t.numel() * 8, buf.payload_region)
            start = t.data_ptr() - base
            if start < payload < start + t.numel() * 8:
                across += 1
            expect = list(range(chunk.start_offset, chunk.start_offset + 8))
            assert t[:, 0].tolist() == expect and d[:, 6].tolist() == expect
            assert (a == np.array(expect)[:, None]).all()
            assert not a.flags.writeable
            seen += 1
            del chunk, t, a, d
    assert seen == 23
    # the payload is mapped twice back to back: a window across its end is
    # one stacked view into the second mapping, not a copy
    assert mapped == 2 * payload
    assert across >= 1, "no window straddled the payload's end"


def test_bytes_written_through_a_slot_are_the_chunks_bytes(stream_id):
    producer = s.Producer(*stream_id, capacity=8, item_bytes=256)
    buf = s.StreamBuffer.open(*stream_id, policy=s.FixedChunkPolicy(2))
    slots = [producer.register(f"t{i}") for i in range(2)]
    # fill in place: numpy into the first, torch (DLPack, writable) into the second
    slots[0].numpy(np.float32, (4, 4))[:] = np.arange(16, dtype=np.float32).reshape(4, 4)
    torch.from_dlpack(slots[1])[:64].view(torch.float32).copy_(torch.arange(16.0) + 100)
    addrs = [sl.data_ptr for sl in slots]
    slots[1].commit(torch.float32, [4, 4])  # out of order
    slots[0].commit("f32", [4, 4])
    chunk = buf.next_chunk(timeout=1)
    x = chunk.data["data"]
    assert x.shape == (2, 4, 4)
    assert x[0].flatten().tolist() == list(range(16))
    assert x[1].flatten().tolist() == [100.0 + i for i in range(16)]
    # the same bytes: producer and consumer map the segment at their own
    # addresses, at the same offsets
    offsets = [a - producer.payload_region[0] for a in addrs]
    base = buf.payload_region[0]
    assert [x.data_ptr() - base, chunk.item(1).data_ptr - base] == offsets
    with pytest.raises(s.SlotClosed):
        slots[0].numpy()


def test_a_view_kept_after_del_chunk_keeps_its_bytes_while_the_producer_runs(stream_id):
    cap = 64
    producer = s.Producer(*stream_id, capacity=cap, item_bytes=64, timeout=None)
    buf = s.StreamBuffer.open(*stream_id, policy=s.FixedChunkPolicy(4))
    total = 5000
    stop = threading.Event()

    def produce():
        for i in range(total):
            if stop.is_set():
                return
            producer.put(f"t{i}", np.full(8, i, np.int64))
        producer.signal_done()

    writer = threading.Thread(target=produce)
    writer.start()
    chunk = buf.next_chunk(timeout=5)
    kept = chunk.data["data"]  # torch view [4, 8]
    copy = kept.clone()
    kept_np = np.from_dlpack(chunk)
    del chunk
    gc.collect()
    # consume at full speed behind the held view
    popped = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        try:
            c = buf.next_chunk(timeout=0.1)
        except s.StreamTimeout:
            break
        popped += 1
        assert torch.equal(kept, copy)
        del c
    # the producer is stalled one ring behind the held view
    assert producer.registered <= 4 + cap
    assert torch.equal(kept, copy) and (kept_np == copy.numpy()).all()
    assert buf.live_chunks == 1
    # the last view goes: the ring is released and the producer finishes
    del kept, kept_np
    gc.collect()
    while buf.next_chunk(timeout=5) is not None:
        popped += 1
    writer.join(5)
    assert not writer.is_alive()
    # When done lands after the last full chunk was popped, one empty
    # final chunk follows (SPEC section 2): either count is right.
    assert popped in (total // 4 - 1, total // 4)
    assert buf.live_chunks == 0


@pytest.mark.parametrize("mixed", [False, True])
def test_a_released_chunk_forms_no_view_whatever_the_index(mixed):
    """Issue 21, defect 7: item(i) checks that the chunk still holds its
    slots before it forms any address into them (it computed the row's
    address first, and an index out of range said IndexError instead)."""
    sb = s.StreamBuffer("r", "e", "p", "fixed:size=2", capacity=4)
    for i in range(2):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", np.zeros(i + 1 if mixed else 1, np.int32))
    c = sb.pop_chunk()
    assert (c.stacked() is None) == mixed
    c.release()
    for show in (
        lambda: c.item(0),
        lambda: c.item(2),
        lambda: c.item(2**62),
        lambda: c.stacked(),
        lambda: c.__dlpack__(),
        lambda: c.ids,
    ):
        with pytest.raises(s.ChunkReleased):
            show()
    assert sb.live_chunks == 0


def test_release_and_with_hand_back_the_slots():
    sb = s.StreamBuffer("r", "e", "p", "fixed:size=2", capacity=4)
    for i in range(4):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", np.array([i], np.int32))
    with sb.pop_chunk() as c:
        assert c.alive
    assert not c.alive
    with pytest.raises(s.ChunkReleased):
        _ = c.data
    c2 = sb.pop_chunk()
    v = c2.stacked()
    c2.release()
    assert sb.live_chunks == 1  # the view still holds it
    assert np.asarray(v).tolist() == [[2], [3]]
    # positions 0 and 1 are free again; 2 and 3 are held by the view
    sb.pre_read_register("x")
    sb.pre_read_register("y")
    with pytest.raises(s.RingFull) as e:
        sb.pre_read_register("z")
    assert "4 items" in str(e.value)
    del v
    sb.pre_read_register("z")
    assert sb.live_chunks == 0


def test_numpy_views_are_read_only_and_bf16_needs_ml_dtypes(monkeypatch):
    sb = s.StreamBuffer("r", "e", "p", "fixed:size=2")
    for i in range(2):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", torch.full((3,), i + 0.5, dtype=torch.bfloat16))
    c = sb.pop_chunk()
    from shmstream._tensors import numpy_of

    a = numpy_of(c.stacked())
    assert a.dtype.name == "bfloat16" and not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1
    assert a.astype(np.float32).tolist() == [[0.5] * 3, [1.5] * 3]
    import sys

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(s.BadDType) as e:
        numpy_of(c.stacked())
    assert "pip install ml_dtypes" in str(e.value)


def test_data_without_torch_is_numpy(monkeypatch):
    import shmstream._collate as col

    monkeypatch.setattr(col, "_looked", True)
    monkeypatch.setattr(col, "_torch", None)
    sb = s.StreamBuffer("r", "e", "p", "fixed:size=3")
    for i in range(3):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", np.array([i, i], np.float64))
    d = sb.pop_chunk().data["data"]
    assert isinstance(d, np.ndarray) and d.shape == (3, 2) and not d.flags.writeable
