#!/usr/bin/env bash
# Runs the benches of issue 6 side by side and writes docs/benchmarks.md.
#
#   scripts/bench.sh [--quick] [--no-iceoryx2]
#
# --quick: 1 s warm-up and 2 s measurement per bench (a few minutes on a
# 2-core machine); without it criterion's defaults (3 s and 5 s).
# --no-iceoryx2: skip the iceoryx2 peer (otherwise built if it builds).
#
# Benches: shmstream's benches/pop_chunk.rs, benches/allocations.rs and
# benches/wait_any.rs (issue 12), and
# bench-peers/benches/ring_throughput.rs and bench-peers/benches/cross_process/.
# The futex count runs the cross_process binary in its futex-count role
# under strace; ipc-demo runs end to end with and without batching (issue 24).
# The report is scripts/bench_report's (python3 -m bench_report).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
iceoryx2=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-iceoryx2) iceoryx2=0 ;;
        *) echo "usage: $0 [--quick] [--no-iceoryx2]" >&2; exit 2 ;;
    esac
done
crit=()
if [ "$quick" = 1 ]; then
    crit=(--warm-up-time 1 --measurement-time 2)
fi

# Honours CARGO_TARGET_DIR (criterion writes its estimates under it).
target="${CARGO_TARGET_DIR:-target}"
export SHMSTREAM_BENCH_TARGET="$target"
out="$target/bench-run"
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.txt
# Only this run's criterion estimates count.
for group in ring_throughput_8B ring_throughput_56B latency_64B stream_56B stream_64KiB \
    stream_2MiB stream_64MiB stream_mixed wakeup_64B \
    pop_chunk pop_chunk_prepolled pop_chunk_runs wait_any_wakeup ready_k_of_n stream_lifecycle; do
    rm -rf "$target/criterion/$group"
done

# iceoryx2 keeps its management files in /dev/shm/iox2_* and /tmp/iceoryx2;
# remove them afterwards unless they were there before this run.
iox_before=$(ls /dev/shm | grep -c '^iox2_' || true)
[ -d /tmp/iceoryx2 ] && iox_before=$((iox_before + 1))
load=$(cut -d' ' -f1-3 /proc/loadavg)

features=()
iceoryx2_note="not built (--no-iceoryx2)"
if [ "$iceoryx2" = 1 ]; then
    echo "== building the iceoryx2 peer (bench-peers --features iceoryx2)"
    if timeout 900 cargo bench -p bench-peers --features iceoryx2 --bench cross_process --no-run \
        >"$out/iceoryx2-build.log" 2>&1; then
        features=(--features iceoryx2)
        iceoryx2_note="built"
    else
        iceoryx2_note="did not build within 15 minutes or failed (see $out/iceoryx2-build.log)"
        echo "   iceoryx2: $iceoryx2_note"
    fi
fi

echo "== allocations"
cargo bench -p shmstream --bench allocations 2>&1 | tee "$out/allocations.log"

echo "== memory"
cargo bench -p shmstream --bench memory 2>&1 | tee "$out/memory.log"
echo "== pop_chunk"
cargo bench -p shmstream --bench pop_chunk -- "${crit[@]}" 2>&1 | tee "$out/pop_chunk.log"
echo "== ring_throughput"
cargo bench -p bench-peers --bench ring_throughput -- "${crit[@]}" 2>&1 | tee "$out/ring_throughput.log"
echo "== cross_process"
cargo bench -p bench-peers "${features[@]}" --bench cross_process -- "${crit[@]}" 2>&1 \
    | tee "$out/cross_process.log"

echo "== wait_any (issue 12)"
cargo bench -p shmstream --bench wait_any -- "${crit[@]}" 2>&1 | tee "$out/wait_any.log"

echo "== futex calls (strace)"
exe=$(cargo bench -p bench-peers --bench cross_process --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cross_process" and m.get("executable"):
        print(m["executable"])')
futex_tool="strace -f -c --seccomp-bpf -e trace=futex,sched_yield"
if command -v strace >/dev/null; then
    SHMSTREAM_BENCH_ROLE=futex-count $futex_tool -o "$out/futex-full.txt" "$exe" | tee "$out/futex-full.log"
    SHMSTREAM_BENCH_ROLE=futex-count SHMSTREAM_BENCH_PACE_NS=5000 \
        $futex_tool -o "$out/futex-paced.txt" "$exe" | tee "$out/futex-paced.log"
else
    futex_tool="(strace missing: not counted)"
fi

echo "== ipc-demo end to end (issue 24)"
cargo build --release -p ipc-demo 2>&1 | tail -1
for batching in off on; do
    extra=()
    [ "$batching" = on ] && extra=(--batching 64)
    "$target/release/ipc-demo" run --items 1000000 --prefix bench-e2e- "${extra[@]}" \
        | tee "$out/e2e-full-$batching.log"
    "$target/release/ipc-demo" run --items 1000000 --rate 1000000 --prefix bench-e2e- "${extra[@]}" \
        | tee "$out/e2e-paced-$batching.log"
done

if [ "$iox_before" = 0 ]; then
    rm -rf /dev/shm/iox2_* /tmp/iceoryx2
fi
leftover=$(ls /dev/shm | grep '^bench-' || true)

# The report: scripts/bench_report reads criterion's estimates and the logs
# above and writes docs/benchmarks.md (keeping the network and Python
# sections); its tests run in scripts/test-bench-report.sh.
# (`--name=value`: a value may begin with "--".)
report=(--run-dir="$out" --criterion="$target/criterion" --out=docs/benchmarks.md
    --args="$*" --iceoryx2-note="$iceoryx2_note" --futex-tool="$futex_tool"
    --leftover="$leftover" --load="$load")
if [ "$quick" = 1 ]; then
    report+=(--quick)
fi
PYTHONPATH="scripts${PYTHONPATH:+:$PYTHONPATH}" python3 -m bench_report "${report[@]}"
