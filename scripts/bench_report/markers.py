"""The sections other scripts (or hands) write into the same file between
markers: the network ingress (`scripts/bench-ucx.sh`), Python
(`scripts/bench-python.sh`), the Python per-chunk cost
(`shmstream-py/bench/chunk_cost.py`, `chunk-cost`), the Mooncake ingress
(`shmstream-py/bench/mooncake_bench.py`), the drop-in against the
reference's design (`shmstream-py/bench/dropin.py`), the drop-in's worker
path, measured by hand (`dropin-worker`), the drop-in's register + put
(`shmstream-py/bench/per_item.py`, `dropin-per-item`), and asyncio
(`shmstream-py/bench/aio.py`). A new report keeps them, in this order."""

TAGS = (
    "ucx-bench",
    "python-bench",
    "chunk-cost",
    "mooncake-bench",
    "dropin-bench",
    "dropin-worker",
    "dropin-per-item",
    "aio-bench",
)


def kept_sections(old: str) -> str:
    """The marked sections of the old file, each with its markers, as they
    follow the report."""
    kept = ""
    for tag in TAGS:
        start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
        if start in old and end in old:
            kept += "\n" + start + old.split(start, 1)[1].split(end, 1)[0] + end + "\n"
    return kept
