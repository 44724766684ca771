# Sourced by the Python benchmark scripts (bench-python.sh, bench-dropin.sh):
# checks the venv of scripts/test-python.sh ($SHMSTREAM_PY_VENV), turns
# `[--quick] [--no-write]` into the array `args` for the bench script
# (`--write docs/benchmarks.md` unless --no-write), and installs the
# package the way scripts/test-python.sh and the README install it.
# Usage: bench_py_setup NAME "$@"   (NAME: the script's name in messages)
bench_py_setup() {
    local name="$1"
    shift
    VENV="${SHMSTREAM_PY_VENV:-$HOME/.cache/shmstream/py-venv}"
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
        echo "$name: run scripts/test-python.sh first (it makes $VENV with torch and numpy)" >&2
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
}
