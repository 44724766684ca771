"""``Producer.abandon(tensor_id, reason, code)``: giving up a position that
``pre_read_register`` reserved, by its id (the core's ``Producer::abandon``),
as a receiver whose transfer failed does it without a Slot in hand."""

import threading

import numpy as np
import pytest
import shmstream as s


def first(chunk):
    return int(np.asarray(chunk.item(0))[0])


def open_pair(stream_id, capacity=64):
    p = s.Producer(*stream_id, capacity=capacity, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=5)
    return p, b


def test_abandon_by_id_reaches_the_consumer_with_reason_and_code(stream_id):
    p, b = open_pair(stream_id)
    p.pre_read_register("t0", 8)
    p.pre_read_register("t1", 8)
    p.pre_read_register("t2", 8)
    p.put("t0", np.array([7], np.int64))
    p.abandon("t1", "engine status -1", -1)
    p.put("t2", np.array([9], np.int64))
    assert first(b.next_chunk()) == 7
    with pytest.raises(s.Abandoned) as e:
        b.next_chunk()
    err = e.value
    assert (err.tensor_id, err.position, err.reason, err.code) == ("t1", 1, "engine status -1", -1)
    assert 'gave up tensor "t1" at position 1' in str(err), str(err)


def test_abandon_by_id_refuses_unknown_ids_and_bad_codes_leaving_the_stream_intact(stream_id):
    p, b = open_pair(stream_id)
    with pytest.raises(s.UnknownId, match='"nope" is not registered'):
        p.abandon("nope")
    p.pre_read_register("t0", 8)
    with pytest.raises(ValueError, match="outside the 32-bit range"):
        p.abandon("t0", "x", 1 << 31)
    # A slot taken with register() is abandoned through the Slot, not by id.
    slot = p.register("held", 8)
    with pytest.raises(s.UnknownId):
        p.abandon("held")
    assert slot.is_open
    slot.numpy("i64", [1])[:] = 5
    slot.commit("i64", [1])
    p.put("t0", np.array([3], np.int64))
    p.pre_read_register("t1", 8)
    p.abandon("t1")  # reason "" and code 0 by default
    with pytest.raises(s.UnknownId):
        p.abandon("t1")  # given up already
    # Nothing lost before it: the refused calls left the stream intact.
    assert [first(b.next_chunk()), first(b.next_chunk())] == [3, 5]
    with pytest.raises(s.Abandoned) as e:
        b.next_chunk()
    assert (e.value.tensor_id, e.value.position, e.value.reason, e.value.code) == ("t1", 2, "", 0)


def test_abandon_by_id_from_several_threads_at_once(stream_id):
    n, threads = 400, 4
    p, b = open_pair(stream_id, capacity=1024)
    for i in range(n):
        p.pre_read_register(f"t{i}", 8)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        start.wait()
        try:
            for i in range(k, n, threads):
                if i % 3 == 0 and i > n // 2:
                    p.abandon(f"t{i}", f"gave up t{i}", -i)
                else:
                    p.put(f"t{i}", np.array([i], np.int64))
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert errors == []
    # Every id was settled exactly once: none is pending any more.
    for i in range(n):
        with pytest.raises(s.UnknownId):
            p.abandon(f"t{i}")
    # The consumer reads every put up to the first abandoned position (the
    # stream ends there), which carries its own reason and code.
    cut = next(i for i in range(n) if i % 3 == 0 and i > n // 2)
    assert [first(b.next_chunk()) for _ in range(cut)] == list(range(cut))
    with pytest.raises(s.Abandoned) as e:
        b.next_chunk()
    assert (e.value.tensor_id, e.value.position, e.value.code) == (f"t{cut}", cut, -cut)
    assert e.value.reason == f"gave up t{cut}"
