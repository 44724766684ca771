#!/usr/bin/env bash
# The network ingress (issue 13) measured on this machine's loopback over
# UCX's tcp transport, with ucx_perftest over the same transport in the
# same run, and written to docs/benchmarks.md between
# <!-- ucx-bench:start --> and <!-- ucx-bench:end --> (scripts/bench.sh
# keeps that block). Not run by CI.
#
#  1. bandwidth sender -> ring, 64 KiB / 2 MiB / 64 MiB tensors
#     (criterion: shmstream-net/benches/ingress.rs);
#  2. ucx_perftest ucp_am_bw, tag_bw and ucp_get at the same sizes
#     (server and client on 127.0.0.1);
#  3. the spike: get vs am into a registered region
#     (shmstream-net/examples/spike.rs);
#  4. announcement-to-chunk latency p50/p99 at 1k and 10k tensors/s of
#     4 KiB (eager, copied into the slot) and 64 KiB (rendezvous straight
#     into the slot) (ipc-demo run --source ucx --rate R --policy
#     fixed:size=1).
#
# Usage: scripts/bench-ucx.sh          (UCX_TLS defaults to tcp)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps-apt.sh >/dev/null
export UCX_TLS="${UCX_TLS:-tcp}"
target="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build"
cargo build --release -q -p ipc-demo
cargo build --release -q -p shmstream-net --example spike

echo "== ingress bench (criterion)"
cargo bench -q -p shmstream-net --bench ingress >"$work/ingress.log" 2>&1 || { cat "$work/ingress.log"; exit 1; }
grep -E "^ingress_ucx/|thrpt" "$work/ingress.log" || true

echo "== ucx_perftest (UCX_TLS=$UCX_TLS, 127.0.0.1)"
port=$((20000 + RANDOM % 20000))
: >"$work/perftest.txt"
for test in ucp_am_bw tag_bw ucp_get; do
    for size in 65536 2097152 67108864; do
        case $size in 65536) n=20000 ;; 2097152) n=1000 ;; *) n=40 ;; esac
        port=$((port + 1))
        ucx_perftest -p "$port" >"$work/server.log" 2>&1 &
        server=$!
        sleep 0.5
        line="$(timeout 120 ucx_perftest 127.0.0.1 -p "$port" -t "$test" -s "$size" -n "$n" 2>&1 | grep '^Final:' || true)"
        wait "$server" || true
        # Final: iterations, latency typical/average/overall (us),
        # bandwidth average/overall (MB/s, 2^20 bytes), message rate.
        mbs="$(echo "$line" | awk '{print $7}')"
        echo "$test $size ${mbs:-failed}" | tee -a "$work/perftest.txt"
    done
done

echo "== spike: get vs am"
"$target/release/examples/spike" 512 | tee "$work/spike.txt"

echo "== announcement-to-chunk latency"
: >"$work/latency.txt"
for size in 4K 64K; do
    for rate in 1000 10000; do
        items=$((rate * 5))
        json="$("$target/release/ipc-demo" run --source ucx --rate "$rate" --items "$items" \
            --sizes "$size" --policy fixed:size=1 --json --no-progress | tail -1)"
        echo "$size $rate $json" >>"$work/latency.txt"
    done
done
cat "$work/latency.txt" | cut -c1-200

load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
UCX_VERSION="$(ucx_info -v 2>/dev/null | head -1 | sed 's/^# *//')" \
LOAD_START="$load_start" LOAD_END="$load_end" WORK="$work" python3 - <<'PY'
import json, os, re, statistics
work = os.environ["WORK"]
sizes = [65536, 2097152, 67108864]
names = {65536: "64 KiB", 2097152: "2 MiB", 67108864: "64 MiB"}
ours = {s: [] for s in sizes}
for line in open(os.path.join(work, "ingress.log")):
    m = re.match(r"BENCH-RESULT ingress/(\d+) bytes=\d+ seconds=[\d.]+ GBps=([\d.]+)", line)
    if m and int(m.group(1)) in ours:
        ours[int(m.group(1))].append(float(m.group(2)))
perf = {}
for line in open(os.path.join(work, "perftest.txt")):
    t, s, v = line.split()
    perf[(t, int(s))] = None if v == "failed" else float(v) * 1048576 / 1e9
spike = {}
for line in open(os.path.join(work, "spike.txt")):
    _, method, size, gbs, _ = line.split()
    spike[(method, int(size))] = float(gbs)
lat = {}
for line in open(os.path.join(work, "latency.txt")):
    size, rate, js = line.split(" ", 2)
    lat[(size, int(rate))] = json.loads(js)["latency"]
def g(v):
    return "failed" if v is None else f"{v:.2f}"
L = []
w = L.append
w("<!-- ucx-bench:start -->")
w("## Network ingress over UCX (issue 13, `scripts/bench-ucx.sh`)")
w("")
w(f"One run on this 2-core VM, loopback, `UCX_TLS={os.environ.get('UCX_TLS', 'tcp')}` "
  f"({os.environ.get('UCX_VERSION', 'UCX')}); load average {os.environ['LOAD_START']} at the start, "
  f"{os.environ['LOAD_END']} at the end. GB/s are 10^9 bytes per second. "
  "How the receiver works and why it uses rendezvous active messages: `docs/network.md`.")
w("")
w("**Bandwidth, sender -> ring** (`shmstream-net/benches/ingress.rs`: 512 MiB of tensors per "
  "stream, a Sender thread, the Receiver landing each tensor in its slot of a 256 MiB ring, a "
  "consumer thread draining; median of the streams criterion ran) beside `ucx_perftest` over "
  "the same transport in the same run (client and server processes on 127.0.0.1; the overall "
  "bandwidth of its `Final:` line):")
w("")
w("| tensor | shmstream-net (AM rendezvous into the slot) | ucp_am_bw | tag_bw | ucp_get | vs best of am_bw/tag_bw (goal >= 0.8x) |")
w("| --- | ---: | ---: | ---: | ---: | ---: |")
for s in sizes:
    mine = statistics.median(ours[s]) if ours[s] else None
    am, tag, get = perf.get(("ucp_am_bw", s)), perf.get(("tag_bw", s)), perf.get(("ucp_get", s))
    best = max([v for v in (am, tag) if v is not None], default=None)
    ratio = f"{mine / best:.2f}x" if mine and best else "-"
    w(f"| {names[s]} | {g(mine)} | {g(am)} | {g(tag)} | {g(get)} | {ratio} |")
w("")
w("The old hand-made TCP framing (`ipc-producer --source tcp`, removed by issue 13) carried "
  "64 KiB items at 1.03, 1.05 and 1.07 GB/s in three `ipc-demo run --source tcp --items 20000 "
  "--sizes 64K` runs on this machine just before its removal (end to end, consumer included; "
  "the issue quotes 1.35 GB/s on a quieter machine); it is not re-measured here. On loopback that "
  "framing (one socket, each tensor read straight into its slot, no control message per tensor) "
  "beats UCX's tcp transport at 64 KiB: a rendezvous costs a request, the data and a completion "
  "per tensor. What UCX buys is the RDMA path, where the same rendezvous is one read by the "
  "receiver's NIC (`docs/network.md`).")
w("")
w("**The spike** (`shmstream-net/examples/spike.rs`, two threads, 512 MiB per row, 16 offers "
  "out): the two receiver-driven ways into registered memory, nothing else around them:")
w("")
w("| tensor | get (offer carries address + rkey, `ucp_get_nbx`) | am (rendezvous, `ucp_am_recv_data_nbx`) |")
w("| --- | ---: | ---: |")
for s in sizes:
    w(f"| {names[s]} | {g(spike.get(('Get', s)))} | {g(spike.get(('Am', s)))} |")
w("")
w("**Announcement to chunk** (`ipc-demo run --source ucx --rate R --sizes S --policy "
  "fixed:size=1`, 5 s per row: from the sender's stamp, taken as it fills its buffer just "
  "before the offer, to the consumer holding the chunk, across three processes; 4 KiB goes "
  "eagerly with the offer and is copied into the slot, 64 KiB by rendezvous straight into it):")
w("")
w("| tensor | rate | p50 | p99 | p99.9 | samples |")
w("| --- | --- | ---: | ---: | ---: | ---: |")
for (size, r) in sorted(lat, key=lambda k: (k[0] != "4K", k[1])):
    d = lat[(size, r)]
    w(f"| {size}iB | {r} tensors/s | {d['p50_ns'] / 1e3:.0f} us | {d['p99_ns'] / 1e3:.0f} us | {d['p999_ns'] / 1e3:.0f} us | {d['samples']} |")
w("")
w("<!-- ucx-bench:end -->")
section = "\n".join(L) + "\n"
path = os.path.join("docs", "benchmarks.md")
doc = open(path).read()
start, end = "<!-- ucx-bench:start -->", "<!-- ucx-bench:end -->"
if start in doc and end in doc:
    a = doc.index(start)
    b = doc.index(end) + len(end)
    doc = doc[:a] + section.rstrip("\n") + doc[b:]
elif "<!-- python-bench:start -->" in doc:
    a = doc.index("<!-- python-bench:start -->")
    doc = doc[:a] + section + "\n" + doc[a:]
else:
    doc = doc.rstrip("\n") + "\n\n" + section
open(path, "w").write(doc)
print(section)
PY
