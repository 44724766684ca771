"""Bad input gets a clear error from the one hierarchy, never a panic."""

import pickle

import numpy as np
import pytest
import shmstream as s
import torch


def sb(**kw):
    return s.StreamBuffer("req", "edge", "part", "fixed:size=2", **kw)


def test_put_without_register_and_twice():
    b = sb()
    with pytest.raises(s.UnknownId) as e:
        b.put("nope", np.zeros(2))
    assert "pre_read_register" in str(e.value) and "req/edge/part" in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, s.StreamError)
    b.pre_read_register("t0")
    with pytest.raises(s.DuplicateId):
        b.pre_read_register("t0")
    b.put("t0", np.zeros(2))
    with pytest.raises(s.UnknownId):
        b.put("t0", np.zeros(2))


def test_bad_ids():
    b = sb()
    with pytest.raises(s.BadId):
        b.pre_read_register("")
    with pytest.raises(s.BadId):
        b.pre_read_register("x" * 1000)


def test_too_large_wrong_dtype_non_contiguous_and_gpu():
    b = sb(item_bytes=64)
    b.pre_read_register("t0")
    with pytest.raises(s.BadTensor) as e:
        b.put("t0", np.zeros(100))
    assert "800" in str(e.value) and "64" in str(e.value)
    with pytest.raises(s.BadDType) as e:
        b.put("t0", np.zeros(2, np.complex64))
    assert isinstance(e.value, TypeError)
    with pytest.raises(s.BadTensor) as e:
        b.put("t0", np.zeros((4, 4))[:, 1])
    assert "contiguous" in str(e.value)
    with pytest.raises(s.BadTensor):
        b.put("t0", torch.zeros(4, 4).t())
    with pytest.raises(TypeError):
        b.put("t0", [1, 2, 3])
    with pytest.raises(s.BadTensor) as e:
        b.put("t0", torch.zeros(2, device="meta"))
    assert ".cpu()" in str(e.value)
    # the slot is still pending after every refusal
    b.put("t0", np.zeros(2))
    b.pre_read_register("t1")
    b.put("t1", np.zeros(2))
    assert len(b.pop_chunk()) == 2


def test_slot_commit_errors(stream_id):
    p = s.Producer(*stream_id, capacity=4, item_bytes=64)
    slot = p.register("t0")
    with pytest.raises(s.BadTensor):
        slot.commit("f32", [100])
    with pytest.raises(s.BadDType):
        slot.commit("complex", [2])
    with pytest.raises(s.BadTensor):
        slot.numpy(np.float64, (100,))
    slot.commit(np.float32, [4])
    with pytest.raises(s.SlotClosed):
        slot.commit("f32", [4])


def test_abandoned_slot_is_reported(stream_id):
    p = s.Producer(*stream_id, capacity=4, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    with p.register("t0"):
        pass  # no commit: abandoned
    with pytest.raises(s.Abandoned) as e:
        b.next_chunk()
    # Dropped without a reason: empty, and the message says "dropped".
    assert (e.value.tensor_id, e.value.position, e.value.reason, e.value.code) == ("t0", 0, "", 0)
    assert "dropped tensor" in str(e.value)


def test_an_abandon_reason_reaches_the_consumer_s_exception(stream_id):
    p = s.Producer(*stream_id, capacity=4, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    slot = p.register("t0")
    # A code outside 32 bits is refused, naming the range; the slot stays open.
    with pytest.raises(ValueError, match="outside the 32-bit range"):
        slot.abandon("x", 1 << 31)
    assert slot.is_open
    # Cut to 96 bytes on a character boundary: 95 x "a", not half an "é".
    slot.abandon("a" * 95 + "é and more", -7)
    assert not slot.is_open
    slot.abandon("again")  # closed: no effect
    with pytest.raises(s.Abandoned) as e:
        b.next_chunk()
    err = e.value
    assert (err.tensor_id, err.position, err.code) == ("t0", 0, -7)
    assert err.reason == "a" * 95
    assert str(err).endswith(f"without committing it: {'a' * 95} (status -7)"), str(err)
    # The attributes survive pickling (an exception sent to another process).
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.reason, back.code, back.position) == (
        s.Abandoned,
        str(err),
        err.reason,
        -7,
        0,
    )


def test_pop_when_not_ready_and_after_done():
    b = sb()
    with pytest.raises(s.NotReady):
        b.pop_chunk()
    b.signal_done()
    with pytest.raises(s.AfterDone):
        b.pre_read_register("t9")


def test_dlpack_arguments():
    b = sb()
    for i in range(2):
        b.pre_read_register(f"t{i}")
        b.put(f"t{i}", np.zeros(3, np.float32))
    c = b.pop_chunk()
    assert c.__dlpack_device__() == (1, 0)
    with pytest.raises(BufferError):
        c.__dlpack__(copy=True)
    with pytest.raises(BufferError):
        c.__dlpack__(dl_device=(2, 0))
    with pytest.raises(ValueError):
        c.__dlpack__(stream=5)
    c.__dlpack__(stream=None)


def test_bad_timeout_and_policy_type():
    with pytest.raises(s.BadConfig):
        sb().next_chunk(timeout=-1)
    with pytest.raises(TypeError):
        s.StreamBuffer("r", "e", "p", 42)
