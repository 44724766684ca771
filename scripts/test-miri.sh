#!/usr/bin/env bash
# Runs the heap-backed tests under Miri (nightly): the library's unit tests,
# the policy tests, tests/miri_ring.rs (the ring and StreamBuffer between
# two threads), and the public-API sequences of tests/soundness.rs,
# tests/ring.rs and tests/buffer.rs (in_process() is heap-backed under
# Miri), and tests/stream_set.rs (the worker hub's protocol on the heap:
# producer threads announcing and committing, one wait_any thread), and
# tests/batch.rs (put_many, commit_many, put_in_place_many), tests/by_id.rs
# (the pending-id table) and tests/grow.rs (an in-process stream moving to a
# bigger ring), tests/batching.rs and tests/batching_model.rs (adaptive
# batching, the latter against a model, 4 cases). Tests that touch the OS
# (segments, other processes) are compiled out with cfg(not(miri)) or not
# passed (tests/segment.rs, tests/cross_process.rs).
#
#   scripts/test-miri.sh                                # a few minutes
#   MIRIFLAGS=-Zmiri-many-seeds=0..8 scripts/test-miri.sh   # more schedules
#   MIRIFLAGS=-Zmiri-tree-borrows scripts/test-miri.sh      # other aliasing model
#
# No MIRIFLAGS are needed: nothing here reads files, the environment or the
# real clock, so Miri's isolation stays on.
#
# When Miri cannot be installed (no rustup, no network, no nightly), prints
# a line starting with "SKIPPED:" and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."

skip() {
    echo "SKIPPED: Miri tests not run: $*"
    exit 0
}

command -v rustup >/dev/null 2>&1 || skip "rustup is not installed (Miri needs a rustup-managed nightly toolchain)"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "test-miri: installing the nightly toolchain with miri and rust-src" >&2
    rustup toolchain install nightly --profile minimal --component miri,rust-src >&2 \
        || skip "the nightly toolchain could not be installed"
fi
installed=$(rustup component list --toolchain nightly --installed 2>/dev/null)
for component in miri rust-src; do
    if ! grep -q "^$component" <<<"$installed"; then
        echo "test-miri: adding the $component component to nightly" >&2
        rustup component add --toolchain nightly "$component" >&2 \
            || skip "the nightly component '$component' could not be installed"
    fi
done
# Builds Miri's standard library once (cached afterwards).
cargo +nightly miri setup >&2 || skip "'cargo +nightly miri setup' failed"

targets=(--lib)
for t in policy miri_ring soundness ring buffer payload lease stream_set batch by_id grow batching batching_model; do
    if [[ -f "tests/$t.rs" ]]; then
        targets+=(--test "$t")
    else
        echo "test-miri: tests/$t.rs does not exist; not run" >&2
    fi
done

echo "test-miri: cargo +nightly miri test --target-dir target-miri ${targets[*]} $* (MIRIFLAGS='${MIRIFLAGS:-}')" >&2
start=$SECONDS
status=0
cargo +nightly miri test --target-dir target-miri "${targets[@]}" "$@" || status=$?
echo "test-miri: finished in $((SECONDS - start)) s with status $status" >&2
exit "$status"
