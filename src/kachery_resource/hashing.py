"""Streaming sha1 in constant memory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK_SIZE = 1024 * 1024


def sha1_of_file(path: Path | str, chunk_size: int = CHUNK_SIZE,
                 progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Return ``(sha1 hex, size in bytes)`` of the file at ``path``, reading it once;
    ``progress`` is told the bytes of each block hashed."""
    digest = hashlib.sha1()
    size = 0
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
            size += n
            if progress is not None:
                progress(n)
    return digest.hexdigest(), size


def sha1_of_bytes(data: bytes) -> str:
    """Return the sha1 hex of ``data``."""
    return hashlib.sha1(data).hexdigest()


def sha1_and_chunks_of_file(path: Path | str, chunk_size: int, block_size: int = CHUNK_SIZE,
                            progress: Callable[[int], None] | None = None
                            ) -> tuple[str, int, str]:
    """``(sha1 hex, size, chunk sha1s)`` of the file at ``path`` in one read: the sha1 of
    every ``chunk_size`` bytes from the start (the last chunk may be shorter), as 40 hex
    characters each, concatenated. ``progress`` is told the bytes of each block hashed."""
    if chunk_size <= 0:
        raise ValueError(f"invalid chunk size {chunk_size}")
    digest = hashlib.sha1()
    chunks = _ChunkDigests(chunk_size)
    size = 0
    view = memoryview(bytearray(block_size))
    with open(path, "rb", buffering=0) as f, ThreadPoolExecutor(1, "chunk-sha1") as other:
        while n := f.readinto(view):
            block = view[:n]
            both = other.submit(chunks.update, block)  # sha1 releases the GIL: two cores
            digest.update(block)
            both.result()
            size += n
            if progress is not None:
                progress(n)
    return digest.hexdigest(), size, chunks.finish()


class _ChunkDigests:
    """The sha1 of every ``chunk_size`` bytes of a stream fed in blocks of any size."""

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.done: list[str] = []
        self.current = hashlib.sha1()
        self.filled = 0

    def update(self, block: memoryview) -> None:
        while block:
            take = min(len(block), self.chunk_size - self.filled)
            self.current.update(block[:take])
            self.filled += take
            block = block[take:]
            if self.filled == self.chunk_size:
                self.done.append(self.current.hexdigest())
                self.current, self.filled = hashlib.sha1(), 0

    def finish(self) -> str:
        if self.filled:
            self.done.append(self.current.hexdigest())
            self.current, self.filled = hashlib.sha1(), 0
        return "".join(self.done)
