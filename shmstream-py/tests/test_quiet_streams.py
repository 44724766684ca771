"""Issue 26, point 4: waits that sleep.

A stream whose policy continues after done offers the same empty chunk for
ever once everything is in. ``StreamSet.ready_chunks`` gives one such chunk
per change and then ends, and ``wait_any`` stops reporting the stream
(before, it returned its key ~500,000 times a second and a ``for`` over
``ready_chunks`` never ended). The stream stays a member: ``set[key]``
pops empty chunks as the reference does.
"""

import itertools
import os
import resource
import threading
import time
import uuid

import numpy as np
import pytest
import shmstream as s


@pytest.fixture
def worker():
    return f"w{os.getpid()}-{uuid.uuid4().hex[:8]}"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def idle_wait(streams, seconds=1.0):
    """wait_any for ``seconds``: (calls, keys reported, CPU seconds)."""
    calls = reported = 0
    cpu0 = cpu_seconds()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        reported += len(streams.wait_any(timeout=left))
        calls += 1
        if calls > 1000:  # the busy loop of a9f0152: enough to tell
            break
    return calls, reported, cpu_seconds() - cpu0


def done_stream(worker, streams, name, items):
    hub = s.Hub.attach(worker)
    p = hub.create_stream(name, "thinker_to_talker", "thinker", capacity=16, item_bytes=64)
    for i in range(items):
        p.put(f"t{i}", np.array([i], np.int64))
    p.signal_done()
    return hub, p


def values(chunk):
    d = chunk.data["data"]
    return None if d is None else np.asarray(d).reshape(-1).tolist()


def test_ready_chunks_ends_and_an_idle_continue_after_done_stream_costs_no_cpu(worker):
    policy = s.FixedChunkPolicy(1, continue_after_done=True)
    with s.StreamSet(worker, default_policy=policy) as streams:
        keep = done_stream(worker, streams, "req", 3)
        got = []
        for _ in range(50):
            for key in streams.wait_any(timeout=1.0):
                got += [values(c) for c in itertools.islice(streams.ready_chunks(key), 100)]
            if None in got:
                break
        # three items, then one empty chunk: the iteration ended by itself
        assert got == [[0], [1], [2], None]
        assert list(itertools.islice(streams.ready_chunks(key), 100)) == []

        calls, reported, cpu = idle_wait(streams, 1.0)
        assert reported == 0, f"{reported} reports of an unchanged stream in {calls} calls"
        assert calls <= 3
        assert cpu < 0.2, f"{cpu:.3f} s of CPU over 1 s of wait_any"

        # still a member, popping as the reference does
        assert key in streams and len(streams) == 1 and streams.keys() == [key]
        assert streams.find("req", "thinker_to_talker", "thinker") == key
        b = streams[key]
        assert b.has_chunk_ready()
        c = b.pop_chunk()
        assert values(c) is None and not c.is_final
        assert streams.remove(key) is not None and key not in streams
        del keep


def test_other_streams_still_wake_the_wait(worker):
    with s.StreamSet(worker, default_policy=s.FixedChunkPolicy(1, True)) as streams:
        keep = done_stream(worker, streams, "quiet", 1)
        for _ in range(50):
            for key in streams.wait_any(timeout=1.0):
                list(itertools.islice(streams.ready_chunks(key), 10))
            if streams.find("quiet", "thinker_to_talker", "thinker") is not None:
                if not streams.wait_any(timeout=0):
                    break
        hub = s.Hub.attach(worker)
        late = hub.create_stream("late", "e", "p", capacity=4, item_bytes=64)

        def put_later():
            time.sleep(0.2)
            late.put("x", np.array([7], np.int64))

        t = threading.Thread(target=put_later)
        t.start()
        seen = []
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            for key in streams.wait_any(timeout=1.0):
                for c in itertools.islice(streams.ready_chunks(key), 10):
                    seen.append((streams[key].request_id, values(c)))
        t.join()
        assert seen == [("late", [7])]
        del keep


def test_popping_directly_also_quiets_the_stream(worker):
    """The reference's worker pops with has_chunk_ready/pop_chunk."""
    with s.StreamSet(worker, default_policy=s.FixedChunkPolicy(2, True)) as streams:
        keep = done_stream(worker, streams, "req", 3)
        chunks = []
        for _ in range(50):
            for key in streams.wait_any(timeout=1.0):
                b = streams[key]
                while b.has_chunk_ready() and len(chunks) < 10:
                    chunks.append(values(b.pop_chunk()))
                    if chunks[-1] is None:
                        break
            if None in chunks:
                break
        assert chunks == [[0, 1], [2], None]
        calls, reported, cpu = idle_wait(streams, 1.0)
        assert reported == 0 and calls <= 3 and cpu < 0.2, (calls, reported, cpu)
        del keep
