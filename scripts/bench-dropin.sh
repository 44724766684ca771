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

# shellcheck source=scripts/bench-py-setup.sh
source scripts/bench-py-setup.sh
bench_py_setup bench-dropin "$@"
cargo build --release --quiet -p ipc-demo --bin ipc-demo
export SHMSTREAM_IPC_DEMO="${CARGO_TARGET_DIR:-$PWD/target}/release/ipc-demo"
exec "$VENV/bin/python" shmstream-py/bench/dropin.py "${args[@]}"
