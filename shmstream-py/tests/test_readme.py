"""The README's ```python blocks run as written, each side in its own
process: a README edit that breaks them fails here.

The harness only adapts what a test must: unique stream and hub names (so
parallel runs do not collide), a consumer that retries ``open`` until the
producer created the stream, the worker's ``use``, and checks appended
after each block that it did its job.
"""

import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks():
    if not README.exists():
        pytest.skip(f"{README} not found (the package outside its repository)")
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def block(marker):
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"README.md: expected one ```python block with {marker!r}"
    return found[0]


def unique(code, names):
    for old, new in names.items():
        assert f'"{old}"' in code, f"the README block no longer names {old!r}"
        code = code.replace(f'"{old}"', f'"{new}"')
    return code


def run(code, timeout=60):
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ), timeout


def finish(proc_timeout):
    proc, timeout = proc_timeout
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"timed out:\n{out}\n{err}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}\n{err}"
    return out


RETRY_OPEN = textwrap.dedent(
    """
    import time as _time, shmstream as _s
    _open = _s.StreamBuffer.open
    def _retrying_open(*a, **k):
        for _ in range(1000):
            try:
                return _open(*a, **k)
            except _s.StreamNotFound:
                _time.sleep(0.01)
        return _open(*a, **k)
    _s.StreamBuffer.open = _retrying_open
    """
)


def test_every_python_block_is_run_here():
    markers = ("# Process A", "# Process B", "# producer processes")
    for b in python_blocks():
        assert any(m in b for m in markers), (
            "a new ```python block in README.md: run it in tests/test_readme.py\n" + b
        )


def test_the_producer_and_consumer_blocks_run_as_two_processes():
    names = {"req-7": f"readme-{os.getpid()}-{uuid.uuid4().hex[:8]}"}
    producer = unique(block("# Process A"), names)
    consumer = unique(block("# Process B"), names)
    # what the consumer saw: the last chunk's stacked items
    consumer_check = textwrap.dedent(
        """
        assert buf.finished and chunk.is_final
        print("rows", x.tolist())
        print("same memory", y.data_ptr() == x.data_ptr())
        """
    )
    a = run(producer + "\nprint('producer done')\n")
    b = run(RETRY_OPEN + consumer + consumer_check)
    out_b = finish(b)
    assert "producer done" in finish(a)
    assert "rows [[0, 1, 2, 3, 4, 5, 6], [42, 42, 42, 42, 42, 42, 42]]" in out_b, out_b
    assert "same memory True" in out_b


def test_the_stream_set_block_runs_with_a_producer_process():
    code = block("# producer processes")
    names = {
        "worker-0": f"readme-w-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        "req-7": f"readme-{os.getpid()}-{uuid.uuid4().hex[:8]}",
    }
    code = unique(code, names)
    producer_part, sep, worker_part = code.partition("# the worker")
    assert sep, "the StreamSet block no longer has a '# the worker' part"
    # The producer puts 3 items and signals done, then exits: its stream
    # is handed over to the worker, which reads it whole.
    # (the block goes on from the ones before: shmstream is imported)
    producer_part = (
        "import shmstream\n"
        + producer_part
        + textwrap.dedent(
            """
        import numpy as np
        for i in range(3):
            producer.put(f"t{i}", np.full(4, i, np.int32))
        producer.signal_done()
        """
        )
    )
    # The worker's hub exists once its StreamSet is made; the producer
    # process runs then, to its end, before the block's wait_any.
    harness = textwrap.dedent(
        f"""
        import subprocess, sys, shmstream
        seen = []
        def use(data):
            seen.append(data["data"].tolist())  # chunk.data: the reference's dict
        _enter = shmstream.StreamSet.__enter__
        def _enter_then_produce(self):
            r = _enter(self)
            subprocess.run([sys.executable, "-c", {producer_part!r}], check=True, timeout=60)
            return r
        shmstream.StreamSet.__enter__ = _enter_then_produce
        """
    )
    check = "\nprint('seen', seen)\n"
    out = finish(run(harness + worker_part + check))
    assert "seen [[[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]]]" in out, out
