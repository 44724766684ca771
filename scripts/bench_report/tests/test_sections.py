"""Each section's cells, ratios and verdicts from fixture numbers chosen so
that every value can be worked out by hand (the expected strings are not
computed with the report's own formatting)."""

from pathlib import Path

from bench_report.analysis import ANALYSIS

from .fixtures import estimate, goal, report, table

RECORDS = 65536  # records per criterion iteration of ring_throughput


def test_ring_throughput_per_record_ratios_and_goals(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    for bench, ns in [
        ("shmstream", 150),
        ("rtrb", 50),
        ("crossbeam_arrayqueue", 300),
        ("shmstream_batch64", 75),
        ("rtrb_chunk64", 25),
    ]:
        estimate(c, "ring_throughput_8B", bench, ns * RECORDS)
    text = report(tmp_path).text()

    one = table(text, "record", "shmstream", "rtrb")
    assert one.row("8B") == [
        "8B",
        "150.0 ns (6.7 M/s)",
        "50.0 ns (20.0 M/s)",
        "300.0 ns (3.3 M/s)",
        "3.00x",
        "0.50x",
    ]
    assert one.row("56B") == ["56B", "n/a (n/a)", "n/a (n/a)", "n/a (n/a)", "n/a", "n/a"]
    batch = table(text, "record", "shmstream `put_many` x64")
    assert batch.row("8B") == ["8B", "75.0 ns (13.3 M/s)", "25.0 ns (40.0 M/s)", "3.00x", "2.00x"]
    assert batch.cell("56B", "speed-up over shmstream one by one") == "n/a"

    assert goal(text, "ring throughput 8B: at least as fast as rtrb") == (
        "3.00x of rtrb's time per record",
        "**missed**",
    )
    assert goal(text, "issue 14: ring throughput 8B one by one within 4x rtrb")[1] == "**met**"
    assert goal(text, "issue 14: ring throughput 8B in batches of 64 within 2x rtrb's chunked API") == (
        "3.00x of rtrb's time per record",
        "**missed**",
    )
    assert goal(text, "ring throughput 56B: at least as fast as rtrb") == (
        "n/a of rtrb's time per record",
        "n/a",
    )


def test_ring_56b_one_by_one_against_issue_24s_bound(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    estimate(c, "ring_throughput_56B", "rtrb", 40 * RECORDS)
    estimate(c, "ring_throughput_56B", "shmstream", 60 * RECORDS)
    name = "issue 24: ring throughput 56B one by one within 1.5x rtrb"
    assert goal(report(tmp_path).text(), name) == ("1.50x of rtrb's time per record", "**met**")
    estimate(c, "ring_throughput_56B", "shmstream", 61 * RECORDS)
    assert goal(report(tmp_path).text(), name) == ("1.52x of rtrb's time per record", "**missed**")
    # 8 B has no such goal.
    names = [row[0] for row in table(report(tmp_path).text(), "goal", "result", "status").rows]
    assert "issue 24: ring throughput 8B one by one within 1.5x rtrb" not in names


def test_latency_against_the_floor_and_a_skipped_iceoryx2(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    for bench, ns in [("floor", 50), ("shmstream", 75), ("unix_socket", 20000)]:
        estimate(c, "latency_64B", bench, ns)
    text = report(tmp_path, iceoryx2_note="did not build").text()
    t = table(text, "peer", "one-way latency", "vs floor")
    assert t.rows == [
        ["floor", "50.0 ns", "1.00x"],
        ["shmstream", "75.0 ns", "1.50x"],
        ["unix_socket", "20.00 µs", "400.00x"],
        ["iceoryx2", "skipped: did not build", ""],
    ]
    # 1.5x exactly is within 1.5x.
    assert goal(text, "latency within 1.5x of the floor") == ("1.50x of the floor", "**met**")

    estimate(c, "latency_64B", "iceoryx2", 300)
    estimate(c, "latency_64B", "shmstream", 76)
    text = report(tmp_path).text()
    t = table(text, "peer", "one-way latency", "vs floor")
    assert t.row("iceoryx2") == ["iceoryx2", "300.0 ns", "6.00x"]
    assert goal(text, "latency within 1.5x of the floor") == ("1.52x of the floor", "**missed**")
    assert goal(text, "issue 24: latency within 2x of the floor") == ("1.52x of the floor", "**met**")
    estimate(c, "latency_64B", "shmstream", 101)
    text = report(tmp_path).text()
    assert goal(text, "issue 24: latency within 2x of the floor") == ("2.02x of the floor", "**missed**")


def test_streaming_throughput_ratios_with_a_peer_missing(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    for bench, ns in [("shmstream", 5000), ("bare_handoff", 4600), ("memcpy", 1250)]:
        estimate(c, "stream_64KiB", bench, ns)
    estimate(c, "stream_2MiB", "shmstream", 100_000)
    estimate(c, "stream_2MiB", "memcpy", 50_000)
    text = report(tmp_path).text()
    t = table(text, "size", "shmstream", "bare handoff")
    # GB/s is bytes per ns: 65536 / 5000, / 4600, / 1250.
    assert t.row("64KiB") == [
        "64KiB",
        "5.00 µs (13.11 GB/s)",
        "4.60 µs (14.25 GB/s)",
        "n/a (n/a)",
        "1.25 µs (52.43 GB/s)",
        "0.92x",
        "0.25x",
        "n/a",
    ]
    assert t.cell("2MiB", "vs memcpy") == "0.50x"
    assert t.cell("56B", "shmstream") == "n/a (n/a)"
    assert goal(text, "issue 14: 64 KiB streaming at 0.9x the bare handoff or better") == (
        "0.92x of the handoff's throughput",
        "**met**",
    )
    assert goal(text, "64 KiB streaming at 0.8x memcpy or better") == (
        "0.25x of memcpy's throughput",
        "**missed**",
    )
    assert goal(text, "64 KiB streaming at 10x the socket") == ("n/a of the socket's throughput", "n/a")
    assert goal(text, "2MiB streaming at 0.8x memcpy or better (issue 11)") == (
        "0.50x of memcpy's throughput",
        "**missed**",
    )
    assert goal(text, "64MiB streaming at 0.8x memcpy or better (issue 11)") == ("n/a", "n/a")
    assert goal(text, "issue 14: 56 B streaming at 1x the buffered socket or better") == ("n/a", "n/a")
    names = [row[0] for row in table(text, "goal", "result", "status").rows]
    # The goals of a size follow the table's order: 56 B, then 64 KiB's three, then 2 and 64 MiB.
    first = names.index("issue 14: 56 B streaming at 1x the buffered socket or better")
    assert names[first : first + 6] == [
        "issue 14: 56 B streaming at 1x the buffered socket or better",
        "issue 14: 64 KiB streaming at 0.9x the bare handoff or better",
        "64 KiB streaming at 0.8x memcpy or better",
        "64 KiB streaming at 10x the socket",
        "2MiB streaming at 0.8x memcpy or better (issue 11)",
        "64MiB streaming at 0.8x memcpy or better (issue 11)",
    ]


def test_mixed_and_batch_streaming(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    estimate(c, "stream_mixed", "shmstream", 10e6)
    estimate(c, "stream_mixed", "memcpy", 8e6)
    for bench, ns in [("shmstream_batch64", 40), ("shmstream", 200), ("unix_socket", 30)]:
        estimate(c, "stream_56B", bench, ns)
    text = report(tmp_path).text()
    mixed = table(text, "record", "shmstream", "memcpy", "vs memcpy")
    # 56 + 65536 + 2 MiB + 64 MiB = 69 271 608 bytes per record.
    assert mixed.rows == [["56 B + 64 KiB + 2 MiB + 64 MiB", "10.00 ms (6.93 GB/s)", "8.00 ms (8.66 GB/s)", "0.80x"]]
    assert goal(text, "mixed sizes in one stream at 0.8x memcpy or better (issue 11)") == (
        "0.80x of memcpy's throughput",
        "**met**",
    )
    batch = table(text, "shmstream `put_many` x64")
    assert batch.rows == [
        [
            "40.0 ns (25.0 M/s)",
            "200.0 ns (5.0 M/s)",
            "30.0 ns (33.3 M/s)",
            "n/a (n/a)",
            "5.00x",
            "0.75x",
            "n/a",
        ]
    ]
    assert goal(text, "issue 14: 56 B streaming in batch mode at 20 M items/s or more") == (
        "25.0 M items/s",
        "**met**",
    )
    assert goal(text, "issue 14: 56 B streaming in batch mode at 1x the buffered socket or better") == (
        "0.75x of the socket's items/s",
        "**missed**",
    )
    vs_rtrb = "issue 24: 56 B cross-process in batch mode within 2x rtrb's chunked API per item"
    assert goal(text, vs_rtrb) == ("n/a of rtrb's time per record (section 1)", "n/a")
    # Section 1's criterion iteration moves 65 536 records: 20 ns each.
    estimate(c, "ring_throughput_56B", "rtrb_chunk64", 20 * RECORDS)
    assert goal(report(tmp_path).text(), vs_rtrb) == ("2.00x of rtrb's time per record (section 1)", "**met**")
    estimate(c, "ring_throughput_56B", "rtrb_chunk64", 19 * RECORDS)
    assert goal(report(tmp_path).text(), vs_rtrb) == ("2.11x of rtrb's time per record (section 1)", "**missed**")


DEMO = """\
ipc-demo: 1000000 items of i64[7] (56 bytes each), synthetic source, producer and consumer in two processes
throughput     4681403 items/s, 0.262 GB/s over 0.214 s
latency        p50 2.8 us  p99 145.5 us  p99.9 178.8 us  max 3297.3 us  (commit to chunk, 1000000 items)
"""


def test_the_end_to_end_table_reads_each_demo_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "e2e-full-off.log").write_text(DEMO)
    (run / "e2e-paced-on.log").write_text(DEMO.replace("4681403", "999906").replace("p50 2.8", "p50 18.9"))
    (run / "e2e-full-on.log").write_text("ipc-demo: error: the consumer did not attach\n")
    t = table(report(tmp_path).text(), "run", "items/s", "p50")
    assert t.rows == [
        ["full speed, batching off", "4.68 M", "2.8 µs", "145.5 µs", "178.8 µs"],
        ["full speed, batching 64", "n/a", "n/a", "n/a", "n/a"],
        ["1 M items/s, batching off", "n/a", "n/a", "n/a", "n/a"],
        ["1 M items/s, batching 64", "1.00 M", "18.9 µs", "145.5 µs", "178.8 µs"],
    ]


def test_pop_chunk_per_item_and_flatness(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    estimate(c, "pop_chunk", "4", 128)
    estimate(c, "pop_chunk", "1024", 15360)
    estimate(c, "pop_chunk_prepolled", "4", 40)
    estimate(c, "pop_chunk_prepolled", "1024", 44)
    estimate(c, "pop_chunk_runs", "4", 36)
    estimate(c, "pop_chunk_runs", "1024", 72)
    text = report(tmp_path).text()
    t = table(text, "window", "with poll", "per item")
    assert t.row("4") == ["4", "128.0 ns", "32.0 ns", "40.0 ns", "10.0 ns", "36.0 ns", "9.0 ns"]
    assert t.row("1024") == ["1024", "15.36 µs", "15.0 ns", "44.0 ns", "0.0 ns", "72.0 ns", "0.1 ns"]
    assert t.row("28") == ["28", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
    # 2x exactly is within 2x.
    runs = "issue 24: pop_chunk flat for same-shaped runs (with poll): window 1024 within 2x of window 4"
    assert goal(text, runs) == ("1024 costs 2.00x of 4", "**met**")
    estimate(c, "pop_chunk_runs", "1024", 72.5)
    assert goal(report(tmp_path).text(), runs) == ("1024 costs 2.01x of 4", "**missed**")
    assert goal(text, "pop_chunk flat (with poll): window 1024 within 1.2x of window 4") == (
        "1024 costs 120.00x of 4",
        "**missed**",
    )
    assert goal(text, "pop_chunk flat (pre-polled): window 1024 within 1.2x of window 4") == (
        "1024 costs 1.10x of 4",
        "**met**",
    )


def test_wakeup_and_futex_counts(tmp_path: Path) -> None:
    estimate(tmp_path / "criterion", "wakeup_64B", "futex_floor", 7500)
    estimate(tmp_path / "criterion", "wakeup_64B", "shmstream", 15000)
    run = tmp_path / "run"
    run.mkdir()
    (run / "futex-full.txt").write_text(" 90.0 0.1 10 35 2 futex\n 10.0 0.01 1 364 sched_yield\n")
    (run / "futex-full.log").write_text("BENCH-RESULT futex-items 1000000 5\n")
    text = report(tmp_path, futex_tool="strace -c -e futex").text()
    assert table(text, "peer", "wake-up latency").rows == [
        ["futex floor", "7.50 µs", ""],
        ["shmstream", "15.00 µs", "2.00x"],
    ]
    assert "- System calls counted with `strace -c -e futex` over both processes" in text
    t = table(text, "run", "items", "futex calls")
    assert t.row("full speed, 56-byte tensors") == [
        "full speed, 56-byte tensors",
        "1000000",
        "35",
        "35",
        "364",
        "364",
    ]
    assert t.row("one 56-byte tensor per 5 µs")[1:] == ["n/a"] * 5
    assert goal(text, "at most 100 futex calls per million items (consumer keeping up, full speed)") == (
        "35 per million",
        "**met**",
    )

    (run / "futex-full.log").write_text("BENCH-RESULT futex-items 100000 5\n")
    text = report(tmp_path).text()
    assert table(text, "run", "items").cell("full speed, 56-byte tensors", "per million items") == "350"
    assert goal(text, "at most 100 futex calls per million items (consumer keeping up, full speed)") == (
        "350 per million",
        "**missed**",
    )


MEMORY_GOAL = "issue 11: shared memory for 56 B items at window 28 within 2x the buffered bytes"


def test_memory_ratios_and_goal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "memory.log").write_text(
        "BENCH-RESULT memory byte_granular 16384 4096 6144 1568\n"
        "BENCH-RESULT memory fixed_slots 143360 131072 6144 1568\n"
    )
    text = report(tmp_path).text()
    t = table(text, "layout", "segment")
    assert t.row("byte_granular") == ["byte_granular", "16384", "4096", "6144", "1568", "10.4x", "2.6x"]
    assert t.row("fixed_slots")[5:] == ["91.4x", "83.6x"]
    assert goal(text, MEMORY_GOAL) == (
        "segment 10.4x, payload alone 2.6x (a page at least; descriptors 6144 B)",
        "**missed**",
    )
    (run / "memory.log").write_text("BENCH-RESULT memory byte_granular 3136 1568 1000 1568\n")
    assert goal(report(tmp_path).text(), MEMORY_GOAL)[1] == "**met**"  # 2x exactly


def test_memory_goal_is_left_out_without_its_log(tmp_path: Path) -> None:
    text = report(tmp_path).text()
    assert table(text, "layout", "segment").rows == []
    assert MEMORY_GOAL not in text


ALLOC_GOAL = "0 allocations per item on the hot path"


def test_allocations_per_item_and_goal(tmp_path: Path) -> None:
    assert goal(report(tmp_path).text(), ALLOC_GOAL) == ("see the table", "n/a")
    log = tmp_path / "run" / "allocations.log"
    log.write_text("BENCH-RESULT alloc a 0 100000\nBENCH-RESULT alloc b 0 100000\n")
    text = report(tmp_path).text()
    assert table(text, "path", "allocations").row("a") == ["a", "0", "100000", "0"]
    assert goal(text, ALLOC_GOAL)[1] == "**met**"
    log.write_text("BENCH-RESULT alloc a 0 100000\nBENCH-RESULT alloc b 3 1000\nBENCH-RESULT alloc c 0 5\n")
    text = report(tmp_path).text()
    assert table(text, "path", "allocations").row("b") == ["b", "3", "1000", "0.003"]
    assert goal(text, ALLOC_GOAL)[1] == "**missed**"  # one path allocates, the last does not


def test_many_streams_wakeup_and_k_of_n(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    for bench, ns in [
        ("single_stream_next_chunk", 10000),
        ("streams/1", 8000),
        ("streams/64", 9000),
        ("streams/1024", 12000),
    ]:
        estimate(c, "wait_any_wakeup", bench, ns)
    for bench, ns in [("k1/64", 250), ("k1/1024", 300), ("k16/64", 2400), ("k16/1024", 4000)]:
        estimate(c, "ready_k_of_n", bench, ns)
    text = report(tmp_path).text()
    t = table(text, "open streams", "wake-up latency")
    assert t.row("floor (1 stream, its own futex)") == ["floor (1 stream, its own futex)", "10.00 µs", "", ""]
    assert t.row("1024") == ["1024", "12.00 µs", "1.50x", "1.20x"]
    assert goal(text, "issue 12: wait_any wake-up with 1024 streams within 1.5x of 1 stream") == (
        "1.50x of 1 stream",
        "**met**",
    )
    assert goal(text, "issue 12: wait_any wake-up with 1024 streams within 2x the single-stream futex floor") == (
        "1.20x of the floor",
        "**met**",
    )
    k = table(text, "k ready", "N = 64")
    assert k.row("1") == ["1", "250.0 ns", "300.0 ns", "1.20x", "300.0 ns"]
    assert k.row("16") == ["16", "2.40 µs", "4.00 µs", "1.67x", "250.0 ns"]
    assert k.row("64") == ["64", "n/a", "n/a", "n/a", "n/a"]
    flat = "issue 12: k of N ready flat in N (N = 1024 within 1.5x of N = 64 for each k)"
    grows = "issue 12: k of N ready grows with k (k = 64 costs more than k = 1)"
    assert goal(text, flat) == ("see the table", "**missed**")  # k = 16 is not flat
    assert goal(text, grows) == ("k=64 costs n/a of k=1", "n/a")

    estimate(c, "ready_k_of_n", "k16/1024", 3000)
    estimate(c, "ready_k_of_n", "k64/1024", 12000)
    text = report(tmp_path).text()
    assert goal(text, flat)[1] == "**met**"
    assert goal(text, grows) == ("k=64 costs 40.00x of k=1", "**met**")


def test_k_of_n_flatness_is_not_judged_without_a_pair(tmp_path: Path) -> None:
    estimate(tmp_path / "criterion", "ready_k_of_n", "k1/64", 250)
    text = report(tmp_path).text()
    flat = "issue 12: k of N ready flat in N (N = 1024 within 1.5x of N = 64 for each k)"
    assert goal(text, flat) == ("see the table", "n/a")


def test_stream_lifecycle_and_idle_worker(tmp_path: Path) -> None:
    estimate(tmp_path / "criterion", "stream_lifecycle", "create_announce_open_drain_remove", 166_810)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "wait_any.log").write_text("BENCH-RESULT idle_cpu 1000 10000000000 2270000 1\n")
    text = report(tmp_path).text()
    assert table(text, "per stream").rows == [["166.81 µs", "5,995"]]
    assert goal(text, "issue 12: 1000 new streams per second per worker") == ("5,995 per second", "**met**")
    assert table(text, "open streams", "wall").rows == [["1000", "10.0 s", "2.27 ms", "227.00 µs", "1"]]
    assert goal(text, "issue 12: an idle worker with 1000 streams sleeps once per timeout (no periodic wake-ups)") == (
        "1 sleep(s) in 10 s",
        "**met**",
    )
    assert goal(text, "issue 12: idle worker with 1000 streams uses ~0 CPU (under 20 ms per second)") == (
        "227.00 µs per second",
        "**met**",
    )

    (tmp_path / "run" / "wait_any.log").write_text("BENCH-RESULT idle_cpu 1000 10000000000 300000000 3\n")
    text = report(tmp_path).text()
    assert (
        goal(text, "issue 12: an idle worker with 1000 streams sleeps once per timeout (no periodic wake-ups)")[1]
        == "**missed**"
    )
    assert goal(text, "issue 12: idle worker with 1000 streams uses ~0 CPU (under 20 ms per second)") == (
        "30.00 ms per second",
        "**missed**",
    )


def test_nothing_measured_reads_n_a_everywhere(tmp_path: Path) -> None:
    text = report(tmp_path).text()
    assert table(text, "per stream").rows == [["n/a", "n/a"]]
    assert table(text, "open streams", "wall").rows == [["1000", "n/a", "n/a", "n/a", "n/a"]]
    statuses = {row[2] for row in table(text, "goal", "result", "status").rows}
    assert statuses == {"n/a"}
    # Nothing missed: no analysis of misses.
    assert "Every goal was met in this run." in text
    assert ANALYSIS not in text


def test_the_misses_are_listed_before_the_analysis(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    estimate(c, "latency_64B", "floor", 50)
    estimate(c, "latency_64B", "shmstream", 100)
    estimate(c, "pop_chunk", "4", 100)
    estimate(c, "pop_chunk", "1024", 200)
    text = report(tmp_path, leftover="bench-1-stream").text()
    assert (
        "Goals missed in this run: latency within 1.5x of the floor; "
        "pop_chunk flat (with poll): window 1024 within 1.2x of window 4.\n\n" + ANALYSIS
    ) in text
    assert "Segments left in /dev/shm by the run: bench-1-stream." in text
    assert "Every goal was met" not in text


def test_the_run_lines(tmp_path: Path) -> None:
    text = report(tmp_path, quick=False, args="", model="").text()
    assert "- Machine: 2 cores, ?, kernel 6.0.0, rustc 1.95.0" in text
    assert "- Mode: full (criterion defaults)" in text
    assert "- Reproduce: `scripts/bench.sh` from the repository root" in text
    assert "- iceoryx2 peer: not built (--no-iceoryx2)." in text
    assert "- Load average when the run started: 0.50 0.40 0.30 (" in text
    text = report(tmp_path, args="--quick --no-iceoryx2").text()
    assert "- Mode: quick (criterion `--warm-up-time 1 --measurement-time 2`)" in text
    assert "- Reproduce: `scripts/bench.sh --quick --no-iceoryx2` from" in text
    assert "Segments left in /dev/shm by the run: none." in text


def test_k_of_n_one_k_not_flat_misses_even_when_a_later_k_is(tmp_path: Path) -> None:
    c = tmp_path / "criterion"
    for bench, ns in [("k1/64", 100), ("k1/1024", 200), ("k16/64", 1000), ("k16/1024", 1000)]:
        estimate(c, "ready_k_of_n", bench, ns)
    flat = "issue 12: k of N ready flat in N (N = 1024 within 1.5x of N = 64 for each k)"
    assert goal(report(tmp_path).text(), flat)[1] == "**missed**"
