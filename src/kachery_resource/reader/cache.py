"""The reader's memory: blocks kept in least-recently-used order under a cap in bytes."""

from __future__ import annotations

from collections import OrderedDict


class BlockCache:
    """Blocks by index, evicting the least recently used once ``capacity`` bytes are held.

    Blocks are views into the body of the range request that brought them (no copy); a
    body stays in memory until the last of its blocks is evicted.

    Not thread-safe on its own: the fetcher calls it under its lock.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._blocks: OrderedDict[int, memoryview] = OrderedDict()

    def get(self, index: int) -> memoryview | None:
        """The block (marked as just used), or None."""
        data = self._blocks.get(index)
        if data is not None:
            self._blocks.move_to_end(index)
        return data

    def peek(self, index: int) -> memoryview | None:
        """The block without changing its place in the eviction order."""
        return self._blocks.get(index)

    def __contains__(self, index: int) -> bool:
        return index in self._blocks

    def put(self, index: int, data: memoryview) -> None:
        old = self._blocks.pop(index, None)
        if old is not None:
            self.held -= len(old)
        self._blocks[index] = data
        self.held += len(data)
        while self.held > self.capacity and len(self._blocks) > 1:
            _, evicted = self._blocks.popitem(last=False)
            self.held -= len(evicted)

    def clear(self) -> None:
        self._blocks.clear()
        self.held = 0
