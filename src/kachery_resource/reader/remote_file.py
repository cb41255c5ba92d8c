"""``RemoteFile``: a seekable, read-only binary file over a :class:`BlockFetcher`.

It is an ``io.RawIOBase``, so ``h5py.File``, ``pandas``, ``pyarrow``, ``io.BufferedReader``
and plain ``read``/``seek`` accept it. Sequential reads grow a read-ahead window (one
block, then doubling up to ``max_readahead``); a seek elsewhere resets it, so random
access (an HDF5 header, one chunk of a dataset) only downloads the blocks it touches.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from .fetcher import BlockFetcher

KIB = 1024
MIB = 1024 * KIB
#: the unit of caching and of the smallest range request
DEFAULT_BLOCK_SIZE = 256 * KIB
#: memory the blocks of one open file may take
DEFAULT_CACHE_SIZE = 256 * MIB
#: the largest single range request
DEFAULT_MAX_REQUEST = 8 * MIB
#: the largest read-ahead window of a sequential run
DEFAULT_MAX_READAHEAD = 64 * MIB
#: range requests in flight at once (besides the reading thread's own)
DEFAULT_WORKERS = 4


class RemoteFile(io.RawIOBase):
    """A read-only view of one file's bytes; see :func:`kachery_resource.open`.

    ``read``/``seek``/``tell`` share one position (guarded by a lock); :meth:`read_at`
    reads at an offset without it, for several threads on one file.
    """

    def __init__(self, fetcher: BlockFetcher, name: str, max_readahead: int) -> None:
        super().__init__()
        self._fetcher = fetcher
        self.name = name
        self.size = fetcher.size
        self._pos = 0
        self._lock = threading.Lock()
        self._run_start = self._run_end = 0  # a read from the start begins a sequential run
        self._ahead_blocks = 0
        self._max_ahead_blocks = max(0, max_readahead // fetcher.block_size)

    # -- io.RawIOBase ----------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        with self._lock:
            self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        with self._lock:
            n = self.size - self._pos if size is None or size < 0 else size
            data = self._read(self._pos, n, sequential=True)
            self._pos += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to ``size`` bytes), read a block at a time rather than a byte at a time."""
        self._check_open()
        limit = -1 if size is None else size
        with self._lock:
            line = bytearray()
            while limit < 0 or len(line) < limit:
                want = self._fetcher.block_size - self._pos % self._fetcher.block_size
                if limit >= 0:
                    want = min(want, limit - len(line))
                chunk = self._read(self._pos, want, sequential=True)
                newline = chunk.find(b"\n") + 1
                taken = chunk[:newline] if newline else chunk
                line += taken
                self._pos += len(taken)
                self._run_end = self._pos  # the rest of the block is read next: still sequential
                if newline or not chunk:
                    break
        return bytes(line)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at the end), leaving the position."""
        self._check_open()
        if offset < 0:
            raise ValueError(f"negative offset {offset}")
        return self._read(offset, size, sequential=False)

    def close(self) -> None:
        if not self.closed:
            self._fetcher.close()
        super().close()

    @property
    def verified(self) -> bool | None:
        """True once every byte was read and matched the sha1 (False: mismatch; None: not yet)."""
        return self._fetcher.verified

    @property
    def range_requests(self) -> list[tuple[int, int]]:
        """The ``(start, end)`` of the range requests sent so far (the last 10 000)."""
        return list(self._fetcher.requests)

    # -- inside ----------------------------------------------------------------------
    def _read(self, offset: int, size: int, *, sequential: bool) -> bytes:
        end = min(self.size, offset + max(0, size))
        if offset >= end:
            if self._fetcher.failure is not None:
                raise self._fetcher.failure
            return b""
        bs = self._fetcher.block_size
        first, last = offset // bs, (end - 1) // bs
        ahead = self._readahead(offset, end) if sequential else 0
        blocks = self._fetcher.blocks_for(first, last, ahead)
        blocks[-1] = blocks[-1][:end - last * bs]
        blocks[0] = blocks[0][offset - first * bs:]
        if end == self.size:
            self._fetcher.settle_hash()  # the last bytes: the file is whole or never will be
        return b"".join(blocks)  # the one copy

    def _readahead(self, offset: int, end: int) -> int:
        """Blocks to fetch beyond this read: none until a sequential run spans a block (small
        scattered reads, such as HDF5's metadata, fetch only what they touch), then doubling
        on every sequential read but never more than half the run so far (a short run, such
        as the few chunks of an HDF5 slice, wastes little); a jump resets it."""
        bs = self._fetcher.block_size
        if offset != self._run_end:
            self._run_start, self._ahead_blocks = offset, 0
        run_blocks = (end - self._run_start) // bs
        if run_blocks >= 1:
            wanted = max(self._ahead_blocks * 2, -(-(end - offset) // bs))
            self._ahead_blocks = min(self._max_ahead_blocks, wanted, max(1, run_blocks // 2))
        self._run_end = end
        return self._ahead_blocks

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def __repr__(self) -> str:
        return f"<RemoteFile {self.name} size={self.size}>"
