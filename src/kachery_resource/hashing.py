"""Streaming sha1 in constant memory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
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
