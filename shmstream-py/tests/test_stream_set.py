"""The worker hub from Python (issue 12): a StreamSet reading many streams
that producers create through a Hub, in threads and in other processes."""

import _thread
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib

import numpy as np
import pytest
import shmstream


@pytest.fixture
def worker():
    return f"w{os.getpid()}-{uuid.uuid4().hex[:8]}"


def item(stream: int, i: int) -> np.ndarray:
    """Item ``i`` of stream ``stream``: 1 to 64 bytes, a function of both."""
    n = 1 + (stream * 7 + i * 13) % 64
    return ((np.arange(n, dtype=np.uint32) * 31 + stream * 1009 + i) % 251).astype(np.uint8)


PRODUCER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream
    sys.path.insert(0, {tests!r})
    from test_stream_set import item
    worker, name, streams, items, hold = sys.argv[1:6]
    streams, items, hold = int(streams), int(items), float(hold)
    hub = shmstream.Hub.attach(worker)
    ps = [hub.create_stream(f"{{name}}-{{s}}", "edge", "p", capacity=64, item_bytes=64, timeout=20)
          for s in range(streams)]
    print("ready", flush=True)
    for i in range(items):
        for s, p in enumerate(ps):
            p.put(f"t{{i}}", item(s, i))
    if hold:
        time.sleep(hold)  # to be killed mid-stream
    for p in ps:
        p.signal_done()
    for p in ps:
        p.wait_drained(20)
    """
).format(tests=os.path.dirname(__file__))


def drain_all(streams, expect, deadline=30.0):
    """Reads every stream of ``streams`` through wait_any until each ends;
    checks order and checksums; returns {request_id: error or None}."""
    got = {}
    crcs = {}
    ended = {}
    t0 = time.monotonic()
    while len(ended) < expect:
        assert time.monotonic() - t0 < deadline, f"ended {len(ended)} of {expect}"
        for key in streams.wait_any(timeout=1.0):
            buf = streams[key]
            rid = buf.request_id
            try:
                for chunk in streams.ready_chunks(key):
                    arr = chunk.item(0) if len(chunk) else None
                    if arr is not None:
                        a = np.asarray(arr)
                        s = int(rid.rsplit("-", 1)[1])
                        i = got.get(rid, 0)
                        np.testing.assert_array_equal(a, item(s, i))
                        crcs[rid] = zlib.crc32(a.tobytes(), crcs.get(rid, 0))
                        got[rid] = i + 1
            except shmstream.ProducerGone as e:
                ended[rid] = e
                streams.remove(key)
                continue
            if buf.finished:
                ended[rid] = None
                streams.remove(key)
    return got, ended


def test_two_producer_processes_sixteen_streams_each(worker):
    items = 40
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PRODUCER, worker, f"p{k}", "16", str(items), "0"],
                stdout=subprocess.PIPE,
            )
            for k in range(2)
        ]
        try:
            got, ended = drain_all(streams, 32)
        finally:
            for p in procs:
                p.wait(timeout=30)
        assert all(p.returncode == 0 for p in procs)
        assert len(got) == 32 and set(got.values()) == {items}
        assert all(e is None for e in ended.values())
        assert len(streams) == 0


def test_killed_producer_streams_are_reported(worker):
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        live = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, worker, "live", "4", "10", "1.0"],
            stdout=subprocess.PIPE,
        )
        doomed = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, worker, "doomed", "4", "5", "60"],
            stdout=subprocess.PIPE,
        )
        try:
            assert doomed.stdout.readline().strip() == b"ready"
            # Let the doomed producer's items be read, then kill it.
            t0 = time.monotonic()
            seen = set()
            while len(seen) < 4 and time.monotonic() - t0 < 20:
                for key in streams.wait_any(timeout=1.0):
                    if streams[key].request_id.startswith("doomed"):
                        seen.add(key)
            doomed.kill()
            doomed.wait()
            got, ended = drain_all(streams, 8)
        finally:
            doomed.kill()
            live.wait(timeout=30)
        for s in range(4):
            assert ended[f"live-{s}"] is None and got[f"live-{s}"] == 10
            assert isinstance(ended[f"doomed-{s}"], shmstream.ProducerGone)
            assert isinstance(ended[f"doomed-{s}"], ConnectionError)


def test_threads_in_order_with_checksums(worker):
    n_streams, items = 16, 50
    done = []
    # Each thread drops its producers as soon as it is done, most often
    # before the worker adopted their streams: they are handed over.

    def produce(k):
        hub = shmstream.Hub.attach(worker)
        ps = [
            hub.create_stream(f"t{k}-{s}", "e", "p", capacity=64, item_bytes=64, timeout=20)
            for s in range(n_streams)
        ]
        for i in range(items):
            for s, p in enumerate(ps):
                p.put(f"x{i}", item(s, i))
        for p in ps:
            p.signal_done()
        done.append(k)

    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        threads = [threading.Thread(target=produce, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            got, ended = drain_all(streams, 2 * n_streams)
        finally:
            for t in threads:
                t.join()
        assert streams.take_adopt_errors() == []
    assert sorted(done) == [0, 1]
    assert set(got.values()) == {items} and len(got) == 2 * n_streams


def test_idle_wait_any_returns_empty_after_timeout(worker):
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        hub = shmstream.Hub.attach(worker)
        p = hub.create_stream("idle", "e", "p", capacity=8, item_bytes=64)
        assert len(streams.wait_any(timeout=0)) <= 1  # adopted, maybe reported
        t0 = time.monotonic()
        assert streams.wait_any(timeout=0.3) == []
        assert 0.28 <= time.monotonic() - t0 < 2.0
        assert len(streams) == 1
        del p


def test_ctrl_c_during_wait_any(worker):
    """Ctrl-C (a SIGINT to the process, which the main thread takes: the
    set's death-watch thread blocks every signal) ends the one long sleep at
    once: KeyboardInterrupt within 100 ms."""
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        hub = shmstream.Hub.attach(worker)
        p = hub.create_stream("busy", "e", "p", capacity=8, item_bytes=64)  # a death watch
        streams.wait_any(timeout=0)
        sent = []

        def ctrl_c():
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(0.2, ctrl_c)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            streams.wait_any(timeout=30)
        latency = time.monotonic() - sent[0]
        timer.join()
        assert latency < 0.1, f"KeyboardInterrupt {latency * 1000:.0f} ms after SIGINT"
        del p


def test_interrupt_main_during_wait_any_within_the_backstop(worker):
    """``_thread.interrupt_main`` sends no signal (it only trips Python's
    flag), so nothing interrupts the sleep: it is seen when the 1 s backstop
    slice ends."""
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        timer = threading.Timer(0.2, _thread.interrupt_main, args=(signal.SIGINT,))
        t0 = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            streams.wait_any(timeout=30)
        assert time.monotonic() - t0 < 1.0 + 0.5
        timer.join()


def voluntary_switches() -> int:
    """This thread's voluntary context switches so far (each sleep is one)."""
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc/thread-self/status")


def test_an_idle_wait_any_over_many_streams_sleeps_for_its_timeout(worker):
    """Issue 12: an idle worker with many open streams makes no system calls
    beyond its timeout: wait_any(timeout=2) sleeps in at most a few futex
    waits (1 s backstop slices), not ~50 a second. The death-watch thread is
    another thread and does not count."""
    n = 1000
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        hub = shmstream.Hub.attach(worker)
        ps = [hub.create_stream(f"idle-{i}", "e", "p", capacity=2, item_bytes=8) for i in range(n)]
        deadline = time.monotonic() + 30
        while len(streams) < n and time.monotonic() < deadline:
            streams.wait_any(timeout=0.05)
        assert len(streams) == n
        before = voluntary_switches()
        t0 = time.monotonic()
        assert streams.wait_any(timeout=2) == []
        waited = time.monotonic() - t0
        switches = voluntary_switches() - before
        assert 1.95 <= waited < 3.0
        assert switches <= 3, f"{switches} sleeps in an idle 2 s wait_any over {n} streams"
        del ps


def test_add_remove_and_announced(worker):
    with shmstream.StreamSet(worker) as streams:  # no default policy: add()
        hub = shmstream.Hub.attach(worker)
        assert "hub-" in hub.name and hub.name == streams.name
        p = hub.create_stream("r1", "e", "p", capacity=8, item_bytes=64)
        p.put("a", np.arange(4, dtype=np.float32))
        assert streams.wait_any(timeout=0.1) == []  # announced, not adopted
        assert streams.announced() == [("r1", "e", "p")]
        with pytest.raises(shmstream.NotAnnounced):
            streams.add("nope", "e", "p", "fixed:size=1")
        key = streams.add("r1", "e", "p", shmstream.FixedChunkPolicy(1))
        assert streams.announced() == [] and key in streams and len(streams) == 1
        assert streams.find("r1", "e", "p") == key
        assert streams.wait_any(timeout=1) == [key]
        buf = streams[key]
        assert buf is streams[key] and buf.policy.name == "fixed:size=1"
        chunk = buf.pop_chunk()
        view = np.asarray(chunk.item(0))
        # Removed with a chunk alive: the chunk and its views stay valid.
        assert streams.remove(key) is buf
        assert key not in streams and len(streams) == 0
        with pytest.raises(KeyError):
            streams[key]
        with pytest.raises(KeyError):
            streams.remove(key)
        np.testing.assert_array_equal(view, np.arange(4, dtype=np.float32))
        del chunk, view
        # A removed stream's items no longer wake the set.
        p.put("b", np.arange(4, dtype=np.float32))
        assert streams.wait_any(timeout=0.1) == []
        assert repr(streams).startswith("StreamSet(")
    assert streams.closed
    with pytest.raises(shmstream.StreamError):
        streams.wait_any(0)
    with pytest.raises(shmstream.WorkerGone):
        hub.create_stream("r2", "e", "p", capacity=8, item_bytes=64)


def test_hub_errors(worker):
    with pytest.raises(shmstream.StreamNotFound):
        shmstream.Hub.attach(worker)
    with shmstream.StreamSet(worker, default_policy="fixed:size=1", entries=64) as streams:
        hub = shmstream.Hub.attach(worker)
        ps = [hub.create_stream(f"f{i}", "e", "p", capacity=2, item_bytes=8) for i in range(64)]
        with pytest.raises(shmstream.HubFull):
            hub.create_stream("f64", "e", "p", capacity=2, item_bytes=8)
        assert isinstance(shmstream.HubFull("x"), shmstream.SetupFailed)
        streams.wait_any(0)
        assert len(streams) == 64
        for key in streams.keys():
            streams.discard(key)
        assert len(streams) == 0
        # Entries given back: room again.
        ps.append(hub.create_stream("f64", "e", "p", capacity=2, item_bytes=8))
        del ps
        with pytest.raises(shmstream.StreamExists):
            shmstream.StreamSet(worker)


def test_chunks_dropped_in_another_thread_while_waiting(worker):
    """A chunk's lease handed back while wait_any holds the set is queued and
    handed back within a slice: a producer with a 4-item ring gets through."""
    items = 60
    handoff = queue.Queue()

    def drop_later():
        while (chunk := handoff.get()) is not None:
            time.sleep(0.001)
            del chunk

    def produce():
        hub = shmstream.Hub.attach(worker)
        p = hub.create_stream("small", "e", "p", capacity=4, item_bytes=64, timeout=20)
        for i in range(items):
            p.put(f"x{i}", item(0, i))
        p.signal_done()
        p.wait_drained(20)

    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        threads = [threading.Thread(target=drop_later), threading.Thread(target=produce)]
        for t in threads:
            t.start()
        seen = 0
        t0 = time.monotonic()
        while seen < items and time.monotonic() - t0 < 30:
            for key in streams.wait_any(timeout=1.0):
                for chunk in streams.ready_chunks(key):
                    if len(chunk):
                        np.testing.assert_array_equal(np.asarray(chunk.item(0)), item(0, seen))
                        seen += 1
                    handoff.put(chunk)
                    del chunk
        handoff.put(None)
        for t in threads:
            t.join(timeout=30)
        assert seen == items


def test_a_stream_whose_producer_went_before_adoption_is_read_whole(worker):
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        hub = shmstream.Hub.attach(worker)
        p = hub.create_stream("early-0", "e", "p", capacity=8, item_bytes=64)
        p.put("a", item(0, 0))
        p.signal_done()
        del p  # before the worker looked: the segment is left to the worker
        got, ended = drain_all(streams, 1, deadline=10.0)
        assert got == {"early-0": 1} and ended == {"early-0": None}
        assert streams.take_adopt_errors() == []
    assert not [n for n in os.listdir("/dev/shm") if "early" in n]
