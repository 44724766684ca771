"""Property tests of the argument conversion (hypothesis): random timeouts,
shapes, dtypes, sizes, ids and policy names. Every call either succeeds or
raises a documented exception (a ``shmstream.StreamError``, or a
``ValueError`` / ``TypeError``; ``OverflowError`` only for an int outside
0..2**64 that the binding takes as an unsigned number), never a
``PanicException`` (a ``BaseException``) or a crash, and the stream still
carries an item afterwards."""

from __future__ import annotations

import math
import os
import signal
import uuid
from typing import Any, Callable

import numpy as np
import pytest
import shmstream as s
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NAMES = ["bool", "u8", "i8", "i16", "u16", "i32", "u32", "i64", "u64", "f16", "bf16", "f32", "f64"]

timeouts = st.one_of(
    st.none(),
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            -0.0,
            0.0,
            -1.0,  # the stream's own timeout where a call has one
            -2.5,
            1e-300,
            5e-324,
            1e9,
            1e9 * (1 + 1e-12),
            1.8e19,
            1e19,
            1e30,
            1.7976931348623157e308,
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)

ints = st.one_of(
    st.integers(min_value=0, max_value=64),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 2**32, 2**40, 2**63, 2**64 - 1, 2**64]),
)
shapes = st.lists(ints, max_size=12)
sizes = st.one_of(st.none(), ints)

dtypes = st.one_of(
    st.sampled_from(NAMES),
    st.text(max_size=8),
    st.sampled_from(
        [
            np.float32,
            np.dtype(np.int16),
            np.dtype("complex64"),
            np.dtype("U4"),
            np.dtype("V3"),
            torch.float32,
            torch.bfloat16,
            torch.complex64,
            object,
            None,
            3,
            "F32",
            "float32",
            "\ud800",
        ]
    ),
)

ids = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", "x" * 64, "x" * 65, "\ud800", "a\udfffb", "\x00", "é" * 40]),
)

policies = st.one_of(
    st.sampled_from(
        [
            "fixed:size=1",
            "fixed:size=0",
            "fixed:size=18446744073709551616",
            "sliding:window=4,stride=2",
            "sliding:window=2,stride=4",
            "ramp:first=1,size=4,max=8",
            "fixed",
            "",
            "fixed:size=1,size=2",
            "\ud800",
        ]
    ),
    st.text(max_size=40),
)


def _out_of_u64(*values: Any) -> bool:
    """Whether an argument is an int (or holds one) outside 0..2**64."""
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int) and not 0 <= v < 2**64:
            return True
        if isinstance(v, (list, tuple)) and _out_of_u64(*v):
            return True
    return False


def attempt(call: Callable[[], Any], *args: Any) -> Any:
    """Runs ``call``: its value, or None when it raised a documented
    exception (anything else, a PanicException first, fails the test)."""
    try:
        return call()
    except (s.StreamError, ValueError, TypeError):
        return None
    except OverflowError:
        assert _out_of_u64(*args), f"OverflowError for in-range arguments {args!r}"
        return None
    except BaseException as e:  # noqa: BLE001 (PanicException is a BaseException)
        pytest.fail(f"{type(e).__module__}.{type(e).__name__}: {e} for {args!r}")


@pytest.fixture(autouse=True)
def _bounded() -> Any:
    """A test that waits for ever fails after 120 s instead (the waits
    are Ctrl-C-able, so the alarm's exception ends them)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError("test_fuzz_args: a call waited past 120 s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def succeeds(call: Callable[[], Any], *args: Any) -> bool:
    """Whether ``call`` returned (as :func:`attempt`)."""
    return attempt(lambda: (call(), True)[1], *args) is True


def _stream() -> tuple[s.Producer, s.StreamBuffer]:
    """A producer and its consumer in this process: 8 items, 64 KiB (the
    test releases what it puts, so no call waits for room)."""
    sid = (f"pyfz-{os.getpid()}-{uuid.uuid4().hex[:10]}", "edge", "part")
    p = s.Producer(*sid, capacity=8, item_bytes=256, payload_bytes=1 << 16, timeout=0.2)
    b = s.StreamBuffer.open(*sid, policy="fixed:size=1", timeout=1)
    return p, b


def _still_carries(p: s.Producer, b: s.StreamBuffer) -> None:
    """Releases what is ready, then an item goes through."""
    while b.has_chunk_ready():
        b.pop_chunk().release()
    p.put("still-usable", np.arange(4, dtype=np.int32))
    chunk = b.next_chunk(timeout=5)
    assert chunk is not None
    np.testing.assert_array_equal(np.asarray(chunk.item(len(chunk) - 1)), np.arange(4))
    chunk.release()


@SETTINGS
@given(t=timeouts)
def test_any_timeout_is_taken_or_refused(t: Any) -> None:
    p, b = _stream()
    with p:
        # None of these waits: the ring has room, a chunk is ready, nothing
        # is outstanding, the stream exists. Only the conversion is tried.
        slot = attempt(lambda: p.register("t", None, t), t)
        if slot is not None:
            slot.commit("u8", [0])
        p.put("u", np.zeros(2, np.uint8))
        chunk = attempt(lambda: b.next_chunk(t), t)
        if chunk is not None:
            chunk.release()
        while b.has_chunk_ready():
            b.pop_chunk().release()
        attempt(lambda: p.put("v", np.zeros(2, np.uint8), timeout=t), t)
        while b.has_chunk_ready():
            b.pop_chunk().release()
        attempt(lambda: p.wait_drained(t), t)
        sid = (p._p.request_id, p._p.edge_name, p._p.from_partition)
        other = attempt(lambda: s.Producer(sid[0] + "-2", "e", "p", capacity=2, timeout=t), t)
        if other is not None:
            other.close()
        _still_carries(p, b)


@SETTINGS
@given(tensor_id=ids, nbytes=sizes, dtype=dtypes, shape=shapes, t=timeouts)
def test_register_and_commit_take_any_arguments(
    tensor_id: Any, nbytes: Any, dtype: Any, shape: Any, t: Any
) -> None:
    p, b = _stream()
    with p:
        slot = attempt(lambda: p.register(tensor_id, nbytes, t), tensor_id, nbytes, t)
        if slot is not None:
            attempt(lambda: slot.numpy(dtype, shape), dtype, shape)
            attempt(lambda: slot.commit(dtype, shape), dtype, shape)
            if slot.is_open:  # refused: it is still ours to commit
                slot.commit("u8", [0])
        pending = attempt(lambda: p.pre_read_register(tensor_id, nbytes), tensor_id, nbytes)
        if pending is not None:
            # A refused put leaves the id pending; the items behind it
            # wait for it, so it is then put with a fitting array.
            if not succeeds(lambda: p.put(tensor_id, np.zeros(2, np.uint8)), tensor_id):
                p.put(tensor_id, np.zeros(0, np.uint8))
        _still_carries(p, b)


@SETTINGS
@given(
    tensor_id=ids,
    dtype=st.sampled_from(
        [np.uint8, np.int16, np.float32, np.float64, np.complex64, np.bool_, np.uint64]
    ),
    shape=st.lists(st.integers(min_value=0, max_value=6), max_size=3),
    torch_too=st.booleans(),
    t=timeouts,
)
def test_put_and_put_many_take_any_array(
    tensor_id: Any, dtype: Any, shape: Any, torch_too: bool, t: Any
) -> None:
    p, b = _stream()
    with p:
        a = np.zeros(shape, dtype)
        item: Any = torch.from_numpy(a) if torch_too and dtype is not np.complex64 else a
        attempt(lambda: p.put(tensor_id, item, timeout=t), tensor_id, t)
        while b.has_chunk_ready():
            b.pop_chunk().release()
        attempt(lambda: p.put_many([(tensor_id, item), (None, a)], timeout=t), tensor_id, t)
        while b.has_chunk_ready():
            b.pop_chunk().release()
        stacked = np.zeros([2, *shape], dtype)
        attempt(lambda: p.put_many([tensor_id, None], stacked=stacked, timeout=t), tensor_id, t)
        _still_carries(p, b)


@SETTINGS
@given(
    names=st.tuples(ids, ids, ids),
    policy=policies,
    capacity=ints,
    item_bytes=ints,
    payload=sizes,
    prefix=st.one_of(st.none(), ids),
)
def test_stream_setup_takes_any_arguments(
    names: Any, policy: Any, capacity: Any, item_bytes: Any, payload: Any, prefix: Any
) -> None:
    small = all(isinstance(v, int) and 0 <= v <= 1 << 16 for v in (capacity, item_bytes))
    if small and payload is not None:
        small = isinstance(payload, int) and 0 <= payload <= 1 << 20
    args = (names, policy, capacity, item_bytes, payload, prefix)
    if small:  # an in-process buffer of up to 64 KiB items, 1 MiB
        b = attempt(
            lambda: s.StreamBuffer(
                *names, policy, capacity=capacity, item_bytes=item_bytes, payload_bytes=payload
            ),
            *args,
        )
        if b is not None:
            b.pre_read_register("t0", 0)
            b.put("t0", np.zeros(0, np.uint8))
            b.signal_done()
            assert sum(len(c) for c in b) == 1
    attempt(lambda: s.policy_name(policy), policy)
    # Names and a prefix on a small ring (the sizes above are tried in
    # process: a producer maps its whole payload).
    p = attempt(
        lambda: s.Producer(*names, capacity=4, item_bytes=64, prefix=prefix, timeout=0.2), *args
    )
    if p is not None:
        with p:
            b = s.StreamBuffer.open(*names, policy="fixed:size=1", prefix=prefix, timeout=1)
            _still_carries(p, b)
