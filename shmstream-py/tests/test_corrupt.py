"""A segment that holds what no correct peer writes (garbage written into
its file in /dev/shm, the way a stray process or a bad build could) is a
``shmstream.CorruptStream`` naming the stream, never a crash or a wrong
tensor."""

import glob
import mmap
import os
import struct

import numpy as np
import pytest
import shmstream as s

# Offsets of docs/design.md's layout, asserted at compile time in
# src/protocol/layout.rs: the header's control_offset (u32 at 44) and
# descriptors_offset (u64 at 48); the control block's flags word at 256;
# a descriptor's seq (u64) at 0.
CONTROL_OFFSET_AT, DESCRIPTORS_OFFSET_AT, FLAGS_IN_CONTROL = 44, 48, 256


def segment_file(stream_id):
    rid, edge, part = stream_id
    (path,) = glob.glob(f"/dev/shm/shmstream-{rid}.{edge}.{part}-*")
    return path


def scribble(stream_id, where, value, fmt="<Q"):
    """Writes ``value`` (``fmt``: a u64, or "<I" a u32 ORed into what is
    there) at the byte ``where(mapping)`` names, through a mapping of the
    segment's file."""
    fd = os.open(segment_file(stream_id), os.O_RDWR)
    try:
        with mmap.mmap(fd, 4096 * 2) as m:
            off = where(m)
            if fmt == "<I":
                value |= struct.unpack_from(fmt, m, off)[0]
            struct.pack_into(fmt, m, off, value)
    finally:
        os.close(fd)


def descriptor_seq(position):
    def at(m):
        (descriptors,) = struct.unpack_from("<Q", m, DESCRIPTORS_OFFSET_AT)
        return descriptors + 64 * position

    return at


def flags_word(m):
    (control,) = struct.unpack_from("<I", m, CONTROL_OFFSET_AT)
    return control + FLAGS_IN_CONTROL


def assert_corrupt(e, stream_id, what):
    assert isinstance(e.value, s.StreamError)
    text = str(e.value)
    assert "/".join(stream_id) in text, text
    assert what in text, text


def test_a_garbage_completion_sequence_is_corrupt_stream(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)
    buf = s.StreamBuffer.open(*stream_id, policy="fixed:size=2", timeout=1)
    producer.put("t0", np.arange(3, dtype=np.int64))
    # position 1 was never committed: its seq (0) becomes garbage, read as
    # a run far longer than the ring holds
    scribble(stream_id, descriptor_seq(1), 0xDEAD_BEEF_0BAD_F00D)
    with pytest.raises(s.CorruptStream) as e:
        buf.next_chunk(timeout=2)
    assert_corrupt(e, stream_id, "more than the capacity of 4")
    # it stays corrupt: every later call says so again, nothing crashes
    with pytest.raises(s.CorruptStream):
        buf.has_chunk_ready()
    del buf, producer


def test_unknown_flag_bits_are_corrupt_stream(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)
    buf = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    scribble(stream_id, flags_word, 0xFF00_0000, fmt="<I")
    with pytest.raises(s.CorruptStream) as e:
        buf.next_chunk(timeout=2)  # (asleep: its wait looks again every 20 ms)
    assert_corrupt(e, stream_id, "flags word")
    del buf, producer


def test_a_scribbled_header_is_refused_at_open(stream_id):
    producer = s.Producer(*stream_id, capacity=4, item_bytes=64)
    # descriptors_offset pointing far outside the segment
    scribble(stream_id, lambda m: DESCRIPTORS_OFFSET_AT, 1 << 60)
    # At open a bad header is a failure to set the stream up (SetupFailed,
    # an OSError), its message naming the field; CorruptStream is what a
    # stream already open reports.
    with pytest.raises(s.SetupFailed) as e:
        s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    assert_corrupt(e, stream_id, "unusable descriptor offset")
    del producer
