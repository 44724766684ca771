#!/usr/bin/env bash
# The benchmark reports' own checks, over fixture runs (no benchmark runs;
# a few seconds): ruff, mypy --strict (when mypy is installed) and pytest
# over scripts/bench_report (scripts/bench.sh's report), and pytest over
# shmstream-py/bench's report (scripts/test-python.sh runs ruff over it).
# Uses the venv scripts/test-python.sh makes (pytest and ruff); run that first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SHMSTREAM_PY_VENV:-$HOME/.cache/shmstream/py-venv}"
PY="$VENV/bin/python"
if ! "$PY" -c "import pytest" 2>/dev/null || [ ! -x "$VENV/bin/ruff" ]; then
    echo "test-bench-report: run scripts/test-python.sh first (it makes $VENV with pytest and ruff)" >&2
    exit 1
fi

"$VENV/bin/ruff" check scripts/bench_report
"$VENV/bin/ruff" format --check scripts/bench_report
if "$PY" -m mypy --version >/dev/null 2>&1; then
    (cd scripts && "$PY" -m mypy --strict bench_report)
else
    echo "test-bench-report: mypy not installed in $VENV: type check skipped"
fi
(cd scripts && "$PY" -m pytest -q -p no:cacheprovider bench_report)
"$PY" -m pytest -q -p no:cacheprovider shmstream-py/bench
