#!/usr/bin/env bash
# Fuzzes every input surface (fuzz/, see fuzz/README.md):
#   header      the open-time header checks    (shmstream::fuzzing::check_header)
#   descriptor  the per-item descriptor checks (shmstream::fuzzing::check_descriptor)
#   replay      the replay trace interpreter   (ipc_demo::fuzzing::replay_trace)
#   policy      policy-name parsing            (ipc_demo::fuzzing::policy_name)
#   config      stream configuration values    (ipc_demo::fuzzing::stream_config)
#   wire        the UCX offer header decoder   (ipc_demo::fuzzing::wire_header)
#   py_args     the Python argument conversion (shmstream::binding, fuzz_targets/py_args.rs)
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   each target (default: all) runs SECONDS (default 60)
# Needs the nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz when missing. Crashes land in fuzz/artifacts/<target>/, the
# growing corpus in fuzz/corpus/<target>/ (both git-ignored); the seeds in
# fuzz/seeds/<target>/ are valid inputs to start from. Reproduce a crash with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/crash-...
set -euo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(header descriptor replay policy config wire py_args)
fi
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi

cd "$root/fuzz"
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    dict=()
    if [ -f "$target.dict" ]; then
        dict=(-dict="$target.dict")
    fi
    echo "== fuzzing $target for ${seconds}s" >&2
    if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" "${dict[@]}" -print_final_stats=1; then
        echo "== $target: crash, see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
