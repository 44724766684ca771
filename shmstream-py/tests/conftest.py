import os
import uuid

import pytest


@pytest.fixture
def stream_id():
    """A fresh (request_id, edge_name, from_partition) for a cross-process stream."""
    return (f"py-{os.getpid()}-{uuid.uuid4().hex[:10]}", "edge", "part")
