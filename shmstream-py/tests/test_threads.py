"""Python threads on shared shmstream objects (issue 21): no Rust panic
reaches Python, whatever the call order, and the stream stays whole.

The GIL is released in every blocking call and the garbage collector runs
in whatever thread allocates, so each object must be safe when reached
from two threads at once. ``SHMSTREAM_STRESS=1`` runs the long versions.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

STRESS = os.environ.get("SHMSTREAM_STRESS") == "1"
HERE = Path(__file__).parent


def test_threads_on_one_producer_never_panic_and_keep_the_stream():
    """Defect 1: Slot.abandon(), Slot.__exit__ and a collected Slot gave
    the slot up after the producer's lock was let go, while other threads
    put and registered: 'already borrowed' panics out of the producer's
    RefCell, in deallocators too (where one can abort the process). In a
    child process, so that an abort fails the test instead of ending it."""
    seconds = 60 if STRESS else 3
    proc = subprocess.run(
        [sys.executable, str(HERE / "thread_stress.py"), str(seconds), "21"],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    assert proc.returncode == 0, f"the child ended with {proc.returncode}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["rounds"] >= 1 and report["ops"] > 0, report
    assert report["unexpected"] == {}, report
    assert report["unraisable"] == [], report
    assert report["wrong"] == [], report
    assert "panicked" not in proc.stderr, proc.stderr[-3000:]
