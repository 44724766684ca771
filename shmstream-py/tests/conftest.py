import os
import uuid

import pytest


@pytest.fixture
def stream_id():
    """A fresh (request_id, edge_name, from_partition) for a cross-process stream."""
    return (f"py-{os.getpid()}-{uuid.uuid4().hex[:10]}", "edge", "part")


@pytest.fixture(autouse=True, scope="session")
def _no_segments_left_behind():
    """Removes the shared-memory segments the tests' killed producers leave.

    A SIGKILLed producer cannot remove its segment, and nothing else does
    until a `clean`; every segment that appeared during the session is gone
    by its end (no producer of these tests outlives it), so each is removed
    then, whether the tests passed or not.
    """
    before = set(os.listdir("/dev/shm"))
    yield
    for name in set(os.listdir("/dev/shm")) - before:
        if name.startswith("shmstream-"):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except FileNotFoundError:
                pass
