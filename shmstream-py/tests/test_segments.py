"""Listing this user's segments and removing the dead ones: a killed
producer's segment goes, a live producer's stays and keeps working, and
cleaners racing each other remove each dead segment once."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import shmstream as s

HANG = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import shmstream as s
    p = s.Producer(sys.argv[2], "edge", "part", capacity=8, item_bytes=64, prefix=sys.argv[1])
    p.pre_read_register("t0")
    p.put("t0", np.arange(3, dtype=np.int64))
    print("ready", flush=True)
    time.sleep(60)
    """
)


def fresh_prefix():
    return f"shmstream-t{uuid.uuid4().hex[:8]}-"


def killed_producer(prefix, request_id="dead"):
    """A producer process that made its segment, then died by SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HANG, prefix, request_id], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()


def test_names_are_plain_paths_under_the_prefix():
    prefix = fresh_prefix()
    assert s.list_segments(prefix) == []
    p = s.Producer("live", "edge", "part", capacity=8, item_bytes=64, prefix=prefix)
    names = s.list_segments(prefix)
    assert len(names) == 1
    assert names[0].startswith("/" + prefix) and '"' not in names[0]
    del p
    assert s.list_segments(prefix) == []


def test_a_killed_producers_segment_goes_and_a_live_ones_stays():
    prefix = fresh_prefix()
    killed_producer(prefix)
    p = s.Producer("live", "edge", "part", capacity=8, item_bytes=64, prefix=prefix)
    dead, live = ([n for n in s.list_segments(prefix) if tag in n] for tag in ("dead", "live"))
    assert len(dead) == 1 and len(live) == 1

    assert s.remove_dead_segments(prefix) == dead
    assert s.list_segments(prefix) == live
    assert s.remove_dead_segments(prefix) == []

    # The live stream is untouched: its consumer still opens and reads it.
    buf = s.StreamBuffer.open("live", "edge", "part", policy=s.FixedChunkPolicy(1), prefix=prefix)
    p.pre_read_register("a")
    p.put("a", np.array([7, 8], np.int64))
    chunk = buf.next_chunk(timeout=5)
    assert np.from_dlpack(chunk).ravel().tolist() == [7, 8]
    del chunk, buf, p
    assert s.list_segments(prefix) == []


def test_cleaners_racing_remove_each_dead_segment_once():
    prefix = fresh_prefix()
    for i in range(3):
        killed_producer(prefix, f"dead{i}")
    dead = s.list_segments(prefix)
    assert len(dead) == 3
    removed, errors = [], []
    start = threading.Barrier(4)

    def clean():
        try:
            start.wait()
            removed.extend(s.remove_dead_segments(prefix))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=clean) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(removed) == dead
    assert s.list_segments(prefix) == []


LIVE = textwrap.dedent(
    """
    import sys, time
    import shmstream as s
    p = s.Producer("other-session", "edge", "part", capacity=8, item_bytes=64)
    print("ready", flush=True)
    time.sleep(60)
    """
)

NESTED = textwrap.dedent(
    """
    import subprocess, sys

    def test_another_program_makes_a_segment_meanwhile():
        proc = subprocess.Popen([sys.executable, "-c", {live!r}], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        with open("pid", "w") as f:
            f.write(str(proc.pid))
    """
)


def test_a_session_end_leaves_a_live_programs_segment_alone(tmp_path):
    """This suite's own session cleanup (conftest.py), run in a nested
    session: a segment that appeared meanwhile but belongs to a live
    process (another session's producer) is not removed."""
    shutil.copy(os.path.join(os.path.dirname(__file__), "conftest.py"), tmp_path)
    (tmp_path / "test_nested.py").write_text(NESTED.format(live=LIVE))
    before = set(s.list_segments())
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    pid = int((tmp_path / "pid").read_text())
    try:
        assert run.returncode == 0, run.stdout + run.stderr
        new = [n for n in set(s.list_segments()) - before if "other-session" in n]
        assert len(new) == 1, "the live program's segment was removed"
    finally:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any("other-session" in n for n in s.list_segments()):
        for name in new:
            s.remove_dead_segments(name.lstrip("/"))
        time.sleep(0.05)
    assert not any("other-session" in n for n in s.list_segments())
