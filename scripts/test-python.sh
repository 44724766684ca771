#!/usr/bin/env bash
# Builds the Python package (shmstream-py) into a virtual environment and
# runs ruff and pytest over numpy and torch. The venv is reused between
# runs ($SHMSTREAM_PY_VENV, default ~/.cache/shmstream/py-venv); pip's cache
# makes the torch install (CUDA wheel, ~5 GB with its libraries, runs on
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
for mod in maturin numpy pytest ruff ml_dtypes torch hypothesis; do
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

echo "test-python: building the wheel into $VENV"
(cd shmstream-py && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --release --quiet)

# The replay parity test runs traces through `ipc-demo replay` too.
echo "test-python: building ipc-demo (for the replay parity test)"
cargo build --release --quiet -p ipc-demo --bin ipc-demo
export SHMSTREAM_IPC_DEMO="${CARGO_TARGET_DIR:-$PWD/target}/release/ipc-demo"

echo "test-python: ruff"
"$VENV/bin/ruff" check shmstream-py
"$VENV/bin/ruff" format --check shmstream-py

echo "test-python: pytest"
"$PY" -m pytest -q shmstream-py/tests
