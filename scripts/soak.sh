#!/usr/bin/env bash
# A long ipc-demo run that reports the resident memory (RSS) of each of its
# processes (producer, consumer, and with --source ucx the sender) after a
# warm-up and at its end, and fails when one grew by more than the margin:
# they must stay flat (the consumer's latency histogram has a fixed size,
# see ipc-demo/README.md). Not in CI (it is long); its last result is in
# ipc-demo/README.md.
# Usage: scripts/soak.sh [ITEMS] [extra ipc-demo flags...]   (ITEMS default 30000000)
#   SOAK_WARMUP=SECS        the early sample is the first one after this (default 5;
#                           by then the ring has wrapped and every page is touched)
#   SOAK_MARGIN_KIB=KIB     growth allowed from the early sample to the end (default 8192)
#   SOAK_MARGIN_PCT=PCT     or this percentage of the early sample, if larger (default 10)
# Exit status: the run's own when it fails; 1 when a process grew past the
# margin; 2 when no sample came after the warm-up (give more ITEMS).
#
# scripts/soak.sh --lifecycle [STREAMS]   (a separate mode, issue 21)
#   The hub lifecycle stress of tests/hub_lifecycle.rs at soak size: STREAMS
#   (default 10000) streams created, announced, adopted or added, read and
#   closed in a random order by producer processes, SOAK_KILLS of them
#   SIGKILLed (default STREAMS / 250), the worker's set dropped and remade
#   SOAK_RESTARTS times (default 10). Fails when anything is left in
#   /dev/shm or the worker's RSS grew by more than max(8 MiB, 10%) after
#   the first quarter. CI runs it with 1,000 streams.
#
# scripts/soak.sh --adversarial [SCALE]: a separate mode: the hostile-peer
# tests of shmstream-net/tests/adversarial.rs (in CI at scale 1, 3.5 s) with
# their counts multiplied by SCALE (default 20): the receiver's bytes held
# stay within its bounds, its peak RSS within the bound plus 40 MiB, and the
# honest stream beside each attack lands all its tensors. Exit status:
# cargo test's.
set -euo pipefail

if [ "${1:-}" = --lifecycle ]; then
    streams="${2:-10000}"
    root="$(cd "$(dirname "$0")/.." && pwd)"
    SHMSTREAM_LIFECYCLE_STREAMS="$streams" \
    SHMSTREAM_LIFECYCLE_KILLS="${SOAK_KILLS:-$((streams / 250))}" \
    SHMSTREAM_LIFECYCLE_RESTARTS="${SOAK_RESTARTS:-10}" \
        exec cargo test --release -q -p shmstream --manifest-path "$root/Cargo.toml" \
        --test hub_lifecycle -- --nocapture --test-threads=1
fi
if [ "${1:-}" = --adversarial ]; then
    root="$(cd "$(dirname "$0")/.." && pwd)"
    export SHMSTREAM_ADVERSARIAL_SCALE="${2:-20}" UCX_TLS="${UCX_TLS:-tcp}"
    exec cargo test -p shmstream-net --manifest-path "$root/Cargo.toml" --test adversarial \
        -- --test-threads 1 --nocapture
fi

warmup="${SOAK_WARMUP:-5}"
margin_kib="${SOAK_MARGIN_KIB:-8192}"
margin_pct="${SOAK_MARGIN_PCT:-10}"

items="${1:-30000000}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release -q -p ipc-demo --manifest-path "$root/Cargo.toml"
exe="${CARGO_TARGET_DIR:-$root/target}/release/ipc-demo"

"$exe" --items "$items" --no-progress --prefix soak- "$@" >/tmp/soak.$$.out &
launcher=$!
trap 'kill -TERM "$launcher" 2>/dev/null || true' EXIT

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }
role() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | awk '{print $2}'; }

declare -A first last
start=$SECONDS
sleep 1
while kill -0 "$launcher" 2>/dev/null; do
    warm=$((SECONDS - start >= warmup))
    for pid in $(pgrep -P "$launcher" || true); do
        r="$(role "$pid")"; m="$(rss "$pid")"
        [ -n "$r" ] && [ -n "$m" ] || continue
        [ "$warm" = 1 ] && [ -z "${first[$r]:-}" ] && first[$r]="$m"
        last[$r]="$m"
    done
    sleep 0.5
done
wait "$launcher"
trap - EXIT
cat /tmp/soak.$$.out
rm -f /tmp/soak.$$.out
echo
printf '%-8s %16s %14s %12s %12s  %s\n' process "RSS early KiB" "RSS end KiB" "growth KiB" "limit KiB" verdict
status=0
for r in produce consume send; do
    if [ -z "${last[$r]:-}" ]; then
        [ "$r" = send ] && continue # only with --source ucx
        echo "soak: no sample of the $r" >&2
        status=2
        continue
    fi
    if [ -z "${first[$r]:-}" ]; then
        echo "soak: the run ended before the ${warmup} s warm-up: no early sample of the $r (give more ITEMS)" >&2
        status=2
        continue
    fi
    early="${first[$r]}"; end="${last[$r]}"; growth=$((end - early))
    limit=$((early * margin_pct / 100)); [ "$limit" -ge "$margin_kib" ] || limit="$margin_kib"
    verdict=flat
    if [ "$growth" -gt "$limit" ]; then
        verdict=GREW
        [ "$status" = 2 ] || status=1
    fi
    printf '%-8s %16s %14s %12s %12s  %s\n' "$r" "$early" "$end" "$growth" "$limit" "$verdict"
done
if [ "$status" = 1 ]; then
    echo "soak: FAILED: RSS grew by more than max(${margin_kib} KiB, ${margin_pct}%) after the warm-up" >&2
fi
exit "$status"
