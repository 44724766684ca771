#!/usr/bin/env bash
# Every test of the project: unit, integration, cross-process, doc tests,
# the ipc-demo end-to-end tests (with the UCX network ingress, whose
# Debian packages scripts/deps-apt.sh installs first), the loom models, Miri, the Python package
# (ruff and pytest over numpy and torch) and a short run of every fuzz
# target.
# Usage: scripts/test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Debian packages of the network tests (libucx0, ucx-utils, iproute2)"
scripts/deps-apt.sh

echo "== unit, integration, cross-process and doc tests (workspace)"
cargo test --workspace
cargo test -p shmstream --features fuzzing --lib fuzzing  # header and descriptor fuzz seeds

echo "== loom models"
scripts/test-loom.sh

echo "== Miri on the heap-backed ring and the policies"
scripts/test-miri.sh

echo "== every fuzz target briefly (the corpora are also replayed by cargo test)"
scripts/fuzz.sh "${SHMSTREAM_FUZZ_SECONDS:-5}"

echo "== the Python package: wheel into a venv, ruff, pytest over numpy and torch"
scripts/test-python.sh
scripts/test-bench-report.sh  # the benchmark reports over fixture runs (uses test-python.sh's venv)
