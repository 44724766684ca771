"""A plain-Python buffer of the reference's design (``mstar``'s
``StreamBuffer``, written here from its description, not copied): ``put``
stores the tensor in a dict by id, the registration order is a deque, a
look moves the arrived prefix into a list, and a chunk is ``torch.stack``
of its window (one item: the item itself). Sliding-window policy only:
what ``dropin.py`` measures."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import torch


class RefChunk:
    __slots__ = ("data", "chunk_index", "start_offset", "is_final")

    def __init__(self, data: dict[str, Any], chunk_index: int, start_offset: int, is_final: bool):
        self.data = data
        self.chunk_index = chunk_index
        self.start_offset = start_offset
        self.is_final = is_final


class RefBuffer:
    def __init__(self, window: int, stride: int) -> None:
        self.window, self.stride = window, stride
        self._order: deque[str] = deque()
        self._arrived: dict[str, Any] = {}
        self._buffer: list[Any] = []
        self._consumed = 0
        self._chunks = 0
        self.producer_done = False

    def pre_read_register(self, tensor_id: str) -> None:
        self._order.append(tensor_id)

    def put(self, tensor_id: str, item: Any) -> None:
        self._arrived[tensor_id] = item

    def _update(self) -> None:
        order, arrived = self._order, self._arrived
        while order and order[0] in arrived:
            self._buffer.append(arrived.pop(order.popleft()))

    def has_chunk_ready(self) -> bool:
        self._update()
        return len(self._buffer) >= self.window

    def pop_chunk(self) -> RefChunk:
        self._update()
        items = self._buffer[: self.window]
        self._buffer = self._buffer[self.stride :]
        offset = self._consumed
        self._consumed += self.stride
        data = None if not items else items[0] if len(items) == 1 else torch.stack(items)
        chunk = RefChunk({"data": data}, self._chunks, offset, False)
        self._chunks += 1
        return chunk


class WaitingRefBuffer(RefBuffer):
    """The reference's buffer with a ``threading.Condition`` to sleep on
    (the reference has no wait; its worker polls): what a plain-Python
    wake-up across threads costs. There is no cross-process analogue: the
    reference's buffer lives in the consumer's process."""

    def __init__(self, window: int, stride: int) -> None:
        super().__init__(window, stride)
        self.cond = threading.Condition()

    def put(self, tensor_id: str, item: Any) -> None:
        with self.cond:
            super().put(tensor_id, item)
            self.cond.notify()

    def next_chunk(self) -> RefChunk:
        with self.cond:
            while not self.has_chunk_ready():
                self.cond.wait()
            return self.pop_chunk()
