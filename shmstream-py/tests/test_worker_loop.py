"""Issue 26: examples/worker_loop.py, the reference worker's streaming
path, runs (short) and its output holds what it claims."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_worker_loop_runs_hundreds_of_requests():
    requests, items = 200, 8
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "worker_loop.py"),
            "--requests",
            str(requests),
            "--items",
            str(items),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    print(text)  # the numbers, in the CI log
    assert text.rstrip().endswith("OK")
    nums = {k: float(v) for k, v in re.findall(r"([a-z/ -]+?) ([\d.]+)", text)}
    assert f"items {2 * requests * items} " in text
    assert nums["items/s"] > 0 and nums["cpu per item"] > 0
    wakeups = int(re.search(r"wake-ups (\d+)", text).group(1))
    # one wait for many streams: far fewer wake-ups than items
    assert 1 <= wakeups < requests * items
    m = re.search(r"stored (\d+) popped (\d+) rollbacks (\d+) done signals (\d+)", text)
    stored, popped, rollbacks, done = map(int, m.groups())
    assert stored == popped > 0
    # talker chunk 4 of each request (of 8 items + 1 empty) is rolled back once
    assert rollbacks == requests
    assert done == 2 * requests


@pytest.mark.skipif(
    shutil.which("ruff") is None and not Path(sys.executable).with_name("ruff").exists(),
    reason="ruff not installed",
)
def test_examples_pass_ruff():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    root = EXAMPLES.parent
    for args in (["check", "examples"], ["format", "--check", "examples"]):
        r = subprocess.run([ruff, *args], cwd=root, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
