"""The benchmark report of `scripts/bench.sh`: reads this run's criterion
estimates and the logs the script collected, and writes docs/benchmarks.md.

    python3 -m bench_report --run-dir target/bench-run --criterion target/criterion ...

(from `scripts/`, or with `scripts/` on PYTHONPATH). Nothing here runs a
benchmark: `scripts/bench.sh` runs cargo and strace, then this.
"""
