import gc
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

    A SIGKILLed producer cannot remove its segment. At the end of the
    session every segment that appeared during it and whose owner is dead
    is removed, whether the tests passed or not; a live owner's segment
    stays (another pytest session or program running beside this one owns
    it: removing its name would break that run).
    """
    import shmstream

    before = set(shmstream.list_segments())
    yield
    gc.collect()
    for name in set(shmstream.list_segments()) - before:
        shmstream.remove_dead_segments(name.lstrip("/"))
