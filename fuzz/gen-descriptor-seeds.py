#!/usr/bin/env python3
"""Writes fuzz/seeds/descriptor/: the descriptor target's seeds in the
layout of docs/design.md (version 5): 32 bytes of head (position, end of
the previous reservation, start of the oldest unreleased one, payload
size; native-endian u64, x86-64 little), one 64-byte descriptor, then its
128-byte side entry (the id's line, the wide dims' line). Run it again
whenever the descriptor's bytes change meaning."""
import os
import struct

WIDE = 0xFFFF_FFFF
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "descriptor")


def seed(head, seq, status, dtype, dims, nbytes, ident, offset, length, wide=None):
    info = status | dtype << 8 | len(dims) << 16 | len(ident) << 24
    narrow = wide is None
    desc = struct.pack("<QQQII", seq, offset, length, info, nbytes if narrow else WIDE)
    desc += struct.pack("<8I", *((list(dims) if narrow else []) + [0] * (8 - (len(dims) if narrow else 0))))
    assert len(desc) == 64
    side = ident.ljust(64, b"\0")
    side += struct.pack("<8Q", *((list(dims) if not narrow else []) + [0] * (8 - (0 if narrow else len(dims)))))
    assert len(side) == 128
    return struct.pack("<4Q", *head) + desc + side


def abandoned(head, seq, ident, code, reason, length=None):
    """An abandoned slot: the reason's length in the ndim byte (or a lie),
    its code in nbytes, its text in the dims (32 bytes) then the side
    entry's wide dims (64 bytes)."""
    n = len(reason) if length is None else length
    info = 2 | n << 16 | len(ident) << 24
    text = reason.ljust(96, b"\0")
    desc = struct.pack("<QQQIi", seq, 0, 8, info, code) + text[:32]
    side = ident.ljust(64, b"\0") + text[32:]
    assert len(desc) == 64 and len(side) == 128
    return struct.pack("<4Q", *head) + desc + side


SEEDS = {
    "abandoned": abandoned((2, 0, 0, 4096), 3, b"gone", 0, b""),
    "abandoned-reason-96-bytes": abandoned((2, 0, 0, 4096), 3, b"gone", -1, "engine status -1: é".encode().ljust(96, b"x")),
    "refused-abandon-reason-97-bytes": abandoned((2, 0, 0, 4096), 3, b"gone", -1, b"x" * 96, length=97),
    "refused-abandon-reason-not-utf8": abandoned((2, 0, 0, 4096), 3, b"gone", -1, b"x" * 40 + b"\xff"),
    "committed-empty": seed((3, 4096, 0, 4096), 4, 1, 2, [0, 5], 0, b"z", 4096, 0),
    "committed-f32-2x3": seed((5, 100, 40, 4096), 6, 1, 9, [2, 3], 24, b"frame-5", 128, 64),
    "committed-i64x7-across-the-wrap": seed((7, 65520, 65000, 65536), 8, 1, 6, [7], 56, b"s7", 65528, 56),
    "committed-scalar-long-id": seed((9, 1 << 20, 1 << 20, 1 << 20), 10, 1, 10, [], 8, b"x" * 64, 1048640, 524288),
    "committed-u64x4": seed((0, 0, 0, 4096), 1, 1, 13, [4], 32, b"t0", 0, 32),
    # A dim past 32 bits (zero bytes): the shape is in the side entry.
    "committed-wide-zero-bytes": seed((1, 0, 0, 4096), 2, 1, 2, [1 << 33, 0], 0, b"wide", 0, 8, wide=True),
    "refused-before-previous-item": seed((4, 512, 0, 4096), 5, 1, 2, [8], 8, b"back", 256, 8),
    "refused-crosses-unmirrored-end": seed((6, 4000, 3000, 4096), 7, 1, 2, [200], 200, b"wrap", 4000, 200),
    "refused-nbytes-past-reservation": seed((1, 0, 0, 4096), 2, 1, 2, [100], 100, b"big", 0, 64),
    "refused-past-released-plus-payload": seed((1, 0, 0, 4096), 2, 1, 2, [8], 8, b"far", 4096, 8),
    "refused-wide-overflow": seed((1, 0, 0, 4096), 2, 1, 13, [1 << 40, 1 << 40], 0, b"ovf", 0, 8, wide=True),
    "refused-id-not-utf8": seed((1, 0, 0, 4096), 2, 1, 2, [8], 8, b"\xff\xfe", 0, 8),
    # Runs (version 5): seq = position + count. The entry point takes
    # capacity 1024 and 256 positions registered past the head.
    "committed-run-of-3-u64x4": seed((0, 0, 0, 4096), 3, 1, 13, [4], 32, b"0", 0, 32),
    "committed-run-of-2-across-the-mirrored-wrap": seed((7, 4032, 4032, 4096), 9, 1, 2, [64], 64, b"7", 4032, 64),
    "refused-run-past-registered": seed((0, 0, 0, 4096), 257, 1, 13, [4], 32, b"0", 0, 32),
    "refused-run-past-capacity": seed((0, 0, 0, 4096), 1025, 1, 13, [4], 32, b"0", 0, 32),
    "refused-run-count-max": seed((0, 0, 0, 4096), 0xFFFF_FFFF_FFFF_FFFF, 1, 13, [4], 32, b"0", 0, 32),
    "refused-run-past-payload": seed((0, 0, 0, 4096), 200, 1, 13, [4], 32, b"0", 0, 32),
    "refused-run-crosses-unmirrored-end": seed((6, 3000, 3000, 4096), 10, 1, 13, [4], 32, b"6", 4000, 32),
    "refused-abandoned-run": abandoned((2, 0, 0, 4096), 4, b"gone", 0, b""),
}

if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {HERE}")
