"""asyncio (issue 25): awaiting a ready stream, a chunk, room in the ring
and the drain from an event loop, one waiter thread per set (not per
stream), cancellation that takes nothing, and the ends (a producer killed,
the set closed, Ctrl-C)."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import pytest
import shmstream
from shmstream import _aio
from test_stream_set import PRODUCER, item

needs_timeout = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+"
)


@pytest.fixture
def worker():
    return f"a{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["uring", "thread"])
def set_waiter(request, monkeypatch):
    """How the set's awaits wait: an io_uring ``FUTEX_WAIT`` made by the
    loop's thread (the default), or the fallback's native thread, taken
    here as on a kernel without io_uring's ``FUTEX_WAIT`` (the probe's
    answer says no; ``SHMSTREAM_AIO_WAIT=thread`` is the other way in,
    see the Ctrl-C test)."""
    if request.param == "uring" and not _aio.uring_available():
        pytest.skip("io_uring's FUTEX_WAIT is not available here")
    if request.param == "thread":
        monkeypatch.setattr(_aio, "_URING", False)
    return request.param


def waiters() -> int:
    """The waiter threads of shmstream's awaits running in this process:
    Python threads named so, and native ones (their OS name)."""
    native = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                native += f.read().startswith("shmstream-aio")
        except FileNotFoundError:  # ended meanwhile
            pass
    return native + sum(t.name.startswith("shmstream-aio") for t in threading.enumerate())


async def threads_back_to(n: int, within: float = 1.0) -> float:
    """Waits until only ``n`` waiter threads run; how long that took."""
    t0 = time.monotonic()
    while waiters() > n:
        assert time.monotonic() - t0 < within, (
            f"{waiters()} waiter threads still run, {n} expected: "
            f"{[t.name for t in threading.enumerate()]}"
        )
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


def in_flight(streams) -> int:
    """The set's waits in flight: its waiter thread (the fallback), or its
    io_uring ``FUTEX_WAIT`` (the default, no thread)."""
    w = getattr(getattr(streams, "_aio", None), "_w", None)
    return waiters() + int(isinstance(w, shmstream._shmstream._SetUring) and w.waiting)


async def set_idle(streams, within: float) -> float:
    """Waits until the set has no wait in flight; how long that took."""
    t0 = time.monotonic()
    while in_flight(streams):
        assert time.monotonic() - t0 < within, f"{in_flight(streams)} waits in flight"
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def adopt(streams, n: int) -> None:
    """Adopts ``n`` announced streams (await_any adopts on the way)."""
    deadline = time.monotonic() + 30
    while len(streams) < n:
        assert time.monotonic() < deadline, f"{len(streams)} of {n} adopted"
        await streams.await_any(timeout=0.05)


def test_many_streams_from_producer_processes_in_one_loop(worker):
    """Two producer processes, 16 streams each, read by one task with
    ``async for key, chunk in streams``: every item, in order, intact."""
    items = 30

    async def main():
        with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", PRODUCER, worker, f"p{k}", "16", str(items), "0"],
                    stdout=subprocess.PIPE,
                )
                for k in range(2)
            ]
            got: dict[str, int] = {}
            try:

                async def read():
                    async for key, chunk in streams:
                        rid = streams[key].request_id
                        if len(chunk):
                            s = int(rid.rsplit("-", 1)[1])
                            i = got.get(rid, 0)
                            np.testing.assert_array_equal(np.asarray(chunk.item(0)), item(s, i))
                            got[rid] = i + 1
                        if streams[key].finished:
                            streams.remove(key)
                            if len(got) == 32 and len(streams) == 0:
                                return

                await asyncio.wait_for(read(), 30)
            finally:
                for p in procs:
                    p.wait(timeout=30)
            assert all(p.returncode == 0 for p in procs)
            assert len(got) == 32 and set(got.values()) == {items}

    asyncio.run(main())


def test_tasks_awaiting_one_set_share_one_wait_and_its_result(worker, set_waiter):
    async def main():
        with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
            hub = shmstream.Hub.attach(worker)
            ps = [
                hub.create_stream(f"{worker}-r{i}", "e", "p", capacity=4, item_bytes=8)
                for i in range(64)
            ]
            base = 0
            await threads_back_to(0, within=2.0)
            await adopt(streams, 64)
            await threads_back_to(base, within=2.0)
            tasks = [asyncio.create_task(streams.await_any()) for _ in range(5)]
            await asyncio.sleep(0.1)
            assert not any(t.done() for t in tasks)
            assert streams._aio.kind == set_waiter
            assert in_flight(streams) == 1
            assert waiters() == (1 if set_waiter == "thread" else 0)
            ps[17].put("t0", np.arange(2, dtype=np.int32))
            results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
            key = streams.find(f"{worker}-r17", "e", "p")
            assert all(r == [key] for r in results)
            [chunk] = list(streams.ready_chunks(key))
            assert np.asarray(chunk.item(0)).tolist() == [0, 1]
            await threads_back_to(base, within=1 + 1)  # LINGER, then it ends
            assert in_flight(streams) == 0

    asyncio.run(main())


def test_a_set_awaited_from_one_loop_then_another(worker, set_waiter):
    """Each event loop gets its own waiter (an io_uring wait belongs to its
    loop's thread): a set awaited from a second loop, in another thread,
    after the first one closed, still finds its chunks."""
    with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
        p = shmstream.Hub.attach(worker).create_stream(
            f"{worker}-r0", "e", "p", capacity=4, item_bytes=8
        )

        async def one(value: int) -> list:
            task = asyncio.create_task(streams.await_any())
            await asyncio.sleep(0.05)
            p.put(f"t{value}", np.array([value], dtype=np.int32))
            got = []
            for key in await asyncio.wait_for(task, 5):
                got += [np.asarray(c.item(0)).tolist() for c in streams.ready_chunks(key)]
            assert streams._aio.kind == set_waiter
            return got

        assert asyncio.run(adopt(streams, 1)) is None
        assert asyncio.run(one(1)) == [[1]]
        out = []
        t = threading.Thread(target=lambda: out.append(asyncio.run(one(2))))
        t.start()
        t.join(10)
        assert out == [[[2]]]


@needs_timeout
def test_cancelled_await_any_ends_the_waiter_and_loses_nothing(worker, set_waiter):
    """A cancelled await_any (wait_for, asyncio.timeout, cancel()) ends the
    waiter thread's wait at once (interrupt, not its 1 s slice) and takes
    no chunk or announcement: a stream announced meanwhile is adopted, and
    what was committed meanwhile is read after."""

    async def main():
        with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
            hub = shmstream.Hub.attach(worker)
            p0 = hub.create_stream(f"{worker}-r0", "e", "p", capacity=4, item_bytes=8)
            base = 0
            await threads_back_to(0, within=2.0)
            await adopt(streams, 1)
            await threads_back_to(base, within=2.0)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(streams.await_any(), 0.1)
            assert await set_idle(streams, within=0.5) < 0.5
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await streams.await_any()
            await set_idle(streams, within=0.5)
            task = asyncio.create_task(streams.await_any())
            await asyncio.sleep(0.05)
            # Announced and committed while the await is being cancelled.
            p1 = hub.create_stream(f"{worker}-r1", "e", "p", capacity=4, item_bytes=8)
            p0.put("t0", np.array([7], dtype=np.int32))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await set_idle(streams, within=1.5)  # it may have found the put: LINGER
            p1.put("t0", np.array([8], dtype=np.int32))
            seen = {}
            while len(seen) < 2:
                for key in await asyncio.wait_for(streams.await_any(), 5):
                    for chunk in streams.ready_chunks(key):
                        seen[streams[key].request_id] = np.asarray(chunk.item(0)).tolist()
            assert seen == {f"{worker}-r0": [7], f"{worker}-r1": [8]}
            assert await streams.await_any(timeout=0.05) == []

    asyncio.run(main())


def test_cancelled_anext_chunk_loses_no_chunk(stream_id):
    async def main():
        with shmstream.Producer(*stream_id, capacity=4, item_bytes=8) as p:
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            base = 0
            await threads_back_to(0, within=2.0)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(buf.anext_chunk(), 0.1)
            await threads_back_to(base, within=1.0)
            task = asyncio.create_task(buf.anext_chunk())
            await asyncio.sleep(0.05)
            p.put("t0", np.array([1], dtype=np.int32))
            task.cancel()
            got = []
            try:
                got.append(await task)  # it may have won the race
            except asyncio.CancelledError:
                pass
            p.put("t1", np.array([2], dtype=np.int32))
            p.signal_done()
            got += [c async for c in buf]
            assert [np.asarray(c.item(0)).tolist() for c in got if len(c)] == [[1], [2]]
            assert buf.finished and await buf.anext_chunk() is None
            await threads_back_to(base, within=2.0)

    asyncio.run(main())


def test_cancelled_aregister_registers_nothing(stream_id):
    """A reserve cancelled while the ring is full leaves no registration
    (``registered`` unchanged, no thread left), and the next one is the
    very next position the consumer reads."""

    async def main():
        with shmstream.Producer(*stream_id, capacity=2, item_bytes=8) as p:
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            for i in range(2):
                slot = await p.aregister(f"t{i}")
                slot.numpy(np.int32, [2])[:] = i
                slot.commit("i32", [2])
            base = 0
            await threads_back_to(0, within=2.0)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.aregister("t2"), 0.1)
            await threads_back_to(base, within=1.0)
            assert p.registered == 2
            task = asyncio.create_task(p.aregister("t2"))
            await asyncio.sleep(0.05)
            assert not task.done()
            first = buf.next_chunk(timeout=5)
            assert np.asarray(first.item(0)).tolist() == [0, 0]
            first.release()
            slot = await asyncio.wait_for(task, 5)
            assert slot.position == 2
            slot.numpy(np.int32, [2])[:] = 2
            slot.commit("i32", [2])
            p.signal_done()
            rest = [np.asarray(c.item(0)).tolist() async for c in buf if len(c)]
            assert rest == [[1, 1], [2, 2]]
            await threads_back_to(base, within=2.0)

    asyncio.run(main())


def test_room_right_after_a_cancelled_aregister_abandons_nothing(stream_id):
    """Room that comes just after an ``aregister`` was cancelled (within
    its waiter's slice) is not taken: no position is reserved and given up,
    so the consumer never meets an ``Abandoned`` hole, and the next
    registration gets the very next position."""

    async def main():
        with shmstream.Producer(*stream_id, capacity=1, item_bytes=8) as p:
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            p.put("t0", np.array([0, 0], dtype=np.int32))
            task = asyncio.create_task(p.aregister("gone"))
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The room comes at once, while the cancelled wait may still be
            # in its slice.
            buf.next_chunk(timeout=5).release()
            await asyncio.sleep(0.2)
            assert p.registered == 1
            p.put("t1", np.array([1, 1], dtype=np.int32))
            p.signal_done()
            got = [np.asarray(c.item(0)).tolist() async for c in buf if len(c)]
            assert got == [[1, 1]]
            await threads_back_to(0, within=2.0)

    asyncio.run(main())


def test_await_drained_and_its_cancel(stream_id):
    async def main():
        with shmstream.Producer(*stream_id, capacity=4, item_bytes=8) as p:
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            p.put("t0", np.array([1], dtype=np.int32))
            p.signal_done()
            base = 0
            await threads_back_to(0, within=2.0)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.await_drained(), 0.1)
            await threads_back_to(base, within=1.0)
            drained = asyncio.create_task(p.await_drained())
            chunks = [c async for c in buf]
            assert not drained.done() or len(chunks) >= 1
            for c in chunks:
                c.release()
            await asyncio.wait_for(drained, 5)
            await threads_back_to(base, within=2.0)

    asyncio.run(main())


@needs_timeout
def test_a_producer_killed_while_awaited_raises_producer_gone(worker, set_waiter):
    async def main():
        with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
            doomed = subprocess.Popen(
                [sys.executable, "-c", PRODUCER, worker, "doomed", "2", "3", "60"],
                stdout=subprocess.PIPE,
            )
            try:
                assert doomed.stdout.readline().strip() == b"ready"
                n = 0
                t_kill = None
                async for _key, _chunk in streams:
                    n += 1
                    if n == 6:  # every item read: the awaits from now on wait
                        asyncio.get_running_loop().call_later(0.2, doomed.kill)
                        t_kill = time.monotonic() + 0.2
                        break
                with pytest.raises(shmstream.ProducerGone) as e:
                    async with asyncio.timeout(10):
                        async for _key, _chunk in streams:
                            pass
                gone = e.value
                assert time.monotonic() - t_kill < 5
                assert gone.key in streams
            finally:
                doomed.kill()
                doomed.wait()

    asyncio.run(main())


ONE_STREAM = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream
    p = shmstream.Producer(*sys.argv[1:4], capacity=4, item_bytes=8)
    p.put("t0", np.array([3], dtype=np.int32))
    print("ready", flush=True)
    time.sleep(60)  # killed while the consumer awaits the next chunk
    """
)


def test_a_producer_killed_while_a_buffer_is_awaited_raises_producer_gone(stream_id):
    async def main():
        doomed = subprocess.Popen(
            [sys.executable, "-c", ONE_STREAM, *stream_id], stdout=subprocess.PIPE
        )
        try:
            assert doomed.stdout.readline().strip() == b"ready"
            buf = shmstream.StreamBuffer.open(*stream_id, "fixed:size=1")
            first = await asyncio.wait_for(buf.anext_chunk(), 5)
            assert np.asarray(first.item(0)).tolist() == [3]
            asyncio.get_running_loop().call_later(0.2, doomed.kill)
            t0 = time.monotonic()
            with pytest.raises(shmstream.ProducerGone):
                await asyncio.wait_for(buf.anext_chunk(), 10)
            assert time.monotonic() - t0 < 5
        finally:
            doomed.kill()
            doomed.wait()

    asyncio.run(main())


def test_closing_the_set_raises_in_every_awaiting_task(worker, set_waiter):
    async def main():
        streams = shmstream.StreamSet(worker, default_policy="fixed:size=1")
        hub = shmstream.Hub.attach(worker)
        ps = [
            hub.create_stream(f"{worker}-r{i}", "e", "p", capacity=4, item_bytes=8)
            for i in range(3)
        ]
        await threads_back_to(0, within=2.0)
        await adopt(streams, 3)
        tasks = [asyncio.create_task(streams.await_any()) for _ in range(3)]
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        streams.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert time.monotonic() - t0 < 1.0
        for r in results:
            assert isinstance(r, shmstream.StreamError) and "closed" in str(r), r
        with pytest.raises(shmstream.StreamError, match="closed"):
            await streams.await_any()
        await set_idle(streams, within=1.0)
        del ps

    asyncio.run(main())


def schedstat(tid: int) -> tuple[int, int]:
    """CPU time (ns) and times scheduled in (wake-ups) of thread ``tid`` of
    this process, from ``/proc/self/task/TID/schedstat``."""
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        fields = f.read().split()
    return int(fields[0]), int(fields[2])


def idle_window(loop_tid: int, seconds: float) -> tuple[dict[int, tuple[int, int]], float]:
    """Run in a thread of its own while the loop is idle: the CPU time and
    wake-ups of every other thread of this process over ``seconds``, and
    the time it took. The measure runs outside the loop's thread, so it
    never wakes the loop (the loop's own end-of-window wake-up, about 1 ms
    of CPU here, is what a measure from inside the loop sees), and starts
    a moment after this thread did (the loop's thread returning from
    ``Thread.start()`` and going back to sleep is no idle cost either)."""
    time.sleep(0.3)
    me = threading.get_native_id()
    tids = [int(t) for t in os.listdir("/proc/self/task") if int(t) != me]
    assert loop_tid in tids
    before = {t: schedstat(t) for t in tids}
    t0 = time.monotonic()
    time.sleep(seconds)
    after = {}
    for t in tids:
        try:
            after[t] = schedstat(t)
        except FileNotFoundError:  # ended meanwhile: what it used is lost
            pass
    wall = time.monotonic() - t0
    return {t: (after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in after}, wall


def test_an_idle_loop_with_1000_open_streams_costs_no_cpu(worker, set_waiter):
    """Issue 25's goal: an event loop awaiting 1000 idle streams uses at
    most 1 ms of CPU per second (the process's threads together) and one
    thread at most besides its own (none with io_uring); the loop's thread
    itself is not woken once while nothing comes (with io_uring, no thread
    of the process is). Measured from a thread of its own, per thread
    (schedstat), over a window that starts after the await and ends before
    the loop is told to look."""
    n = 1000

    async def main():
        loop = asyncio.get_running_loop()
        with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
            hub = shmstream.Hub.attach(worker)
            ps = [
                hub.create_stream(f"{worker}-idle-{i}", "e", "p", capacity=2, item_bytes=8)
                for i in range(n)
            ]
            await threads_back_to(0, within=2.0)
            await adopt(streams, n)
            await threads_back_to(0, within=2.0)
            task = asyncio.create_task(streams.await_any())
            await asyncio.sleep(0.2)
            assert waiters() == (1 if set_waiter == "thread" else 0)
            done = asyncio.Event()
            out: list = []

            def measure():
                out.append(idle_window(loop_tid, 2.0))
                loop.call_soon_threadsafe(done.set)

            loop_tid = threading.get_native_id()
            threading.Thread(target=measure, name="measure").start()
            # No timer in the loop: it sleeps until the measure is done.
            await done.wait()
            [(per_thread, wall)] = out
            cpu_ns = sum(cpu for cpu, _ in per_thread.values())
            _, loop_wakes = per_thread[loop_tid]
            assert loop_wakes == 0, f"the idle loop's thread woke {loop_wakes} times in {wall:.2f}s"
            assert cpu_ns <= 1e6 * wall, f"{cpu_ns / 1e6:.2f} ms CPU in {wall:.2f} s: " + ", ".join(
                f"{t}: {c / 1e6:.2f} ms, {w} wakes" for t, (c, w) in per_thread.items()
            )
            if set_waiter == "uring":
                # No helper: nothing of the process wakes (the fallback's
                # thread wakes once a second, its wait's backstop).
                woke = {t: w for t, (_, w) in per_thread.items() if w}
                assert not woke, f"threads woken in {wall:.2f}s: {woke}"
            assert not task.done()
            ps[999].put("t0", np.array([1], dtype=np.int32))
            assert await asyncio.wait_for(task, 5) == [streams.find(f"{worker}-idle-999", "e", "p")]

    asyncio.run(main())


@needs_timeout
def test_under_uvloop(worker, set_waiter):
    uvloop = pytest.importorskip("uvloop", reason="uvloop does not install here")

    async def main():
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        with shmstream.StreamSet(worker, default_policy="fixed:size=1") as streams:
            hub = shmstream.Hub.attach(worker)
            ps = [
                hub.create_stream(f"{worker}-r{i}", "e", "p", capacity=8, item_bytes=8)
                for i in range(8)
            ]
            base = 0
            await threads_back_to(0, within=2.0)
            await adopt(streams, 8)
            await threads_back_to(base, within=2.0)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(streams.await_any(), 0.1)
            await threads_back_to(base, within=0.5)

            async def produce():
                for i in range(5):
                    for k, p in enumerate(ps):
                        p.put(f"t{i}", np.array([k * 100 + i], dtype=np.int32))
                    await asyncio.sleep(0.01)

            prod = asyncio.create_task(produce())
            got = []
            async with asyncio.timeout(10):
                async for _key, chunk in streams:
                    got.append(int(np.asarray(chunk.item(0))[0]))
                    if len(got) == 40:
                        break
            await prod
            assert sorted(got) == sorted(k * 100 + i for k in range(8) for i in range(5))

    uvloop.run(main())


CTRL_C = textwrap.dedent(
    """
    import asyncio, sys
    import shmstream
    async def main():
        with shmstream.StreamSet(sys.argv[1], default_policy="fixed:size=1") as s:
            task = asyncio.create_task(s.await_any())
            await asyncio.sleep(0.1)
            print("awaiting", s._aio.kind, flush=True)
            await task
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


@pytest.mark.parametrize("env", ["", "thread"])
def test_ctrl_c_ends_the_loop_cleanly(worker, env):
    """Ctrl-C while a set is awaited, with the default waiter and with
    ``SHMSTREAM_AIO_WAIT=thread`` (the fallback, forced: the child reports
    which one its await used)."""
    if not env and not _aio.uring_available():
        pytest.skip("io_uring's FUTEX_WAIT is not available here")
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, worker],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SHMSTREAM_AIO_WAIT": env},
    )
    try:
        assert proc.stdout.readline().split() == [b"awaiting", (env or "uring").encode()]
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert out.strip() == b"interrupted", err.decode()
    assert proc.returncode == 0
    assert not any(name.endswith(f"hub-{worker}") for name in os.listdir("/dev/shm"))
