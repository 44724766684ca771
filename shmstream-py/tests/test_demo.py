"""``python -m shmstream.demo`` runs (two processes over one stream) and
reports ipc-demo's consumer fields: items verified in order, latency
percentiles, the producer's back-pressure."""

import json
import re
import subprocess
import sys

ITEMS = 5000


def run_demo(*args):
    done = subprocess.run(
        [sys.executable, "-m", "shmstream.demo", "--items", str(ITEMS), "--capacity", "64", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_demo_report_in_json():
    r = json.loads(run_demo("--json").strip().splitlines()[-1])
    assert r["items"] == r["expected_items"] == ITEMS and r["lost"] == 0
    assert r["order_verified"] and r["bad_chunks"] == 0
    assert r["final_chunks"] == 1 and r["producer_exit_code"] == 0
    # sliding:window=28,stride=7: a window every 7 items, each full window
    # re-shows 21 items
    assert r["policy"] == "sliding:window=28,stride=7"
    assert r["chunks"] == r["stacked_windows"] + r["empty_chunks"]
    assert abs(r["chunks"] - ITEMS // 7) <= 4
    assert r["context_items"] == sum_context(r)
    lat = r["latency"]
    assert lat["samples"] == ITEMS
    assert 0 < lat["p50_ns"] <= lat["p99_ns"] <= lat["p999_ns"] <= lat["max_ns"] < 60e9
    assert r["seconds"] > 0 and r["items_per_s"] > 0 and r["bytes"] == ITEMS * 56
    assert r["bytes_copied"] == 0
    bp = r["backpressure"]
    assert set(bp) == {"items", "payload_bytes"} and bp["payload_bytes"] == 0
    assert bp["items"] >= 0


def sum_context(r):
    """Items re-shown: every popped item counted once as new, the rest context."""
    shown = 28 * (r["stacked_windows"] - 1) + last_window(r)
    return shown - r["items"]


def last_window(r):
    # the final window holds what is left after the previous ones
    starts = 7 * (r["stacked_windows"] - 1)
    return r["items"] - starts


def test_the_demo_report_as_text():
    out = run_demo("--no-progress", "--policy", "fixed:size=10")
    assert f"items          {ITEMS} of {ITEMS} expected, 0 lost, every one verified in order" in out
    m = re.search(r"latency +p50 ([\d.]+) us +p99 ([\d.]+) us +p99\.9 ([\d.]+) us +max", out)
    assert m, out
    p50, p99, p999 = map(float, m.groups())
    assert 0 < p50 <= p99 <= p999
    assert re.search(r"backpressure +the producer waited \d+ times for an item slot", out), out
    # 500 full chunks; when done lands after the last one was popped, an
    # empty final chunk follows (SPEC section 2)
    m = re.search(r"chunks +(\d+) \(1 final, (\d) empty, (\d+) stacked views, 0 context", out)
    assert m, out
    chunks, empty, stacked = map(int, m.groups())
    assert stacked == ITEMS // 10 and chunks == stacked + empty and empty in (0, 1)
