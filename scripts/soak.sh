#!/usr/bin/env bash
# A long ipc-demo run that reports the resident memory (RSS) of the producer
# and the consumer near its start and at its end: both must stay flat (the
# consumer's latency histogram has a fixed size, see ipc-demo/README.md).
# Usage: scripts/soak.sh [ITEMS] [extra ipc-demo flags...]   (ITEMS default 30000000)
set -euo pipefail

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
sleep 1
while kill -0 "$launcher" 2>/dev/null; do
    for pid in $(pgrep -P "$launcher" || true); do
        r="$(role "$pid")"; m="$(rss "$pid")"
        [ -n "$r" ] && [ -n "$m" ] || continue
        [ -n "${first[$r]:-}" ] || first[$r]="$m"
        last[$r]="$m"
    done
    sleep 0.5
done
wait "$launcher"
trap - EXIT
cat /tmp/soak.$$.out
rm -f /tmp/soak.$$.out
echo
printf '%-10s %14s %14s\n' process "RSS start KiB" "RSS end KiB"
for r in produce consume; do
    printf '%-10s %14s %14s\n' "$r" "${first[$r]:-?}" "${last[$r]:-?}"
done
