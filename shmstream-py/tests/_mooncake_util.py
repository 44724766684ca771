"""Shared by the Mooncake tests: an ingress (hub, control server, receiver)
in the test process and sender subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import numpy as np
import shmstream as s

SENDER_HEAD = textwrap.dedent(
    """
    import os, sys, time, json
    import numpy as np
    from shmstream import mooncake as mc
    path = sys.argv[1]
    args = json.loads(sys.argv[2])
    """
)


def spawn_sender(path: str, body: str, **args: Any) -> subprocess.Popen:
    import json

    return subprocess.Popen(
        [sys.executable, "-c", SENDER_HEAD + textwrap.dedent(body), path, json.dumps(args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


class Ingress:
    """A worker's StreamSet, its hub, and a ControlServer serving a Receiver
    on a thread; ``receiver_options`` go to the Receiver."""

    def __init__(self, tmp_path: Any, engine: Any = None, **receiver_options: Any) -> None:
        self.prefix = f"mct{os.getpid()}{uuid.uuid4().hex[:6]}-"
        self.worker = "w"
        self.set = s.StreamSet(self.worker, prefix=self.prefix, default_policy="fixed:size=1")
        self.hub = s.Hub.attach(self.worker, prefix=self.prefix)
        self.path = str(tmp_path / "ctl.sock")
        self.completions: list[tuple[str, str | None]] = []
        lock = threading.Lock()
        from shmstream import mooncake as mc

        def factory(ack: Any) -> Any:
            def on_complete(ann: Any, error: str | None) -> None:
                with lock:
                    self.completions.append((ann.tensor_id, error))
                ack(ann, error)

            opts = {"capacity": 64, "item_bytes": 4096, **receiver_options}
            return mc.Receiver(engine, hub=self.hub, on_complete=on_complete, **opts)

        self.server = mc.ControlServer(self.path, factory)
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    @property
    def receiver(self) -> Any:
        return self.server.receiver

    def drain(self, streams: int, timeout: float = 30.0) -> tuple[dict, dict]:
        """Pops every stream until ``streams`` of them finished or failed:
        ``{edge: [(id, array copy), ...]}`` and ``{edge: exception}``."""
        items: dict[str, list[tuple[str, np.ndarray]]] = {}
        errors: dict[str, Exception] = {}
        deadline = time.monotonic() + timeout
        ended = 0
        while ended < streams:
            assert time.monotonic() < deadline, f"{ended} of {streams} streams ended: {errors}"
            for key in self.set.wait_any(timeout=1.0):
                b = self.set[key]
                name = b.edge_name
                try:
                    for chunk in self.set.ready_chunks(key):
                        for i, tid in enumerate(chunk.ids):
                            a = np.asarray(chunk.item(i)).copy()
                            items.setdefault(name, []).append((tid, a))
                        chunk.release()
                except s.StreamError as e:
                    errors[name] = e
                    self.set.remove(key)
                    ended += 1
                    continue
                if b.finished:
                    self.set.remove(key)
                    ended += 1
        return items, errors

    def close(self) -> None:
        self.server.stop()
        self.thread.join(30)
        self.server.close()
        self.set.close()
        del self.hub

    def leftovers(self) -> list[str]:
        return [n for n in os.listdir("/dev/shm") if n.startswith(self.prefix)]
