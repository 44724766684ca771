#!/usr/bin/env bash
# Runs the Python benchmarks (shmstream-py/bench/bench.py, issue 10) in the
# venv of scripts/test-python.sh, with the package built in release mode,
# and writes their section into docs/benchmarks.md (between the
# python-bench markers). About two minutes; not part of CI.
#
#   scripts/bench-python.sh [--quick] [--no-write]
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench-py-setup.sh
source scripts/bench-py-setup.sh
bench_py_setup bench-python "$@"
exec "$VENV/bin/python" shmstream-py/bench/bench.py "${args[@]}"
