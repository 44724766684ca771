#!/usr/bin/env bash
# Installs the Python package (shmstream-py) into a virtual environment
# with `pip install ./shmstream-py` and runs ruff and pytest over numpy and
# torch. The venv is reused between runs ($SHMSTREAM_PY_VENV, default
# ~/.cache/shmstream/py-venv); pip's cache makes the torch install (CUDA wheel, ~5 GB with its libraries, runs on
# the CPU) quick after the first time. No apt-get; fails loudly if torch
# cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SHMSTREAM_PY_VENV:-$HOME/.cache/shmstream/py-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "test-python: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

need=()
for mod in maturin numpy pytest ruff ml_dtypes torch hypothesis mypy; do
    "$PY" -c "import $mod" 2>/dev/null || need+=("$mod")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "test-python: installing ${need[*]}"
    if ! "$PY" -m pip install --quiet "${need[@]}"; then
        echo "test-python: FAILED to install ${need[*]} (torch is required: the tests run over torch and numpy)" >&2
        exit 1
    fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "test-python: FAILED: torch is installed but does not import" >&2
    "$PY" -c "import torch" >&2 || true
    exit 1
fi

# The Mooncake ingress (shmstream.mooncake, the extra `[mooncake]`) is
# tested over the engine's TCP transport on loopback. Its wheel is optional:
# where it cannot install (no wheel for this platform or Python), the tests
# skip and pytest's -rs line below says why.
if ! "$PY" -c "import mooncake.engine" 2>/dev/null; then
    echo "test-python: installing mooncake-transfer-engine-non-cuda"
    "$PY" -m pip install --quiet mooncake-transfer-engine-non-cuda \
        || echo "test-python: WARNING: mooncake-transfer-engine-non-cuda did not install; the Mooncake tests will skip" >&2
fi

# The asyncio tests (tests/test_aio.py) also run under uvloop where its
# wheel installs; elsewhere that test skips, saying why.
if ! "$PY" -c "import uvloop" 2>/dev/null; then
    echo "test-python: installing uvloop"
    "$PY" -m pip install --quiet uvloop \
        || echo "test-python: WARNING: uvloop did not install; its asyncio test will skip" >&2
fi

# The install path of the issue and the README: pip builds the wheel with
# maturin (fetched into pip's isolated build environment, from pip's cache
# after the first time) and installs it like any user's. As quick as
# `maturin develop --release` here: 10.3 s vs 11.4 s after touching a .rs
# file, 2.9 s each with nothing to rebuild (cargo's target directory is
# reused: $CARGO_TARGET_DIR, else shmstream-py/target).
echo "test-python: pip install ./shmstream-py into $VENV"
"$PY" -m pip install --quiet ./shmstream-py

# The replay parity test runs traces through `ipc-demo replay` too.
echo "test-python: building ipc-demo (for the replay parity test)"
cargo build --release --quiet -p ipc-demo --bin ipc-demo
export SHMSTREAM_IPC_DEMO="${CARGO_TARGET_DIR:-$PWD/target}/release/ipc-demo"

# The binding's own Rust tests: its module layering and the unit tests of
# its unsafe code (the io_uring wait); a cdylib without the
# extension-module feature, so they link without a Python.
echo "test-python: cargo test in shmstream-py"
(cd shmstream-py && cargo test --quiet)

echo "test-python: ruff"
"$VENV/bin/ruff" check shmstream-py
"$VENV/bin/ruff" format --check shmstream-py

echo "test-python: pytest"
"$PY" -m pytest -q -rs shmstream-py/tests
