"""Random traces (SPEC section 6) through the Python drop-in StreamBuffer
and through ``ipc-demo replay``: the same chunks, item for item.

Each trace has a random policy of the five kinds with random parameters,
registers with and without sizes, puts out of order and of mixed dtypes and
shapes, pops and polls interleaved, and done (sometimes before the last
puts). The binary is ``$SHMSTREAM_IPC_DEMO`` or ``target/release/ipc-demo``
(``$CARGO_TARGET_DIR`` honoured); ``scripts/test-python.sh`` builds it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shmstream as s
import torch

TRACES = 50
CAPACITY = 128
ITEM_BYTES = 64
DTYPES = {
    "f32": torch.float32,
    "i64": torch.int64,
    "i32": torch.int32,
    "u8": torch.uint8,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
}
SIZES = {"f32": 4, "i64": 8, "i32": 4, "u8": 1, "f16": 2, "bf16": 2}
REPO = Path(__file__).resolve().parents[2]


def ipc_demo() -> Path:
    env = os.environ.get("SHMSTREAM_IPC_DEMO")
    if env:
        path = Path(env)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        path = target / "release" / "ipc-demo"
    if not path.is_file():
        pytest.fail(
            f"the replay parity test needs the ipc-demo binary, and {path} does not exist: "
            "run `cargo build --release -p ipc-demo --bin ipc-demo` from the repository root "
            "(scripts/test-python.sh does) or point SHMSTREAM_IPC_DEMO at it",
            pytrace=False,
        )
    return path


# --- random traces ------------------------------------------------------------


def random_policy(rng: random.Random) -> s.ChunkPolicy:
    kind = rng.choice(["fixed", "sliding", "left-context", "ramp", "scheduled"])
    if kind == "fixed":
        return s.FixedChunkPolicy(rng.randint(1, 6), continue_after_done=rng.random() < 0.3)
    if kind == "sliding":
        window = rng.randint(1, 8)
        return s.SlidingWindowChunkPolicy(window=window, stride=rng.randint(1, window))
    if kind == "left-context":
        chunk = rng.randint(1, 8)
        return s.LeftContextChunkPolicy(chunk=chunk, left_context=rng.randint(0, chunk - 1))
    if kind == "ramp":
        size = rng.randint(1, 5)
        growth = rng.choice([1.0, 1.0, 1.5, 2.0])
        cap = rng.randint(size, 4 * size) if growth > 1 or rng.random() < 0.3 else None
        return s.RampChunkPolicy(
            first=rng.randint(1, 5),
            size=size,
            growth=growth,
            max=cap,
            continue_after_done=rng.random() < 0.3,
        )
    context = rng.randint(0, 6)
    return s.ScheduledChunkPolicy(
        schedule=[rng.randint(1, 6) for _ in range(rng.randint(1, 3))],
        chunk=rng.randint(1, 6),
        context=context,
        prime=rng.randint(0, context),
    )


def random_tensor(rng: random.Random, spec: dict[str, Any] | None) -> dict[str, Any]:
    """A put's tensor keys: of ``spec``'s dtype and shape, or (None) of a random
    one or none at all (the replay's default, one f32 holding the index)."""
    if spec is None:
        if rng.random() < 0.3:
            return {}
        dtype = rng.choice(list(DTYPES))
        shape = rng.choice([[rng.randint(0, 4)], [rng.randint(1, 2), rng.randint(1, 3)]])
    else:
        dtype, shape = spec["dtype"], spec["shape"]
    count = int(np.prod(shape, dtype=np.int64))
    if dtype in ("f32", "f16", "bf16"):
        data: list[Any] = [rng.randint(-64, 64) / 4 for _ in range(count)]  # exact in all three
    elif dtype == "u8":
        data = [rng.randint(0, 255) for _ in range(count)]
    else:
        data = [rng.randint(-(2**31), 2**31 - 1) for _ in range(count)]
    return {"dtype": dtype, "shape": shape, "data": data}


def random_trace(rng: random.Random) -> list[dict[str, Any]]:
    n = rng.randint(0, 3) if rng.random() < 0.25 else rng.randint(4, 48)
    mode = rng.choice(["default", "uniform", "uniform", "mixed"])
    uniform: dict[str, Any] | None = None  # mixed: each put its own
    if mode == "uniform":
        uniform = {"dtype": rng.choice(list(DTYPES)), "shape": [rng.randint(1, 7)]}
    events: list[dict[str, Any]] = []
    registered, unput, done = 0, [], False
    tensors: dict[str, dict[str, Any]] = {}
    while registered < n or unput or not done:
        ops = ["pop", "poll"]
        if registered < n:
            ops += ["register"] * 4
        if unput:
            ops += ["put"] * 2
        if registered == n and not done:
            ops.append("done")
        op = rng.choice(ops)
        if op == "register":
            tid = f"t{registered}"
            registered += 1
            keys = {} if mode == "default" else random_tensor(rng, uniform)
            tensors[tid] = keys
            event: dict[str, Any] = {"op": "register", "id": tid}
            if keys and rng.random() < 0.5:
                nbytes = int(np.prod(keys["shape"], dtype=np.int64)) * SIZES[keys["dtype"]]
                event["nbytes"] = rng.randint(nbytes, ITEM_BYTES)
            events.append(event)
            unput.append(tid)
        elif op == "put":
            tid = unput.pop(rng.randrange(len(unput)))  # out of order
            events.append({"op": "put", "id": tid, **tensors[tid]})
        elif op == "done":
            events.append({"op": "done"})
            done = True
        elif op == "pop":
            events.append({"op": "pop"})
        else:
            events.append({"op": "poll", "max": rng.randint(1, 4)})
    events.append({"op": "poll", "max": n + 5})
    return events


# --- the two runs ---------------------------------------------------------------


def flat(t: torch.Tensor) -> list[float]:
    return t.to(torch.float64).flatten().tolist()


def run_python(policy: s.ChunkPolicy, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sb = s.StreamBuffer("parity", "edge", "part", policy, capacity=CAPACITY, item_bytes=ITEM_BYTES)
    index: dict[str, int] = {}
    out: list[dict[str, Any]] = []

    def pop() -> bool:
        if not sb.has_chunk_ready():
            with pytest.raises(s.NotReady):
                sb.pop_chunk()
            return False
        chunk = sb.pop_chunk()
        n = len(chunk)
        values = [flat(torch.from_dlpack(chunk.item(i))) for i in range(n)]
        data = chunk.data["data"]
        if n == 0:
            assert data is None
        elif n == 1:
            assert flat(data) == values[0]
        elif isinstance(data, list):
            assert chunk.stacked() is None
            assert [flat(x) for x in data] == values
        else:
            assert data.shape[0] == n and [flat(row) for row in data] == values
        out.append(
            {
                "chunk_index": chunk.chunk_index,
                "start_offset": chunk.start_offset,
                "is_final": chunk.is_final,
                "context_items": chunk.context_items,
                "ids": chunk.ids,
                "values": values,
            }
        )
        assert len(chunk.ids) == n
        return True

    for event in events:
        op = event["op"]
        if op == "register":
            index[event["id"]] = len(index)
            sb.pre_read_register(event["id"], event.get("nbytes"))
        elif op == "put":
            tid = event["id"]
            if "dtype" in event:
                item = torch.tensor(event["data"], dtype=DTYPES[event["dtype"]]).reshape(
                    event["shape"]
                )
            else:
                item = torch.tensor([float(index[tid])], dtype=torch.float32)
            sb.put(tid, item)
        elif op == "done":
            sb.signal_done()
        elif op == "pop":
            if not pop():
                out.append({"ready": False})
        else:
            for _ in range(event["max"]):
                if not pop():
                    break
    return out


def run_replay(binary: Path, policy: s.ChunkPolicy, events: list[dict[str, Any]]) -> list[Any]:
    trace = "".join(json.dumps(e) + "\n" for e in events)
    args = [str(binary), "replay", "--policy", policy.name, "--values"]
    args += ["--capacity", str(CAPACITY), "--item-bytes", str(ITEM_BYTES)]
    done = subprocess.run(args, input=trace, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"ipc-demo replay failed: {done.stderr}\ntrace:\n{trace}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for line in lines:
        if "values" in line:
            line["values"] = [[float(v) for v in item] for item in line["values"]]
    return lines


@pytest.mark.parametrize("seed", range(TRACES))
def test_a_random_trace_gives_the_same_chunks_as_ipc_demo_replay(seed):
    binary = ipc_demo()
    rng = random.Random(seed)
    policy = random_policy(rng)
    events = random_trace(rng)
    ours = run_python(policy, events)
    theirs = run_replay(binary, policy, events)
    context = f"seed {seed}, policy {policy.name}, {len(events)} events"
    assert len(ours) == len(theirs), context
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"{context}: line {i} differs"
    finals = [c for c in ours if c.get("is_final")]
    never_final = "continue" in policy.name
    assert len(finals) == (0 if never_final else 1), context


def test_the_traces_cover_every_policy_kind_and_out_of_order_puts():
    kinds, reordered = set(), 0
    for seed in range(TRACES):
        rng = random.Random(seed)
        kinds.add(random_policy(rng).name.split(":")[0])
        events = random_trace(rng)
        puts = [int(e["id"][1:]) for e in events if e["op"] == "put"]
        reordered += puts != sorted(puts)
    assert kinds == {"fixed", "sliding", "left-context", "ramp", "scheduled"}
    assert reordered >= TRACES // 2
