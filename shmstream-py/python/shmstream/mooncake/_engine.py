"""Mooncake's transfer engine, imported on demand: ``mooncake.engine`` comes
from the optional extra (``pip install "shmstream[mooncake]"``)."""

from __future__ import annotations

import os
from typing import Any

from .._errors import SetupFailed

PROTOCOLS = ("tcp", "rdma")


def engine_class() -> Any:
    """``mooncake.engine.TransferEngine``, or SetupFailed saying what to install."""
    # The engine logs to stderr at INFO (lines per connection and batch);
    # its warnings and errors (a refused read names the address) stay.
    os.environ.setdefault("MC_LOG_LEVEL", "WARNING")
    try:
        from mooncake.engine import TransferEngine  # noqa: PLC0415 (optional extra)
    except ImportError as e:
        raise SetupFailed(
            "shmstream.mooncake needs Mooncake's transfer engine: "
            'pip install "shmstream[mooncake]" (mooncake-transfer-engine-non-cuda; '
            f"the CUDA wheels work too): {e}"
        ) from None
    return TransferEngine


def new_engine(
    hostname: str = "127.0.0.1",
    *,
    protocol: str = "tcp",
    metadata: str = "P2PHANDSHAKE",
    device: str = "",
) -> Any:
    """An initialized ``TransferEngine``: ``hostname`` (the address peers
    reach it at), ``metadata`` (``P2PHANDSHAKE``: no metadata server, peers
    named ``host:rpc_port``), ``protocol`` ``tcp`` or ``rdma``, ``device``
    (RDMA NIC names, ``""``: any)."""
    if protocol not in PROTOCOLS:
        raise SetupFailed(f"mooncake protocol {protocol!r}: expected one of {PROTOCOLS}")
    engine = engine_class()()
    rc = engine.initialize(hostname, metadata, protocol, device)
    if rc != 0:
        raise SetupFailed(
            f"mooncake TransferEngine.initialize({hostname!r}, {metadata!r}, {protocol!r}, "
            f"{device!r}) returned {rc} (see the engine's log above)"
        )
    return engine


def session_id(engine: Any, hostname: str = "127.0.0.1") -> str:
    """The name peers read from this engine by (P2PHANDSHAKE: ``host:port``)."""
    return f"{hostname}:{engine.get_rpc_port()}"
