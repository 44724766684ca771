#!/usr/bin/env bash
# The drop-in against a plain-Python buffer of the reference's design
# (shmstream-py/bench/dropin.py, issue 26): per item, per chunk and
# wake-up, in one run. Installs shmstream-py into the venv of
# scripts/test-python.sh (as bench-python.sh does), builds ipc-demo (the
# Rust peers of the wake-up rows) and writes the section between the
# dropin-bench markers of docs/benchmarks.md. About a minute; not part of CI.
#
#   scripts/bench-dropin.sh [--quick] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SHMSTREAM_PY_VENV:-$HOME/.cache/shmstream/py-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
    echo "bench-dropin: run scripts/test-python.sh first (it makes $VENV with torch and numpy)" >&2
    exit 1
fi
args=(--write docs/benchmarks.md)
for arg in "$@"; do
    case "$arg" in
        --quick) args+=(--quick) ;;
        --no-write) args=("${args[@]:2}") ;;
        *) echo "usage: $0 [--quick] [--no-write]" >&2; exit 2 ;;
    esac
done
"$VENV/bin/python" -m pip install --quiet ./shmstream-py
cargo build --release --quiet -p ipc-demo --bin ipc-demo
export SHMSTREAM_IPC_DEMO="${CARGO_TARGET_DIR:-$PWD/target}/release/ipc-demo"
exec "$VENV/bin/python" shmstream-py/bench/dropin.py "${args[@]}"
