#!/usr/bin/env bash
# Runs the Python benchmarks (shmstream-py/bench/bench.py, issue 10) in the
# venv of scripts/test-python.sh, with the package built in release mode,
# and writes their section into docs/benchmarks.md (between the
# python-bench markers). About two minutes; not part of CI.
#
#   scripts/bench-python.sh [--quick] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SHMSTREAM_PY_VENV:-$HOME/.cache/shmstream/py-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
    echo "bench-python: run scripts/test-python.sh first (it makes $VENV with torch and numpy)" >&2
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
# Installed the way scripts/test-python.sh and the README install it.
"$VENV/bin/python" -m pip install --quiet ./shmstream-py
exec "$VENV/bin/python" shmstream-py/bench/bench.py "${args[@]}"
