"""asyncio (issue 25): a standalone buffer's and a producer's awaits start
no Python thread; with io_uring no thread at all (the loop's thread waits
on the ring's futex), and 100 awaited buffers wake nothing while idle;
with the fallback one native thread per awaited object. Each test runs
both ways (``waiter``)."""

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
import shmstream
from shmstream import _aio
from test_aio import ONE_STREAM, idle_window


@pytest.fixture(params=["uring", "thread"])
def waiter(request, monkeypatch):
    """io_uring (the default), or the fallback's native thread, taken as on
    a kernel without io_uring's ``FUTEX_WAIT``."""
    if request.param == "uring" and not _aio.uring_available():
        pytest.skip("io_uring's FUTEX_WAIT is not available here")
    if request.param == "thread":
        monkeypatch.setattr(_aio, "_URING", False)
    return request.param


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def in_flight(owner, kind: str) -> bool:
    """Whether the object's waiter of ``kind`` has a wait in flight (an
    io_uring ``FUTEX_WAIT``, or its fallback thread runs)."""
    w = owner._aio[kind]._w
    return bool(w.waiting)


async def until(cond, within: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < within, what
        await asyncio.sleep(0.005)


def in_process(n: int = 4):
    rid = f"aio-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return shmstream.StreamBuffer(rid, "e", "p", "fixed:size=1", capacity=n, item_bytes=8)


def put(target, i: int) -> None:
    target.pre_read_register(f"t{i}")
    target.put(f"t{i}", np.array([i], dtype=np.int32))


TARGETS = ["in-process buffer", "buffer", "room", "drained"]


@pytest.mark.parametrize("target", TARGETS)
def test_an_awaited_buffer_or_producer_starts_no_python_thread(stream_id, waiter, target):
    """The await starts no Python thread; with io_uring no thread at all,
    with the fallback one native thread, which ends after the await. It
    then ends with what was awaited; a cancelled one leaves no wait in
    flight."""

    async def main():
        with shmstream.Producer(*stream_id, capacity=2, item_bytes=8) as p:
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            local = in_process()
            if target == "room":
                put(p, 0)
                put(p, 1)
                owner, kind, awaited = p, "room", p.aregister("t2")
            elif target == "drained":
                put(p, 0)
                owner, kind, awaited = p, "drained", p.await_drained()
            elif target == "buffer":
                owner, kind, awaited = buf, "chunk", buf.anext_chunk()
            else:
                owner, kind, awaited = local, "chunk", local.anext_chunk()
            py_threads, threads = threading.active_count(), native_threads()
            task = asyncio.create_task(awaited)
            await asyncio.sleep(0.2)
            assert not task.done()
            assert threading.active_count() == py_threads, [t.name for t in threading.enumerate()]
            extra = 1 if waiter == "thread" else 0
            assert native_threads() == threads + extra
            assert owner._aio[kind].kind == waiter
            assert in_flight(owner, kind)
            if target in ("room", "drained"):
                buf.next_chunk(timeout=5).release()
                if target == "drained":
                    assert not buf.has_chunk_ready()
            elif target == "buffer":
                put(p, 7)
            else:
                put(local, 7)
            got = await asyncio.wait_for(task, 5)
            if target == "room":
                assert got.position == 2
                got.numpy(np.int32, [1])[:] = 2
                got.commit("i32", [1])
            elif target != "drained":
                assert np.asarray(got.item(0)).tolist() == [7]
            # A cancelled await: no wait left in flight (the io_uring
            # wait cancelled and its announcement retracted at once; the
            # fallback's thread ends within its slice).
            if target == "room":  # full again: positions 1 and 2
                again = p.aregister("t3")
            elif target == "drained":
                put(p, 3)
                again = p.await_drained()
            else:
                again = owner.anext_chunk()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(again, 0.1)
            await until(lambda: not in_flight(owner, kind), 2.0, "a wait still in flight")
            await until(lambda: native_threads() == threads, 2.0, "the waiter thread still runs")
            assert threading.active_count() == py_threads

    asyncio.run(main())


def test_100_awaited_idle_buffers_wake_nothing(waiter):
    """Issue 25's idle goal for standalone buffers: an event loop awaiting
    100 idle in-process buffers starts no Python thread and is not woken
    once in 2 s; with io_uring no thread of the process is (the fallback's
    100 native threads wake every slice, which is its cost). Then each
    buffer's await gets its own chunk."""
    n = 100

    async def main():
        loop = asyncio.get_running_loop()
        bufs = [in_process() for _ in range(n)]
        py_threads, threads = threading.active_count(), native_threads()
        tasks = [asyncio.create_task(b.anext_chunk()) for b in bufs]
        await asyncio.sleep(0.3)
        assert threading.active_count() == py_threads
        assert native_threads() == threads + (n if waiter == "thread" else 0)
        done = asyncio.Event()
        out: list = []

        def measure():
            out.append(idle_window(loop_tid, 2.0))
            loop.call_soon_threadsafe(done.set)

        loop_tid = threading.get_native_id()
        threading.Thread(target=measure, name="measure").start()
        await done.wait()
        [(per_thread, wall)] = out
        _, loop_wakes = per_thread[loop_tid]
        assert loop_wakes == 0, f"the idle loop's thread woke {loop_wakes} times in {wall:.2f}s"
        if waiter == "uring":
            woke = {t: w for t, (_, w) in per_thread.items() if w}
            assert not woke, f"threads woken in {wall:.2f}s: {woke}"
            cpu_ns = sum(cpu for cpu, _ in per_thread.values())
            assert cpu_ns <= 1e6 * wall, f"{cpu_ns / 1e6:.2f} ms CPU in {wall:.2f} s"
        assert not any(t.done() for t in tasks)
        for i in reversed(range(n)):
            put(bufs[i], i)
        got = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert [np.asarray(c.item(0)).tolist() for c in got] == [[i] for i in range(n)]

    asyncio.run(main())


def test_a_producer_killed_while_a_buffer_is_awaited_raises_producer_gone(stream_id, waiter):
    """The io_uring wait of a buffer whose producer is another process is
    sliced (the lock test of the sync wait), so a SIGKILL is seen."""

    async def main():
        doomed = subprocess.Popen(
            [sys.executable, "-c", ONE_STREAM, *stream_id], stdout=subprocess.PIPE
        )
        try:
            assert doomed.stdout.readline().strip() == b"ready"
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            first = await asyncio.wait_for(buf.anext_chunk(), 5)
            assert np.asarray(first.item(0)).tolist() == [3]
            first.release()
            task = asyncio.create_task(buf.anext_chunk())
            await asyncio.sleep(0.1)
            assert buf._aio["chunk"].kind == waiter and in_flight(buf, "chunk")
            doomed.kill()
            t0 = time.monotonic()
            with pytest.raises(shmstream.ProducerGone):
                await asyncio.wait_for(task, 10)
            assert time.monotonic() - t0 < 5
        finally:
            doomed.kill()
            doomed.wait()

    asyncio.run(main())


def test_an_awaited_growing_buffer_gets_its_chunk_from_the_bigger_ring(waiter):
    """An in-process buffer built without sizes moves to a bigger ring
    while it is awaited (items larger than its reservation): the wait on
    the old ring's data bell ends (the old producer's drop rings it; the
    wait holds that ring's memory), and the await gets the chunk from the
    new ring."""
    n = 1 << 19  # 2 MiB of float32 per item: more than a reservation

    async def main():
        sb = shmstream.StreamBuffer(f"grow-{uuid.uuid4().hex[:8]}", "e", "p", "fixed:size=3")
        task = asyncio.create_task(sb.anext_chunk())
        await asyncio.sleep(0.1)
        assert sb._aio["chunk"].kind == waiter and in_flight(sb, "chunk")
        for i in range(3):
            sb.pre_read_register(f"t{i}")
            sb.put(f"t{i}", np.full(n, i, dtype=np.float32))
            await asyncio.sleep(0.02)
        chunk = await asyncio.wait_for(task, 5)
        assert [float(np.asarray(chunk.item(i))[0]) for i in range(3)] == [0.0, 1.0, 2.0]

    asyncio.run(main())


def test_a_buffer_and_a_producer_awaited_under_uvloop(stream_id, waiter):
    uvloop = pytest.importorskip("uvloop")

    async def main():
        with shmstream.Producer(*stream_id, capacity=1, item_bytes=8) as p:
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            task = asyncio.create_task(buf.anext_chunk())
            await asyncio.sleep(0.05)
            put(p, 1)
            first = await asyncio.wait_for(task, 5)
            assert np.asarray(first.item(0)).tolist() == [1]
            room = asyncio.create_task(p.aregister("t2"))  # full until the release
            await asyncio.sleep(0.05)
            assert not room.done()
            first.release()
            slot = await asyncio.wait_for(room, 5)
            assert slot.position == 1 and p._aio["room"].kind == waiter
            slot.numpy(np.int32, [1])[:] = 2
            slot.commit("i32", [1])
            second = await asyncio.wait_for(buf.anext_chunk(), 5)
            assert np.asarray(second.item(0)).tolist() == [2]

    uvloop.run(main())
