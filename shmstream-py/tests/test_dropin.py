"""Drop-in parity with the reference StreamBuffer: SPEC section 2's worked
examples, exactly one final chunk for every policy, continue-after-done,
the reference's fields and the edge FIFO."""

import numpy as np
import pytest
import shmstream as s
import torch


def buffer(policy, capacity=64):
    return s.StreamBuffer(
        request_id="r",
        edge_name="new_token",
        from_partition="LLM",
        policy=policy,
        capacity=capacity,
    )


def put(sb, i, like="torch"):
    sb.pre_read_register(f"t{i}")
    item = torch.tensor([float(i)]) if like == "torch" else np.array([float(i)], np.float32)
    sb.put(f"t{i}", item)


def drain(sb):
    out = []
    while sb.has_chunk_ready():
        c = sb.pop_chunk()
        out.append((c.chunk_index, c.start_offset, len(c), c.context_items, c.is_final))
    return out


def test_sliding_worked_example():
    sb = buffer(s.SlidingWindowChunkPolicy(window=4, stride=2))
    for i in range(7):
        put(sb, i)
    sb.signal_done()
    chunks = []
    while sb.has_chunk_ready():
        c = sb.pop_chunk()
        chunks.append(
            (c.start_offset, c.data["data"].flatten().tolist(), c.context_items, c.is_final)
        )
    assert chunks == [
        (0, [0, 1, 2, 3], 0, False),
        (2, [2, 3, 4, 5], 2, False),
        (4, [4, 5, 6], 2, True),
    ]
    assert not sb.has_chunk_ready()
    assert sb.consumed == sb._consumed == 7


def test_fixed_drained_before_done_still_gets_one_empty_final():
    sb = buffer(s.FixedChunkPolicy(chunk_size=3))
    seen = []
    for i in range(6):
        put(sb, i)
        seen += drain(sb)
    sb.signal_done()
    assert sb.producer_done
    seen += drain(sb)
    assert seen == [(0, 0, 3, 0, False), (1, 3, 3, 0, False), (2, 6, 0, 0, True)]


def test_empty_final_chunk_carries_no_data():
    sb = buffer("fixed:size=3")
    sb.signal_done()
    c = sb.pop_chunk()
    assert c.is_final and len(c) == 0 and c.data == {"data": None}


def test_left_context_windows():
    sb = buffer(s.LeftContextChunkPolicy(chunk=10, left_context=2))
    for i in range(30):
        put(sb, i)
    got = [(o, n) for _, o, n, _, _ in drain(sb)[:3]]
    assert got == [(0, 10), (8, 12), (18, 12)]


def test_scheduled_windows():
    sb = buffer(s.ScheduledChunkPolicy(schedule=[4, 8, 16], chunk=25, context=25), capacity=128)
    for i in range(4 + 8 + 16 + 25 + 25):
        put(sb, i)
    got = [n for _, _, n, _, _ in drain(sb)[:5]]
    assert got == [4, 12, 28, 50, 50]


POLICIES = [
    (s.FixedChunkPolicy(chunk_size=3), 3),
    (s.SlidingWindowChunkPolicy(window=4, stride=2), 4),
    (s.LeftContextChunkPolicy(chunk=4, left_context=1), 4),
    (s.RampChunkPolicy(first=2, size=3, growth=2.0, max=8), 3),
    (s.ScheduledChunkPolicy(schedule=[2, 3], chunk=4, context=2), 4),
]


@pytest.mark.parametrize("policy,n", POLICIES, ids=lambda p: str(p))
@pytest.mark.parametrize("mult", ["0", "1", "n-1", "n", "n+1", "3n"])
@pytest.mark.parametrize("eager", [True, False], ids=["eager", "lazy"])
def test_exactly_one_final(policy, n, mult, eager):
    total = {"0": 0, "1": 1, "n-1": n - 1, "n": n, "n+1": n + 1, "3n": 3 * n}[mult]
    sb = buffer(policy)
    seen = []
    for i in range(total):
        put(sb, i)
        if eager:
            seen += drain(sb)
    sb.signal_done()
    seen += drain(sb)
    finals = [c for c in seen if c[4]]
    assert len(finals) == 1 and seen[-1][4], seen
    assert [c[0] for c in seen] == list(range(len(seen)))
    # every item shown, in order
    shown = set()
    for _, start, length, _, _ in seen:
        shown.update(range(start, start + length))
    assert shown == set(range(total))
    assert not sb.has_chunk_ready()


@pytest.mark.parametrize(
    "policy", [s.FixedChunkPolicy(3, continue_after_done=True), "ramp:first=1,size=2,continue"]
)
def test_continue_after_done_is_never_final_and_offers_empty_chunks(policy):
    sb = buffer(policy)
    for i in range(4):
        put(sb, i)
    sb.signal_done()
    chunks = [sb.pop_chunk() for _ in range(6)]
    assert not any(c.is_final for c in chunks)
    assert sum(len(c) for c in chunks) == 4
    assert len(chunks[-1]) == 0 and chunks[-1].data == {"data": None}
    assert sb.has_chunk_ready()


def test_collation_one_item_mixed_shapes_and_numpy_input():
    sb = buffer("fixed:size=2")
    put(sb, 0, like="numpy")
    sb.pre_read_register("big")
    sb.put("big", np.arange(6, dtype=np.float32).reshape(2, 3))
    c = sb.pop_chunk()
    data = c.data["data"]
    assert isinstance(data, list) and [tuple(t.shape) for t in data] == [(1,), (2, 3)]
    assert data[1].tolist() == [[0, 1, 2], [3, 4, 5]]
    sb.signal_done()
    put_after = sb.pop_chunk()
    assert put_after.is_final
    sb2 = buffer("fixed:size=1")
    sb2.pre_read_register("x")
    sb2.put("x", torch.ones(2, 3, dtype=torch.bfloat16))
    one = sb2.pop_chunk().data["data"]
    assert one.shape == (2, 3) and one.dtype == torch.bfloat16


def test_reference_fields_and_edges():
    sb = buffer(s.SlidingWindowChunkPolicy(window=28, stride=7))
    assert (sb.request_id, sb.edge_name, sb.from_partition) == ("r", "new_token", "LLM")
    assert (
        isinstance(sb.policy, s.SlidingWindowChunkPolicy)
        and str(sb.policy) == "sliding:window=28,stride=7"
    )
    assert sb.producer_done is False
    assert sb.pop_waiting_edge() is None
    edges = [object(), {"edge": 2}]
    for e in edges:
        sb.store_uningested_edge(e)
    assert sb.pop_waiting_edge() is edges[0]
    assert sb.pop_waiting_edge() is edges[1]
    assert sb.pop_waiting_edge() is None
    assert "sliding:window=28,stride=7" in repr(sb)


def test_policy_names_and_errors():
    assert (
        str(s.RampChunkPolicy(first=4, size=8, growth=2, max=32))
        == "ramp:first=4,size=8,growth=2,max=32"
    )
    with pytest.raises(s.BadPolicy) as e:
        s.SlidingWindowChunkPolicy(window=4, stride=5)
    assert isinstance(e.value, ValueError) and "stride" in str(e.value)
    with pytest.raises(s.BadPolicy):
        buffer("sliding:window=4,step=2")
    with pytest.raises(s.BadConfig) as e:
        buffer(s.FixedChunkPolicy(100), capacity=64)
    assert "64" in str(e.value)
