"""Shapes and strides of 2^63 or more (issue 21, defect 7): numpy and
DLPack take int64 shapes, strides and byte sizes, so such a tensor would
reach them wrapped negative (``torch.from_dlpack`` saw a dim of
-9223372036854775808, and on a stride overflow freed the capsule's tensor
twice and aborted the process). A producer refuses to commit one
(``BadTensor``, the slot stays open); a chunk holding one (written by
another producer) refuses to be shown (``BufferError``), and the stream
goes on."""

import mmap
import os
import struct

import numpy as np
import pytest
import shmstream as s
import torch
from test_corrupt import DESCRIPTORS_OFFSET_AT, segment_file

BEYOND = [[2**63, 0], [0, 2**63], [2**64 - 1, 0], [0, 2**62, 2], [2**31, 2**31, 2**31, 0, 2]]


@pytest.mark.parametrize("shape", BEYOND)
def test_a_shape_past_int64_is_refused_at_commit_and_the_slot_stays_open(stream_id, shape):
    p = s.Producer(*stream_id, capacity=4, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    slot = p.register("t0")
    # (the core refuses a byte count past 64 bits; the binding any past int64)
    with pytest.raises(s.BadTensor, match=r"2\^63 - 1|64 bits"):
        slot.commit("u8", shape)
    assert slot.is_open
    slot.numpy(np.uint8, (4,))[:] = [1, 2, 3, 4]
    slot.commit("u8", [4])
    assert np.asarray(b.next_chunk().item(0)).tolist() == [1, 2, 3, 4]


def test_the_largest_shape_that_fits_int64_still_commits_and_shows(stream_id):
    p = s.Producer(*stream_id, capacity=4, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    p.register("t0").commit("u8", [2**63 - 1, 0])
    chunk = b.next_chunk()
    assert np.asarray(chunk.item(0)).shape == (2**63 - 1, 0)
    assert torch.from_dlpack(chunk).shape == (2**63 - 1, 0)


def wide_dims(stream_id, position, capacity, dims):
    """Writes `dims` ({dim: value}) over the dims of the wide item at `position`, in its
    side entry (docs/design.md: 128 bytes per slot right after the
    capacity x 64-byte descriptors; the dims, u64, from byte 64)."""
    fd = os.open(segment_file(stream_id), os.O_RDWR)
    try:
        with mmap.mmap(fd, 4096 * 2) as m:
            (descriptors,) = struct.unpack_from("<Q", m, DESCRIPTORS_OFFSET_AT)
            side = descriptors + 64 * capacity + 128 * (position % capacity)
            for dim, value in dims.items():
                struct.pack_into("<Q", m, side + 64 + 8 * dim, value)
    finally:
        os.close(fd)


# {dim: value} written over [2^32, 0]; the last also makes a stride of 2^63.
@pytest.mark.parametrize("dims", [{0: 2**63}, {0: 2**64 - 1}, {0: 0, 1: 2**63}])
def test_a_chunk_past_int64_is_refused_by_every_view_and_the_stream_goes_on(stream_id, dims):
    p = s.Producer(*stream_id, capacity=4, item_bytes=64)
    b = s.StreamBuffer.open(*stream_id, policy="fixed:size=1", timeout=1)
    # A wide item (a dim of 2^32 next to a zero one), then another
    # producer's dim written over it before the consumer looks.
    p.register("t0").commit("u8", [2**32, 0])
    wide_dims(stream_id, 0, 4, dims)
    p.put("t1", np.arange(4, dtype=np.uint8))
    chunk = b.next_chunk()
    shape = [2**32, 0]
    for dim, value in dims.items():
        shape[dim] = value
    assert list(chunk.item(0).shape) == shape  # the dims as written, unwrapped
    for show in (
        lambda: np.asarray(chunk.item(0)),
        lambda: np.asarray(chunk.stacked()),
        lambda: np.from_dlpack(chunk),
        lambda: torch.from_dlpack(chunk),
        lambda: torch.from_dlpack(chunk.item(0)),
        lambda: chunk.data,
    ):
        with pytest.raises(BufferError, match=r"2\^63 - 1"):
            show()
    chunk.release()
    assert np.asarray(b.next_chunk().item(0)).tolist() == [0, 1, 2, 3]
