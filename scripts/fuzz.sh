#!/usr/bin/env bash
# Fuzzes the consumer's checks on untrusted shared memory (fuzz/):
#   header      the open-time header checks   (shmstream::fuzzing::check_header)
#   descriptor  the per-item descriptor checks (shmstream::fuzzing::check_descriptor)
# Usage: scripts/fuzz.sh [SECONDS]   (each target runs SECONDS, default 60)
# Needs the nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz when missing. Crashes land in fuzz/artifacts/<target>/, the
# growing corpus in fuzz/corpus/<target>/ (both git-ignored); the seeds in
# fuzz/seeds/<target>/ are valid inputs to start from. Reproduce a crash with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/crash-...
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi

cd "$root/fuzz"
status=0
for target in header descriptor; do
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${seconds}s" >&2
    if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -dict="$target.dict" -print_final_stats=1; then
        echo "== $target: crash, see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
