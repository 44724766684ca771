"""Across processes from Python: a subprocess producer, out-of-order
commits, checksums, across the wrap; a SIGKILLed producer; Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import shmstream as s

PRODUCER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream as s
    rid, edge, part, n, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    p = s.Producer(rid, edge, part, capacity=256, item_bytes=64)
    print("ready", flush=True)
    batch = 8
    for start in range(0, n, batch):
        ids = [f"t{i}" for i in range(start, min(n, start + batch))]
        for tid in ids:
            p.pre_read_register(tid)
        for tid in reversed(ids):  # out of order
            i = int(tid[1:])
            p.put(tid, np.array([i, i * 7 + 3, (i * 2654435761) % 2**31], np.int64))
    if mode == "hang":
        time.sleep(60)
    p.signal_done()
    p.wait_drained(30)
    """
)


def spawn(stream_id, n, mode="done"):
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, *stream_id, str(n), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def open_buffer(stream_id, policy):
    return s.StreamBuffer.open(*stream_id, policy=policy, timeout=10)


def test_100k_items_with_checksums_out_of_order_across_the_wrap(stream_id):
    n = 100_000
    proc = spawn(stream_id, n)
    buf = open_buffer(stream_id, s.SlidingWindowChunkPolicy(window=28, stride=7))
    expected_next = 0
    finals = 0
    for chunk in buf:
        a = np.from_dlpack(chunk)
        idx = a[:, 0]
        assert (idx == np.arange(chunk.start_offset, chunk.start_offset + len(chunk))).all()
        assert (a[:, 1] == idx * 7 + 3).all()
        assert (a[:, 2] == (idx * 2654435761) % 2**31).all()
        expected_next = max(expected_next, chunk.start_offset + len(chunk))
        finals += chunk.is_final
    del chunk, a, idx  # the last views go: the producer's wait_drained returns
    assert expected_next == n and finals == 1
    assert proc.wait(30) == 0


def test_a_sigkilled_producer_is_noticed_within_200_ms(stream_id):
    proc = spawn(stream_id, 3, mode="hang")
    buf = open_buffer(stream_id, s.FixedChunkPolicy(2))
    first = buf.next_chunk(timeout=5)
    assert len(first) == 2
    del first
    result = {}

    def kill_soon():
        time.sleep(0.2)
        result["killed_at"] = time.monotonic()
        proc.send_signal(signal.SIGKILL)

    threading.Thread(target=kill_soon).start()
    with pytest.raises(s.ProducerGone) as e:
        buf.next_chunk(timeout=None)
    elapsed = time.monotonic() - result["killed_at"]
    assert elapsed < 0.2, elapsed
    assert isinstance(e.value, s.PeerGone) and stream_id[0] in str(e.value)
    proc.wait(5)


# The waits check for Ctrl-C between slices of at most 20 ms (one sleep of
# the core's wait); a SIGINT that lands in a slice waits out the rest of
# it. A timer that fires a whole number of slices after the call began
# lands at a slice's end and sees no delay at all, so the signal is sent
# at several offsets into a slice, and the slowest must be within 100 ms.
OFFSETS = (0.201, 0.213, 0.238)
BOUND = 0.1


def interrupted_after(delay, blocking_call):
    """Seconds from a SIGINT sent to this process (from a timer thread,
    ``delay`` seconds after the call began) to ``blocking_call`` raising
    KeyboardInterrupt."""
    sent = {}

    def interrupt():
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            blocking_call()
        return time.monotonic() - sent["at"]
    finally:
        timer.join()


def test_ctrl_c_during_a_blocking_wait_raises_keyboard_interrupt():
    sb = s.StreamBuffer("r", "e", "p", "fixed:size=2")
    late = max(interrupted_after(d, lambda: sb.next_chunk(timeout=None)) for d in OFFSETS)
    assert late < BOUND, late


def test_ctrl_c_reaches_an_opened_consumer_blocked_in_next_chunk(stream_id):
    # The producer is another process that puts 3 items and then hangs.
    proc = spawn(stream_id, 3, mode="hang")
    try:
        buf = open_buffer(stream_id, s.FixedChunkPolicy(2))
        first = buf.next_chunk(timeout=5)
        assert len(first) == 2
        del first
        lates = [interrupted_after(d, lambda: buf.next_chunk(timeout=None)) for d in OFFSETS]
        assert max(lates) < BOUND, lates
        # the wait was only interrupted: the stream goes on
        assert not buf.has_chunk_ready() and not buf.finished
    finally:
        proc.kill()
        proc.wait(5)


PRODUCER_WAITS = {
    "pre_read_register": lambda p: p.pre_read_register("t4"),
    "put": lambda p: p.put("t4", np.zeros(2)),
    "register": lambda p: p.register("t4"),
    "put_many": lambda p: p.put_many([("t4", np.zeros(2)), ("t5", np.zeros(2))]),
    "put_many_stacked": lambda p: p.put_many(["t4", "t5"], stacked=np.zeros((2, 2))),
    "wait_drained": lambda p: p.wait_drained(),
}


@pytest.mark.parametrize("call", sorted(PRODUCER_WAITS))
def test_every_producer_wait_honours_ctrl_c_within_100_ms(stream_id, call):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)  # waits for ever
    buf = open_buffer(stream_id, "fixed:size=1")  # attached, never reads
    for i in range(4):
        producer.put(f"t{i}", np.zeros(2))  # full ring, nothing released
    lates = [interrupted_after(d, lambda: PRODUCER_WAITS[call](producer)) for d in OFFSETS]
    assert max(lates) < BOUND, lates
    # The interrupted calls reserved nothing: the ring still takes t4 once
    # the consumer makes room.
    assert producer.registered == 4
    if call == "wait_drained":
        while buf.has_chunk_ready():
            buf.pop_chunk()  # dropped at once: released
        producer.wait_drained(5)
    else:
        buf.pop_chunk()
        buf.pop_chunk()  # two free slots
        PRODUCER_WAITS[call](producer)
        assert producer.registered > 4
    del buf


def test_a_timed_wait_for_room_lasts_its_timeout(stream_id):
    producer = s.Producer(*stream_id, capacity=2, item_bytes=64, timeout=0.12)
    buf = open_buffer(stream_id, "fixed:size=1")
    producer.pre_read_register("a")
    producer.pre_read_register("b")
    t0 = time.monotonic()
    with pytest.raises(s.RingFull) as e:
        producer.pre_read_register("c")
    assert 0.11 <= time.monotonic() - t0 < 0.3
    assert "0.120 s" in str(e.value) and stream_id[0] in str(e.value)
    del buf


def test_opening_a_missing_stream_is_stream_not_found(stream_id):
    with pytest.raises(s.StreamNotFound) as e:
        s.StreamBuffer.open(*stream_id, policy="fixed:size=1")
    assert isinstance(e.value, FileNotFoundError) and stream_id[0] in str(e.value)


def test_timeout_is_stream_timeout(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)
    buf = open_buffer(stream_id, "fixed:size=1")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        buf.next_chunk(timeout=0.15)
    assert 0.15 <= time.monotonic() - t0 < 0.5
    del producer
