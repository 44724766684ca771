#!/usr/bin/env bash
# Runs the loom models of the ring protocol (loom-tests/, issue 4) in
# release mode, in their own target directory (the loom cfg rebuilds every
# dependency, so it must not share the main target/).
#
#   scripts/test-loom.sh                          # every model, 2 preemptions
#   LOOM_MAX_PREEMPTIONS=3 scripts/test-loom.sh   # deeper (about a minute)
#   scripts/test-loom.sh --test wakeups           # arguments go to cargo test
#   scripts/test-loom.sh -- --nocapture           # print interleavings explored
#
# Proof of teeth: build the library with one ordering weakened on purpose;
# the run is then expected to FAIL (see loom-tests/README.md for which models
# fail and how):
#
#   SHMSTREAM_WEAKEN=commit_release scripts/test-loom.sh --no-fail-fast
#   SHMSTREAM_WEAKEN=wake_seqcst scripts/test-loom.sh --no-fail-fast
#   SHMSTREAM_WEAKEN=hub_take_acquire scripts/test-loom.sh --test hub
#   SHMSTREAM_WEAKEN=handover_release scripts/test-loom.sh --test handover
#   SHMSTREAM_WEAKEN=staged_release scripts/test-loom.sh --test staged
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
rustflags="${RUSTFLAGS:+$RUSTFLAGS }--cfg loom"
target_dir=target-loom
case "${SHMSTREAM_WEAKEN:-}" in
    "") ;;
    commit_release | wake_seqcst | hub_take_acquire | handover_release | staged_release)
        rustflags+=" --cfg shmstream_weaken=\"$SHMSTREAM_WEAKEN\""
        # Inside target-loom (gitignored), apart from the sound build.
        target_dir="target-loom/weaken-$SHMSTREAM_WEAKEN"
        echo "test-loom: ordering '$SHMSTREAM_WEAKEN' weakened on purpose; models are expected to fail" >&2
        ;;
    *)
        echo "test-loom: SHMSTREAM_WEAKEN must be commit_release, wake_seqcst, hub_take_acquire, handover_release or staged_release, not '$SHMSTREAM_WEAKEN'" >&2
        exit 2
        ;;
esac

echo "test-loom: RUSTFLAGS='$rustflags' LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS target-dir=$target_dir" >&2
start=$SECONDS
status=0
RUSTFLAGS="$rustflags" cargo test -p loom-tests --release --target-dir "$target_dir" "$@" || status=$?
echo "test-loom: finished in $((SECONDS - start)) s with status $status" >&2
exit "$status"
