"""Issue 26, points 1 and 2: the drop-in ``StreamBuffer`` built with the
reference's four arguments has no limit the reference lacks. It grows by
migration (docs/design.md, "Growing the in-process buffer"): any item size
after an unsized ``pre_read_register``, any number of buffered items, any
window while earlier chunks are held. Explicit sizes mean fixed memory,
which reports ``RingFull`` with the numbers and leaves the stream intact."""

import numpy as np
import pytest
import shmstream as s
import torch


def dropin(policy="fixed:size=1", **kw):
    return s.StreamBuffer("r", "e", "p", policy, **kw)


def tensor(i, n):
    """`n` float32 values that name item `i` (first value) and its length."""
    t = torch.arange(n, dtype=torch.float32)
    t[0] = float(i)
    return t


def check(t, i, n):
    t = torch.as_tensor(np.asarray(t))
    assert t.shape == (n,), (i, t.shape)
    assert t[0].item() == float(i)
    if n > 1:
        assert t[n - 1].item() == float(n - 1)


@pytest.mark.parametrize("nbytes", [1 << 16, 1 << 20])
def test_unsized_register_takes_any_item_size(nbytes):
    n = nbytes // 4
    sb = dropin("fixed:size=2")
    for i in range(6):
        sb.pre_read_register(f"t{i}")
    for i in range(6):
        sb.put(f"t{i}", tensor(i, n))
    sb.signal_done()
    seen = []
    for chunk in sb:
        for j, row in enumerate(chunk.data["data"]):
            check(row, chunk.start_offset + j, n)
            seen.append(chunk.start_offset + j)
    assert seen == list(range(6))


def test_a_hundred_thousand_buffered_items():
    sb = dropin("fixed:size=1000")
    total = 100_000
    for i in range(total):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", torch.tensor([float(i), 1.0]))
    sb.signal_done()
    assert sb.capacity >= total
    count = 0
    for chunk in sb:
        data = chunk.data["data"]
        assert data[:, 0].tolist() == [float(chunk.start_offset + j) for j in range(len(data))]
        count += len(data)
    assert count == total


def test_sliding_window_with_the_previous_chunk_held():
    sb = dropin(s.SlidingWindowChunkPolicy(window=1024, stride=256))
    held = None
    windows = 0
    total = 4096
    for i in range(total):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", torch.tensor([float(i)] * 7))
        while sb.has_chunk_ready():
            chunk = sb.pop_chunk()
            data = chunk.data["data"]  # the worker's tensor store keeps it
            want = torch.arange(chunk.start_offset, chunk.start_offset + len(data)).float()
            assert torch.equal(data[:, 0], want) and torch.equal(data[:, 6], want)
            if held is not None:  # the previous window still reads right
                prev, start = held
                assert torch.equal(prev[:, 3], torch.arange(start, start + len(prev)).float())
            held = (data, chunk.start_offset)
            windows += 1
    sb.signal_done()
    for chunk in sb:
        data = chunk.data["data"]
        want = torch.arange(chunk.start_offset, chunk.start_offset + len(data)).float()
        assert torch.equal(data[:, 0], want)
        windows += 1
    assert windows == (total - 1024) // 256 + 1 + 1  # full windows, then the final one


def test_out_of_order_puts_across_a_migration():
    sb = dropin("fixed:size=4")
    n = 1 << 14  # 64 KiB floats: the first such put migrates
    ids = [f"t{i}" for i in range(40)]
    for t in ids:
        sb.pre_read_register(t)
    order = list(range(40))
    np.random.default_rng(7).shuffle(order)
    for i in order:
        sb.put(ids[i], tensor(i, n))
    sb.signal_done()
    starts, seen_ids = [], []
    for chunk in sb:
        for j, row in enumerate(chunk.data["data"]):
            check(row, chunk.start_offset + j, n)
        starts.append(chunk.start_offset)
        seen_ids.extend(chunk.ids)
    assert starts == list(range(0, 40, 4))
    assert seen_ids == ids


def test_pending_ids_put_after_a_migration():
    sb = dropin("fixed:size=1")
    for i in range(3000):  # migrates at 1024 and 2048 registrations, all pending
        sb.pre_read_register(f"t{i}")
    assert sb.capacity >= 3000
    for i in reversed(range(3000)):
        sb.put(f"t{i}", torch.tensor([float(i)]))
    for i in range(3000):
        chunk = sb.pop_chunk()
        assert chunk.start_offset == i and chunk.data["data"][0].item() == float(i)


def test_views_popped_before_a_migration_read_the_same_after():
    sb = dropin("fixed:size=8")
    for i in range(8):
        sb.pre_read_register(f"a{i}")
        sb.put(f"a{i}", torch.full((16,), float(i)))
    chunk = sb.pop_chunk()
    stacked = chunk.data["data"]
    rows = [np.asarray(chunk.item(j)) for j in range(len(chunk))]
    before = sb.payload_region
    # 1 MiB puts do not fit the first segment: the buffer migrates.
    for i in range(8):
        sb.pre_read_register(f"b{i}")
        sb.put(f"b{i}", torch.full((1 << 18,), 100.0 + i))
    assert sb.payload_region != before
    for j in range(8):
        assert torch.equal(stacked[j], torch.full((16,), float(j)))
        assert (rows[j] == float(j)).all()
        assert (np.asarray(chunk.item(j)) == float(j)).all()  # made after the migration
    assert chunk.ids == [f"a{j}" for j in range(8)]
    assert sb.live_chunks == 1
    del chunk, stacked, rows
    assert sb.live_chunks == 0
    big = sb.pop_chunk().data["data"]
    assert big.shape == (8, 1 << 18)
    assert big[:, 0].tolist() == [100.0 + i for i in range(8)]


def test_explicit_sizes_are_fixed_memory_and_say_so():
    sb = dropin("fixed:size=1", capacity=4)
    for i in range(4):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", torch.tensor([float(i)]))
    with pytest.raises(s.RingFull) as e:
        sb.pre_read_register("t4")
    assert "4 items" in str(e.value)
    assert sb.capacity == 4
    # intact: nothing lost, the next registration works after a pop
    assert sb.pop_chunk().data["data"][0].item() == 0.0
    sb.pre_read_register("t4")
    sb.put("t4", torch.tensor([4.0]))
    sb.signal_done()
    assert [c.data["data"][0].item() for c in sb] == [1.0, 2.0, 3.0, 4.0]


def test_fixed_memory_refuses_a_large_put_with_the_numbers():
    sb = dropin("fixed:size=1", item_bytes=64)
    sb.pre_read_register("a")
    with pytest.raises(s.BadTensor) as e:
        sb.put("a", torch.zeros(1000))
    assert "4000" in str(e.value) and "64" in str(e.value)
    sb.put("a", torch.zeros(16))  # still pending, still takes a fitting put
    assert sb.pop_chunk().data["data"].shape[-1] == 16


def test_grow_false_is_fixed_and_grow_true_grows_given_sizes():
    fixed = dropin("fixed:size=1", grow=False)
    for i in range(1024):
        fixed.pre_read_register(f"t{i}")
    with pytest.raises(s.RingFull):
        fixed.pre_read_register("t1024")
    grows = dropin("fixed:size=1", capacity=4, grow=True)
    for i in range(10):
        grows.pre_read_register(f"t{i}")
    assert grows.capacity >= 10


def test_an_open_write_slot_refuses_the_move_and_says_why():
    sb = dropin("fixed:size=1")
    slot = sb._p.register("held")  # the drop-in's producer's zero-copy slot
    for i in range(1023):
        sb.pre_read_register(f"t{i}")
    with pytest.raises(s.RingFull) as e:
        sb.pre_read_register("t1023")
    assert "register()" in str(e.value) and "commit it" in str(e.value)
    assert sb.capacity == 1024  # nothing moved, nothing lost
    slot.commit("f32", [1])
    sb.pre_read_register("t1023")  # no slot open: the stream moves
    assert sb.capacity > 1024
    sb.put("t0", torch.tensor([5.0]))
    assert sb.pop_chunk().ids == ["held"] and sb.pop_chunk().ids == ["t0"]


def test_same_sized_items_stack_across_a_move():
    # 1200-byte items: the first ring reserves 4096 for each, the move
    # learns 1200; chunk 42 (items 1008..1031) has items of both rings.
    sb = dropin("fixed:size=24")
    for i in range(2400):
        sb.pre_read_register(f"t{i}")
        sb.put(f"t{i}", torch.full((300,), float(i)))
    sb.signal_done()
    for chunk in sb:
        data = chunk.data["data"]
        assert torch.is_tensor(data) and data.shape == (24, 300), chunk.start_offset
        want = torch.arange(chunk.start_offset, chunk.start_offset + 24).float()
        assert torch.equal(data[:, 0], want) and torch.equal(data[:, 299], want)
