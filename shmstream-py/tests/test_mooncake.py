"""Mooncake ingress over the engine's TCP transport on loopback: a sender
process announces tensors on the control socket, the receiver (in the test
process) reads them into hub streams' slots, the test pops them from its
StreamSet. Skipped, with the reason, only where the wheel does not import."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import shmstream as s

# The engine's INFO lines (one per connection) stay out of the test log.
os.environ.setdefault("MC_LOG_LEVEL", "WARNING")
pytest.importorskip(
    "mooncake.engine",
    reason="mooncake-transfer-engine-non-cuda is not installed "
    '(pip install "./shmstream-py[mooncake]"); the Mooncake ingress tests need it',
)

from _mooncake_util import Ingress, spawn_sender  # noqa: E402
from shmstream import mooncake as mc  # noqa: E402


@pytest.fixture
def ingress(tmp_path, request):
    opts = getattr(request, "param", {})
    shm_before = set(os.listdir("/dev/shm"))
    ing = Ingress(tmp_path, **opts)
    yield ing
    ing.close()
    assert ing.leftovers() == []
    new = set(os.listdir("/dev/shm")) - shm_before
    assert not [n for n in new if n.startswith(ing.prefix)], new


def finish(proc, timeout=30):
    out, _ = proc.communicate(timeout=timeout)
    return out


ORDERED = """
with mc.Sender(path, pool_bytes=4 << 20) as snd:
    for i in range(args["n"]):
        for e in range(args["streams"]):
            snd.send(("r", f"e{e}", "p"), f"t{i}", np.arange(7, dtype=np.int64) * 1000 + i + e)
    for e in range(args["streams"]):
        snd.done(("r", f"e{e}", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


def check_ordered(items, streams, n):
    assert len(items) == streams
    for e in range(streams):
        got = items[f"e{e}"]
        assert [tid for tid, _ in got] == [f"t{i}" for i in range(n)]
        for i, (_, a) in enumerate(got):
            assert a.dtype == np.int64 and a.shape == (7,)
            assert (a == np.arange(7) * 1000 + i + e).all(), (e, i, a)


def test_order_and_values_of_two_streams(ingress):
    proc = spawn_sender(ingress.path, ORDERED, n=200, streams=2)
    items, errors = ingress.drain(2)
    assert errors == {}
    check_ordered(items, 2, 200)
    assert finish(proc).strip() == "[]"
    c = ingress.receiver.counters
    assert c.items == 400 and c.bytes == 400 * 56 and c.failures == []
    # One memory registration per stream, none per item.
    assert c.registrations == 2
    assert 0 < c.engine_calls <= 400  # async: one submission per tensor


@pytest.mark.parametrize("ingress", [{"capacity": 256, "item_bytes": 64}], indirect=True)
def test_256_streams_at_once(ingress):
    proc = spawn_sender(ingress.path, ORDERED, n=4, streams=256)
    items, errors = ingress.drain(256, timeout=60)
    assert errors == {}
    check_ordered(items, 256, 4)
    assert finish(proc).strip() == "[]"
    assert ingress.receiver.counters.registrations == 256
    assert ingress.receiver.streams == 0


@pytest.mark.parametrize("ingress", [{"capacity": 4, "item_bytes": 64}], indirect=True)
def test_a_full_ring_holds_announcements_back_in_order(ingress):
    proc = spawn_sender(ingress.path, ORDERED, n=100, streams=2)
    items, errors = ingress.drain(2)
    assert errors == {}
    check_ordered(items, 2, 100)
    finish(proc)


MIXED = """
rng = np.random.default_rng(7)
sizes = [("u8", (1,)), ("i64", (7,)), ("f32", (16384,)), ("f32", (524288,)), ("f16", (3, 5)),
         ("u8", (0,)), ("f64", (33,)), ("i16", (1000,))]
with mc.Sender(path, pool_bytes=16 << 20) as snd:
    for i, (dt, shape) in enumerate(sizes * 3):
        a = (rng.integers(0, 100, size=shape)).astype({"u8": np.uint8, "i64": np.int64,
             "f32": np.float32, "f16": np.float16, "f64": np.float64, "i16": np.int16}[dt])
        snd.send(("r", "mixed", "p"), f"m{i}", a)
    snd.done(("r", "mixed", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


@pytest.mark.parametrize("ingress", [{"item_bytes": 4 << 20}], indirect=True)
def test_mixed_sizes_and_dtypes_land_whole(ingress):
    proc = spawn_sender(ingress.path, MIXED)
    items, errors = ingress.drain(1)
    assert errors == {}
    assert finish(proc).strip() == "[]"
    rng = np.random.default_rng(7)
    sizes = [
        (np.uint8, (1,)), (np.int64, (7,)), (np.float32, (16384,)), (np.float32, (524288,)),
        (np.float16, (3, 5)), (np.uint8, (0,)), (np.float64, (33,)), (np.int16, (1000,)),
    ]  # fmt: skip
    got = items["mixed"]
    assert [tid for tid, _ in got] == [f"m{i}" for i in range(24)]
    for (_, a), (dt, shape) in zip(got, sizes * 3):
        want = rng.integers(0, 100, size=shape).astype(dt)
        assert a.dtype == want.dtype and a.shape == want.shape
        assert (a == want).all()


class GatedEngine:
    """The real engine, but a read of ``gated`` bytes waits until ``release``
    is set: the first announced tensor's read then completes last."""

    def __init__(self, gated: int) -> None:
        import threading

        self.inner = mc.new_engine()
        self.gated = gated
        self.release = threading.Event()

    def batch_transfer_sync_read(self, session, ptrs, addrs, lens):
        if self.gated in lens:
            assert self.release.wait(20), "the later reads never completed"
        return self.inner.batch_transfer_sync_read(session, ptrs, addrs, lens)

    def batch_transfer_async_read(self, session, ptrs, addrs, lens):
        if self.gated in lens:
            assert self.release.wait(20), "the later reads never completed"
        return self.inner.batch_transfer_async_read(session, ptrs, addrs, lens)

    def __getattr__(self, name):
        return getattr(self.inner, name)


BIG_FIRST = """
with mc.Sender(path, pool_bytes=8 << 20) as snd:
    snd.send(("r", "ooo", "p"), "big", np.arange(262144, dtype=np.int32))
    snd.flush()
    for i in range(8):
        snd.send(("r", "ooo", "p"), f"s{i}", np.arange(7, dtype=np.int64) + i)
    snd.done(("r", "ooo", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


@pytest.mark.parametrize("reads", ["async", "sync"])
def test_out_of_order_completion_is_delivered_in_announcement_order(tmp_path, reads):
    engine = GatedEngine(262144 * 4)
    ing = Ingress(
        tmp_path, engine, item_bytes=1 << 20, max_batch=1, threads=4, per_session=4, reads=reads
    )
    try:
        orig = ing.server.receiver._on_complete

        small_done = []

        def on_complete(ann, error):
            orig(ann, error)
            if ann.tensor_id.startswith("s"):
                small_done.append(ann.tensor_id)
                if len(small_done) == 8:
                    engine.release.set()

        ing.server.receiver._on_complete = on_complete
        proc = spawn_sender(ing.path, BIG_FIRST)
        items, errors = ing.drain(1)
        assert errors == {}
        assert finish(proc).strip() == "[]"
        # Completed out of order: "big" after every small one ...
        done_order = [tid for tid, err in ing.completions if err is None]
        assert done_order[-1] == "big" and len(done_order) == 9
        # ... and delivered in announcement order, whole.
        got = items["ooo"]
        assert [tid for tid, _ in got] == ["big"] + [f"s{i}" for i in range(8)]
        assert (got[0][1] == np.arange(262144, dtype=np.int32)).all()
        for i, (_, a) in enumerate(got[1:]):
            assert (a == np.arange(7) + i).all()
    finally:
        engine.release.set()
        ing.close()
        assert ing.leftovers() == []


UNREGISTERED = """
with mc.Sender(path, pool_bytes=1 << 20) as snd:
    snd.send(("r", "good", "p"), "g0", np.full(7, 0, np.int64))
    snd.send(("r", "bad", "p"), "b0", np.full(7, 0, np.int64))
    snd.wait_acks(30)
    print("first", flush=True)
    sys.stdin.readline()  # the worker adopted both streams
    for i in range(1, 10):
        snd.send(("r", "good", "p"), f"g{i}", np.full(7, i, np.int64))
        if i < 3:
            snd.send(("r", "bad", "p"), f"b{i}", np.full(7, i, np.int64))
        elif i == 3:
            # An address the sender never registered (past the end of its pool).
            snd.announce(("r", "bad", "p"), "b3", snd.pool_addr + (64 << 20), 56, "i64", (7,))
        else:
            snd.send(("r", "bad", "p"), f"b{i}", np.full(7, i, np.int64))
    snd.done(("r", "good", "p"))
    snd.done(("r", "bad", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


def adopt_both(ingress, proc):
    """Lets the sender go on once the worker adopted its two streams: the
    receiver may drop a failed stream at once, and a hub stream dropped
    before its adoption is, in this one process, left behind (see the
    killed-sender test)."""
    assert proc.stdout.readline().strip() == "first"
    deadline = time.monotonic() + 10
    while len(ingress.set) < 2 and time.monotonic() < deadline:
        ingress.set.wait_any(timeout=0.1)
    assert len(ingress.set) == 2
    proc.stdin.write("go\n")
    proc.stdin.flush()


@pytest.mark.parametrize("ingress", [{"reads": "async"}, {"reads": "sync"}], indirect=True)
def test_an_unregistered_remote_address_fails_that_tensor_only(ingress):
    proc = spawn_sender(ingress.path, UNREGISTERED)
    adopt_both(ingress, proc)
    items, errors = ingress.drain(2)
    sender_errors = finish(proc)
    # The good stream is whole.
    assert "good" not in errors
    assert [tid for tid, _ in items["good"]] == [f"g{i}" for i in range(10)]
    # The bad one delivers what came before, then names the failed tensor.
    assert [tid for tid, _ in items.get("bad", [])] == ["b0", "b1", "b2"]
    assert isinstance(errors["bad"], s.Abandoned)
    assert '"b3"' in str(errors["bad"]) and "position 3" in str(errors["bad"])
    # The consumer's exception names the engine's status too: in its
    # message, and as attributes.
    bad = errors["bad"]
    assert "mooncake read failed: engine status -1" in str(bad), str(bad)
    assert (bad.tensor_id, bad.position, bad.code) == ("b3", 3, -1)
    assert bad.reason.startswith("mooncake read failed: engine status -1, 56 B from "), bad.reason
    # The receiver and the sender name the tensor and the engine's status.
    (failure,) = ingress.receiver.counters.failures
    assert "'b3'" in failure and "engine status -1" in failure
    assert "engine status -1" in sender_errors and "'b3'" in sender_errors
    # Every announcement is settled once: read, failed, or (after the
    # failure, unless already reserved) refused.
    settled = sorted(tid for tid, _ in ingress.completions)
    assert settled == sorted([f"g{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
    failed = [tid for tid, err in ingress.completions if err and "engine status" in err]
    assert failed == ["b3"]
    assert ingress.receiver.streams == 0


UNREACHABLE = """
with mc.Sender(path, pool_bytes=1 << 20) as snd:
    snd.send(("r", "ok", "p"), "a0", np.full(7, 1, np.int64))
    snd.send(("r", "gone", "p"), "w0", np.full(7, 5, np.int64))
    snd.wait_acks(30)
    print("first", flush=True)
    sys.stdin.readline()  # the worker adopted both streams
    snd.session = "127.0.0.1:1"  # a peer that is not there
    snd.send(("r", "gone", "p"), "x0", np.full(7, 2, np.int64))
    snd.session = mc.session_id(snd.engine)
    snd.send(("r", "ok", "p"), "a1", np.full(7, 3, np.int64))
    snd.done(("r", "ok", "p"))
    snd.done(("r", "gone", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


@pytest.mark.parametrize("ingress", [{"reads": "async"}, {"reads": "sync"}], indirect=True)
def test_a_failed_read_from_an_unreachable_peer_abandons_its_slot(ingress):
    proc = spawn_sender(ingress.path, UNREACHABLE)
    adopt_both(ingress, proc)
    items, errors = ingress.drain(2)
    out = finish(proc)
    assert [tid for tid, _ in items["ok"]] == ["a0", "a1"] and "ok" not in errors
    assert [tid for tid, _ in items["gone"]] == ["w0"]
    assert isinstance(errors["gone"], s.Abandoned) and '"x0"' in str(errors["gone"])
    assert "127.0.0.1:1" in out and "engine status" in out
    gone = errors["gone"]
    assert "engine status" in str(gone) and "127.0.0.1:1 " in str(gone), str(gone)
    assert gone.code < 0 and gone.tensor_id == "x0"


class SilentEngine:
    """The real engine, but the reads of ``silent`` bytes never report done
    (an engine that does not answer): the receiver gives up after its
    read_timeout."""

    def __init__(self, silent: int) -> None:
        self.inner = mc.new_engine()
        self.silent = silent
        self.silent_ids: set[int] = set()

    def batch_transfer_async_read(self, session, ptrs, addrs, lens):
        bid = self.inner.batch_transfer_async_read(session, ptrs, addrs, lens)
        if self.silent in lens:
            self.silent_ids.add(bid)
        return bid

    def transfer_check_status(self, bid):
        return 0 if bid in self.silent_ids else self.inner.transfer_check_status(bid)

    def __getattr__(self, name):
        return getattr(self.inner, name)


SILENT = """
with mc.Sender(path, pool_bytes=1 << 20) as snd:
    snd.send(("r", "slow", "p"), "s0", np.full(7, 0, np.int64))
    snd.send(("r", "fine", "p"), "f0", np.full(7, 0, np.int64))
    snd.wait_acks(30)
    print("first", flush=True)
    sys.stdin.readline()
    snd.send(("r", "slow", "p"), "s1", np.full(1000, 1, np.float32))
    snd.send(("r", "fine", "p"), "f1", np.full(7, 1, np.int64))
    snd.done(("r", "slow", "p"))
    snd.done(("r", "fine", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


def test_a_read_the_engine_never_finishes_is_given_up_and_quarantined(tmp_path):
    ing = Ingress(tmp_path, SilentEngine(4000), read_timeout=0.5)
    try:
        proc = spawn_sender(ing.path, SILENT)
        adopt_both(ing, proc)
        items, errors = ing.drain(2)
        out = finish(proc)
        assert [tid for tid, _ in items["fine"]] == ["f0", "f1"] and "fine" not in errors
        assert [tid for tid, _ in items["slow"]] == ["s0"]
        assert isinstance(errors["slow"], s.Abandoned) and '"s1"' in str(errors["slow"])
        assert "not finished after 0.5 s" in str(errors["slow"]), str(errors["slow"])
        assert "not finished after 0.5 s" in errors["slow"].reason
        assert "'s1'" in out and "not finished after 0.5 s" in out
        # Ended, but its ring stays registered and mapped until close().
        assert ing.receiver.streams == 0
        assert [n for n in ing.leftovers() if "r.slow.p" in n]
    finally:
        ing.close()
    assert ing.leftovers() == []


KILLED = """
snd = mc.Sender(path, pool_bytes=1 << 20)
for i in range(args["n"]):
    snd.send(("r", "k", "p"), f"k{i}", np.full(7, i, np.int64))
snd.flush()
snd.poll_acks(5)
print("sent", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("ingress", [{"read_timeout": 3.0}], indirect=True)
def test_a_killed_sender_ends_its_stream_with_an_error(ingress):
    proc = spawn_sender(ingress.path, KILLED, n=20)
    assert proc.stdout.readline().strip() == "sent"
    # The worker adopts the stream before the receiver can drop it: a hub
    # stream dropped unadopted is handed over to the worker, whose cleanup
    # checks the producer's process, which here (one process for receiver
    # and worker) is alive. Separate processes, as deployed, need no care.
    assert ingress.set.wait_any(timeout=5) != []
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    items, errors = ingress.drain(1)
    got = items.get("k", [])
    # Whatever arrived is a prefix, whole; then the stream reports the end.
    assert [tid for tid, _ in got] == [f"k{i}" for i in range(len(got))]
    for i, (_, a) in enumerate(got):
        assert (a == i).all()
    assert isinstance(errors["k"], (s.ProducerGone, s.Abandoned)), errors
    # Reads the dead peer never answers are given up after read_timeout;
    # until then (and, given up, until the receiver closes) the stream's
    # ring stays registered and mapped.
    deadline = time.monotonic() + 10
    while ingress.receiver.streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ingress.receiver.streams == 0


def test_bad_announcements_are_refused_naming_the_field():
    with pytest.raises(s.BadTensor, match="field 'nbytes': 17, but f32 x \\[4\\] is 16"):
        mc.parse(
            '{"stream":["r","e","p"],"id":"t","session":"h:1","addr":4096,'
            '"nbytes":17,"dtype":"f32","shape":[4]}'
        )
    with pytest.raises(s.BadTensor, match="field 'dtype'"):
        mc.parse(
            '{"stream":["r","e","p"],"id":"t","session":"h:1","addr":4096,'
            '"nbytes":4,"dtype":"f31","shape":[1]}'
        )
    with pytest.raises(s.BadTensor, match="field 'stream'"):
        mc.parse('{"stream":["r","e"],"done":true}')
    with pytest.raises(s.BadTensor, match="not JSON"):
        mc.parse("{")
    a = mc.Announcement(("r", "e", "p"), "t1", "h:1", 4096, 16, "f32", (2, 2), t=5)
    assert mc.parse(a.to_json()) == a


@pytest.mark.parametrize("name", sorted(mc.__all__))
def test_every_public_name_has_a_docstring(name):
    obj = getattr(mc, name)
    assert (obj.__doc__ or "").strip(), name
    if isinstance(obj, type) and not issubclass(obj, BaseException):
        missing = [
            k for k, v in vars(obj).items()
            if not k.startswith("_") and callable(v) and not (v.__doc__ or "").strip()
        ]  # fmt: skip
        assert not missing, f"{name}: {missing}"


def test_demo_source_mooncake_reports_every_item_in_order():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "shmstream.demo", "--source", "mooncake", "--items", "3000",
         "--capacity", "256", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["items"] == 3000 and r["lost"] == 0 and r["order_verified"]
    assert r["producer_exit_code"] == 0 and r["sender_exit_code"] == 0
    assert r["mooncake"]["registrations"] == 1 and r["mooncake"]["failures"] == []
    assert r["mooncake"]["items"] == 3000
    # The sender lays the rows out back to back: read in runs, not one by one.
    assert r["mooncake"]["reads"] < 3000 // 2 < r["mooncake"]["coalesced"], r["mooncake"]
    assert not [n for n in os.listdir("/dev/shm") if r["stream"].split("/")[0] in n]


# --- coalesced reads -------------------------------------------------------
# The sender lays tensors out itself (a buffer it registers) and announces
# them with explicit addresses: `items` is [edge, id, byte offset, value].
LAYOUT = """
with mc.Sender(path, pool_bytes=1 << 20) as snd:
    buf = np.zeros(1 << 17, np.int64)
    base = buf.ctypes.data
    assert snd.engine.register_memory(base, buf.nbytes) == 0
    edges = []
    for edge, tid, off, value in args["items"]:
        if args.get("unreachable") == edge:
            snd.session = "127.0.0.1:1"  # a peer that is not there
        buf[off // 8 : off // 8 + 7] = np.arange(7) + value
        snd.announce(("r", edge, "p"), tid, base + off, 56, "i64", (7,))
        snd.session = mc.session_id(snd.engine)
        if edge not in edges:
            edges.append(edge)
    for edge in edges:
        snd.done(("r", edge, "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
    snd.engine.unregister_memory(base)
"""


def laid_out(edge, prefix, n, start, stride):
    return [[edge, f"{prefix}{i}", start + i * stride, i] for i in range(n)]


def check_values(got, prefix, n):
    assert [tid for tid, _ in got] == [f"{prefix}{i}" for i in range(n)]
    for i, (_, a) in enumerate(got):
        assert a.dtype == np.int64 and (a == np.arange(7) + i).all(), (i, a)


class RecordingEngine:
    """The real engine, recording the lengths of every read submitted."""

    def __init__(self) -> None:
        self.inner = mc.new_engine()
        self.reads: list[list[int]] = []

    def batch_transfer_async_read(self, session, ptrs, addrs, lens):
        self.reads.append(list(lens))
        return self.inner.batch_transfer_async_read(session, ptrs, addrs, lens)

    def batch_transfer_sync_read(self, session, ptrs, addrs, lens):
        self.reads.append(list(lens))
        return self.inner.batch_transfer_sync_read(session, ptrs, addrs, lens)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("reads", ["async", "sync"])
def test_contiguous_announcements_coalesce_and_gapped_ones_do_not(tmp_path, reads):
    engine = RecordingEngine()
    ing = Ingress(tmp_path, engine, capacity=256, item_bytes=64, reads=reads)
    try:
        # 64 tensors of 56 B back to back (as the receiving ring lays them
        # out), and 32 with an 8 B gap between them at the sender.
        items = laid_out("dense", "d", 64, 0, 56) + laid_out("gapped", "g", 32, 1 << 16, 64)
        proc = spawn_sender(ing.path, LAYOUT, items=items)
        got, errors = ing.drain(2)
        assert errors == {} and finish(proc).strip() == "[]"
        check_values(got["dense"], "d", 64)
        check_values(got["gapped"], "g", 32)
        c = ing.receiver.counters
        assert c.items == 96 and c.bytes == 96 * 56
        flat = [n for call in engine.reads for n in call]
        # The gapped stream: one read per tensor; the dense one: a few
        # reads of many tensors each (however the announcements arrived).
        assert flat.count(56) <= 32 + 8, flat
        assert sum(flat) == 96 * 56, flat
        assert len(flat) <= 32 + 8, flat
        assert c.reads == len(flat) and c.coalesced >= 64 - 8, (c.reads, c.coalesced)
    finally:
        ing.close()
    assert ing.leftovers() == []


@pytest.mark.parametrize("ingress", [{"capacity": 64, "item_bytes": 64}], indirect=True)
def test_coalesced_reads_break_where_the_ring_wraps(ingress):
    # 300 contiguous tensors through a ring of 64 x 64 B (4 KiB of payload,
    # 73 tensors of 56 B): the slots wrap several times, so reads cover only
    # contiguous slots; every value lands whole and in order.
    proc = spawn_sender(ingress.path, LAYOUT, items=laid_out("wrap", "w", 300, 0, 56))
    got, errors = ingress.drain(1)
    assert errors == {} and finish(proc).strip() == "[]"
    check_values(got["wrap"], "w", 300)
    c = ingress.receiver.counters
    assert c.items == 300
    # Fewer reads than tensors, more than one per wrap of the ring.
    assert 300 * 56 // 4096 < c.reads < 300, c.reads
    assert c.engine_calls < 300


@pytest.mark.parametrize("reads", ["async", "sync"])
def test_a_failed_coalesced_read_abandons_every_slot_in_it(tmp_path, reads):
    engine = RecordingEngine()
    ing = Ingress(tmp_path, engine, reads=reads)
    try:
        # "gone": 6 contiguous tensors from a peer that is not there;
        # "fine": 6 contiguous ones from the real sender.
        items = laid_out("gone", "x", 6, 0, 56) + laid_out("fine", "f", 6, 4096, 56)
        proc = spawn_sender(ing.path, LAYOUT, items=items, unreachable="gone")
        got, errors = ing.drain(2)
        out = finish(proc)
        check_values(got["fine"], "f", 6)
        assert "fine" not in errors and "gone" not in got
        gone = errors["gone"]
        assert isinstance(gone, s.Abandoned)
        assert (gone.tensor_id, gone.position) == ("x0", 0) and gone.code < 0
        assert "engine status" in gone.reason and "127.0.0.1:1 " in gone.reason, gone.reason
        # The run was one read of the 6 tensors; each of them failed with
        # the engine's status (each retried alone first, to find which).
        assert [6 * 56] in engine.reads, engine.reads
        failed = sorted(tid for tid, err in ing.completions if err and "engine status" in err)
        assert failed == [f"x{i}" for i in range(6)], ing.completions
        assert all(f"'x{i}'" in out for i in range(6)), out
        assert ing.receiver.streams == 0
    finally:
        ing.close()
    assert ing.leftovers() == []


class GatedRunEngine(RecordingEngine):
    """The first read of the ``gated`` stream waits until the later one of
    the same stream completed: a coalesced run completing out of order."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.first = True
        self.release = threading.Event()

    def batch_transfer_async_read(self, session, ptrs, addrs, lens):
        if self.first and sum(lens) > 56:
            self.first = False
            bid = super().batch_transfer_async_read(session, ptrs, addrs, lens)
            self.held = bid
            return bid
        return super().batch_transfer_async_read(session, ptrs, addrs, lens)

    def transfer_check_status(self, bid):
        if bid == getattr(self, "held", None) and not self.release.is_set():
            return 0
        return self.inner.transfer_check_status(bid)


TWO_RUNS = """
with mc.Sender(path, pool_bytes=1 << 20) as snd:
    buf = np.zeros(1 << 12, np.int64)
    base = buf.ctypes.data
    assert snd.engine.register_memory(base, buf.nbytes) == 0
    for i in range(8):
        buf[i * 7 : i * 7 + 7] = np.arange(7) + i
        snd.announce(("r", "ooo", "p"), f"o{i}", base + i * 56, 56, "i64", (7,))
        if i == 3:
            snd.flush()
            print("first run", flush=True)
            sys.stdin.readline()
    snd.done(("r", "ooo", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
    snd.engine.unregister_memory(base)
"""


def test_coalesced_runs_completing_out_of_order_are_delivered_in_order(tmp_path):
    engine = GatedRunEngine()
    ing = Ingress(tmp_path, engine, per_session=4, threads=4)
    try:
        proc = spawn_sender(ing.path, TWO_RUNS)
        assert proc.stdout.readline().strip() == "first run"
        deadline = time.monotonic() + 10
        while not hasattr(engine, "held") and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        # The second run (o4..o7) commits while the first is held.
        deadline = time.monotonic() + 10
        while len(ing.completions) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(tid for tid, _ in ing.completions) == ["o4", "o5", "o6", "o7"]
        engine.release.set()
        got, errors = ing.drain(1)
        assert errors == {} and finish(proc).strip() == "[]"
        check_values(got["ooo"], "o", 8)
        assert sorted(sum(r) for r in engine.reads) == [4 * 56, 4 * 56], engine.reads
    finally:
        engine.release.set()
        ing.close()
    assert ing.leftovers() == []


MANY_UNREAD_ACKS = """
# Announces every tensor before reading a single acknowledgement (no
# window): the acknowledgements pile up unread on the control socket.
with mc.Sender(path, pool_bytes=4 << 20) as snd:
    for half in (0, 1):
        for i in range(half * args["n"], (half + 1) * args["n"]):
            snd.send(("r", "acks", "p"), f"a{i}", np.arange(7, dtype=np.int64) + i)
        snd.flush()
        print("announced", flush=True)
        sys.stdin.readline()
    snd.done(("r", "acks", "p"))
    snd.wait_acks(60)
    print(json.dumps(snd.errors), flush=True)
"""


@pytest.mark.parametrize("ingress", [{"capacity": 8192, "item_bytes": 64}], indirect=True)
def test_unread_acknowledgements_never_stall_the_control_loop(ingress):
    # 6000 acknowledgements (~50 B each) are more than a Unix socket holds
    # unread (~200 KiB): a control loop blocking on writing them stops
    # reading announcements, and the sender then blocks writing the next
    # 6000 (~1 MB): both wait for ever (a 4096-tensor window at N = 256 in
    # the benchmark stalled so).
    n = 6000
    proc = spawn_sender(ingress.path, MANY_UNREAD_ACKS, n=n)
    try:
        check_both_halves(ingress, proc, n)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def line_within(proc, timeout):
    """The sender's next output line, or AssertionError after ``timeout`` s."""
    import queue
    import threading

    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: q.put(proc.stdout.readline()), daemon=True).start()
    try:
        return q.get(timeout=timeout).strip()
    except queue.Empty:
        raise AssertionError(f"the sender printed nothing within {timeout} s: stalled") from None


def check_both_halves(ingress, proc, n):
    assert line_within(proc, 30) == "announced"
    deadline = time.monotonic() + 30
    while ingress.receiver.counters.items < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ingress.receiver.counters.items == n
    time.sleep(0.5)  # the acknowledgements written (or not) meanwhile
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert line_within(proc, 30) == "announced"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    got, errors = ingress.drain(1, timeout=30)
    assert errors == {}
    check_values(got["acks"], "a", 2 * n)
    assert line_within(proc, 30) == "[]"


PER_STREAM_POOL = """
def size(ident):
    return 1 << 30 if ident[1] == "huge" else 4096

with mc.Sender(path, pool_bytes=1 << 16, stream_bytes=size) as snd:
    try:
        snd.send(("r", "huge", "p"), "h0", np.zeros(7, np.int64))
    except Exception as e:
        print(type(e).__name__, e, flush=True)
    # Two streams interleaved, each in its own 4 KiB of the pool (73
    # tensors of 56 B: each part wraps and is reused as acks come back).
    for i in range(200):
        for e in range(2):
            snd.send(("r", f"e{e}", "p"), f"t{i}", np.arange(7, dtype=np.int64) * 1000 + i + e)
    for e in range(2):
        snd.done(("r", f"e{e}", "p"))
    # 16 more streams: the pool (16 parts of 4 KiB) has room for them only
    # once the first two gave theirs back (done and acknowledged).
    for i in range(10):
        for e in range(2, 18):
            snd.send(("r", f"e{e}", "p"), f"t{i}", np.arange(7, dtype=np.int64) * 1000 + i + e)
    for e in range(2, 18):
        snd.done(("r", f"e{e}", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


@pytest.mark.parametrize("ingress", [{"capacity": 256, "item_bytes": 64}], indirect=True)
def test_a_sender_with_a_pool_part_per_stream_lays_tensors_out_for_coalescing(ingress):
    proc = spawn_sender(ingress.path, PER_STREAM_POOL)
    items, errors = ingress.drain(18, timeout=60)
    out = finish(proc).strip().splitlines()
    assert errors == {}
    assert out[0] == (
        "BadTensor stream_bytes of stream r/huge/p: 1073741824, expected 1 to the pool's "
        "65536 bytes"
    ), out
    assert out[-1] == "[]", out
    for e in range(18):
        got = items[f"e{e}"]
        n = 200 if e < 2 else 10
        assert [tid for tid, _ in got] == [f"t{i}" for i in range(n)]
        for i, (_, a) in enumerate(got):
            assert (a == np.arange(7) * 1000 + i + e).all(), (e, i, a)
    c = ingress.receiver.counters
    assert c.items == 560
    # Interleaved at the sender, yet each stream's tensors are read in runs.
    assert c.reads < 560 // 2 and c.coalesced > 560 // 2, (c.reads, c.coalesced)


TWO_REGISTRATIONS = """
with mc.Sender(path, pool_bytes=1 << 20) as snd:
    buf = np.zeros(8 * 7, np.int64)
    base = buf.ctypes.data
    # Back to back, but two registrations: a read across both is refused.
    assert snd.engine.register_memory(base, 4 * 56) == 0
    assert snd.engine.register_memory(base + 4 * 56, 4 * 56) == 0
    for i in range(8):
        buf[i * 7 : i * 7 + 7] = np.arange(7) + i
        snd.announce(("r", "split", "p"), f"s{i}", base + i * 56, 56, "i64", (7,))
    snd.done(("r", "split", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
    snd.engine.unregister_memory(base + 4 * 56)
    snd.engine.unregister_memory(base)
"""


@pytest.mark.parametrize("reads", ["async", "sync"])
def test_a_run_the_engine_refuses_whole_is_read_tensor_by_tensor(tmp_path, reads):
    # Coalescing must not fail a good tensor: the run across the sender's
    # two registrations fails as one transfer, then each tensor is read
    # alone, and all of them land.
    engine = RecordingEngine()
    ing = Ingress(tmp_path, engine, reads=reads)
    try:
        proc = spawn_sender(ing.path, TWO_REGISTRATIONS)
        got, errors = ing.drain(1)
        assert errors == {} and finish(proc).strip() == "[]"
        check_values(got["split"], "s", 8)
        assert ing.receiver.counters.failures == []
        flat = [n for call in engine.reads for n in call]
        assert flat[0] == 8 * 56 and flat[1:].count(56) == 8, engine.reads
    finally:
        ing.close()
    assert ing.leftovers() == []


POOL_FULL = """
with mc.Sender(path, pool_bytes=8192, stream_bytes=8192, timeout=0.5) as snd:
    snd.send(("r", "first", "p"), "f0", np.zeros(7, np.int64))
    try:
        # The first stream holds the whole pool until its 'done' is acked.
        snd.send(("r", "second", "p"), "s0", np.zeros(7, np.int64))
    except Exception as e:
        print(type(e).__name__, e, flush=True)
    try:
        snd.send(("r", "first", "p"), "big", np.zeros(8193, np.uint8))
    except Exception as e:
        print(type(e).__name__, e, flush=True)
    snd.done(("r", "first", "p"))
    snd.wait_acks(30)
    # Given back: the second stream now has room.
    snd.send(("r", "second", "p"), "s0", np.zeros(7, np.int64))
    snd.done(("r", "second", "p"))
    snd.wait_acks(30)
    print(json.dumps(snd.errors), flush=True)
"""


def test_a_sender_without_pool_room_waits_then_names_the_pool(ingress):
    proc = spawn_sender(ingress.path, POOL_FULL)
    items, errors = ingress.drain(2)
    out = finish(proc).strip().splitlines()
    assert errors == {} and out[-1] == "[]", out
    assert out[0].startswith(
        "StreamTimeout mooncake sender: no room in the pool (8192 bytes) for stream "
        "r/second/p's 8192 bytes after 0.5 s: 1 streams hold 8192 bytes"
    ), out
    assert out[1] == (
        "BadTensor a tensor of 8193 bytes exceeds stream r/first/p's 8192 bytes of the "
        "pool (stream_bytes)"
    ), out
    assert [tid for tid, _ in items["first"]] == ["f0"]
    assert [tid for tid, _ in items["second"]] == ["s0"]


SERVE = """
e = mc.new_engine()
buf = np.zeros(args["n"] * 7, np.int64)
for i in range(args["n"]):
    buf[i * 7 : i * 7 + 7] = np.arange(7) + i
assert e.register_memory(buf.ctypes.data, buf.nbytes) == 0
print(json.dumps([mc.session_id(e), buf.ctypes.data]), flush=True)
sys.stdin.read()  # serves until the test closes stdin
"""


def test_a_busy_reader_backs_off_its_polling_and_commits_in_groups(tmp_path, monkeypatch):
    # 64 reads of 56 B in ONE reader batch (no coalescing, one reader):
    # while reads stay pending the reader's naps only grow (first
    # NAP_FIRST, doubling to NAP_MAX), also after a round that completed
    # some, so a busy reader polls (and wakes the consumer) a few times
    # per batch rather than once per completion. Every tensor lands in order.
    import json
    import math

    from shmstream.mooncake import _receiver as R

    naps: list[tuple[str, float]] = []  # ("call", 0) marks a batch's start
    real_time = R.time

    class Clock:
        monotonic = staticmethod(real_time.monotonic)

        @staticmethod
        def sleep(d: float) -> None:
            naps.append(("nap", d))
            real_time.sleep(d)

    class Marking(mc.Receiver):
        def _read_async(self, session, runs):
            naps.append(("call", real_time.monotonic()))
            super()._read_async(session, runs)
            naps.append(("end", real_time.monotonic()))

    monkeypatch.setattr(R, "time", Clock)
    n = 64
    proc = spawn_sender("-", SERVE, n=n)
    session, base = json.loads(proc.stdout.readline())
    ident = (f"nap{os.getpid()}", "e", "p")
    producer = s.Producer(*ident, capacity=n, item_bytes=64)
    rx = Marking(coalesce_bytes=0, threads=1, per_session=1)
    try:
        rx.add_stream(ident, producer)
        buf = s.StreamBuffer.open(*ident, policy="fixed:size=1", timeout=10)
        anns = [
            mc.Announcement(ident, f"t{i}", session, base + i * 56, 56, "i64", (7,))
            for i in range(n)
        ]
        rx.submit(anns + [mc.Announcement(ident, done=True)])
        got = []
        for chunk in buf:
            got.append((chunk.ids[0], np.asarray(chunk.item(0)).copy()))
            chunk.release()
        check_values(got, "t", n)
        assert rx.counters.reads == n and rx.counters.engine_calls == n
        assert [k for k, _ in naps].count("call") == 1, naps  # one batch of 64
        calls = []
        for kind, v in naps:
            if kind == "call":
                calls.append((v, []))
            elif kind == "nap":
                calls[-1][1].append(v)
            else:
                calls[-1] = (v - calls[-1][0], calls[-1][1])
        for elapsed, ds in calls:
            assert ds and ds[0] == R.NAP_FIRST, ds
            assert all(b >= a for a, b in zip(ds, ds[1:])), f"a nap shrank: {ds}"
            # Growth to NAP_MAX, then one nap per NAP_MAX of the batch's time.
            growth = math.ceil(math.log2(R.NAP_MAX / R.NAP_FIRST)) + 1
            assert len(ds) <= growth + elapsed / R.NAP_MAX + 1, (len(ds), elapsed, ds)
    finally:
        rx.close()
        producer.close()
        proc.stdin.close()
        proc.wait(30)
