"""Blocks of a file fetched once each: a memory cache, single flight, parallel ranges.

The file is cut into fixed, aligned blocks. A read asks for the blocks it covers; each
missing block is claimed by exactly one caller (the others wait for the same future), so
one block is downloaded once however many threads read it. Consecutive claimed blocks
go out as one range request of up to ``max_request`` bytes; the pieces of a large read
are fetched in parallel (one in the calling thread, the rest in a small pool), and
read-ahead ranges are fetched in the background.

Blocks that arrive also feed an in-order sha1 of the file, in a thread of its own: once every byte has passed through (a whole-file read,
sequential or not, as long as the blocks are still cached when the hash reaches them),
the digest is compared with the file's sha1 and a mismatch fails every later read with
:class:`IntegrityError`; a read that reaches the end of the file waits for the hash, and
so does a read more than half the cache ahead of it (so the blocks it needs stay cached).
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import IntegrityError
from .cache import BlockCache
from .source import RangeSource


class BlockFetcher:
    """The blocks of one :class:`RangeSource`; thread-safe."""

    def __init__(self, source: RangeSource, sha1: str | None, *, block_size: int,
                 cache_size: int, max_request: int, workers: int) -> None:
        self.source = source
        self.size = source.size
        self.block_size = block_size
        self.blocks = -(-self.size // block_size)
        self._max_request_blocks = max(1, max_request // block_size)
        self._workers = workers
        self._cache = BlockCache(cache_size)
        self._inflight: dict[int, Future[memoryview]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kachery-read")
        self._expected = sha1
        self._hasher = hashlib.sha1()
        self._hashed_blocks = 0
        self._hash_lock = threading.Lock()
        self.failure: IntegrityError | None = None
        #: True once the whole file hashed to its sha1, False on a mismatch, else None
        self.verified: bool | None = None
        #: (start, end) of the last range requests sent, in order (for tests and diagnostics)
        self.requests: deque[tuple[int, int]] = deque(maxlen=10_000)
        self._closed = False
        self._hash_wakeup = threading.Condition()
        self._hasher_thread: threading.Thread | None = None
        if self.size == 0:
            self._finish_hash()
        elif sha1 is not None:
            self._hasher_thread = threading.Thread(target=self._hash_loop, daemon=True,
                                                   name="kachery-read-sha1")
            self._hasher_thread.start()

    # -- reading ---------------------------------------------------------------------
    def blocks_for(self, first: int, last: int, ahead: int = 0) -> list[memoryview]:
        """Blocks ``first..last`` (inclusive), fetching those not cached; afterwards
        ``ahead`` more blocks start downloading in the background."""
        pending, mine = self._claim(range(first, last + 1))
        ahead_claimed = self._claim_ahead(last + 1, ahead) if ahead else []
        runs = self._runs(mine, pieces=self._workers)
        for run in runs[1:]:
            self._pool.submit(self._fetch_run, run)
        for run in self._runs(ahead_claimed, pieces=1):
            self._pool.submit(self._fetch_run, run)
        if runs:
            self._fetch_run(runs[0])
        out = [item if isinstance(item, memoryview) else item.result() for item in pending]
        if (first - self._hashed_blocks) * self.block_size > self._cache.capacity // 2:
            self.settle_hash()  # let the hash catch up before its next blocks are evicted
        if self.failure is not None:
            raise self.failure
        return out

    def _claim(self, indexes: range) -> tuple[list[memoryview | Future[memoryview]], list[int]]:
        pending: list[memoryview | Future[memoryview]] = []
        mine: list[int] = []
        with self._lock:
            for i in indexes:
                data = self._cache.get(i)
                if data is not None:
                    pending.append(data)
                elif i in self._inflight:
                    pending.append(self._inflight[i])
                else:
                    future: Future[memoryview] = Future()
                    self._inflight[i] = future
                    pending.append(future)
                    mine.append(i)
        return pending, mine

    def _claim_ahead(self, start: int, count: int) -> list[int]:
        """Claim blocks ``start..start+count-1`` not yet cached or coming, but only once
        less than half of that window is covered (so read-ahead requests stay large)."""
        end = min(self.blocks, start + count)
        with self._lock:
            frontier = start
            while frontier < end and (frontier in self._cache or frontier in self._inflight):
                frontier += 1
            if frontier >= end or frontier - start >= count // 2 + (count == 1):
                return []
            mine = [i for i in range(frontier, end)
                    if i not in self._cache and i not in self._inflight]
            for i in mine:
                self._inflight[i] = Future()
            return mine

    def _runs(self, indexes: Sequence[int], pieces: int) -> list[list[int]]:
        """Consecutive indexes grouped into requests: up to ``max_request`` bytes each,
        and a long run cut into about ``pieces`` requests to be fetched side by side."""
        runs: list[list[int]] = []
        for i in indexes:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        out: list[list[int]] = []
        for run in runs:
            step = min(self._max_request_blocks, max(1, -(-len(run) // pieces)))
            out.extend(run[k:k + step] for k in range(0, len(run), step))
        return out

    def _fetch_run(self, run: list[int]) -> None:
        start = run[0] * self.block_size
        end = min(self.size, (run[-1] + 1) * self.block_size)
        with self._lock:
            self.requests.append((start, end))
        try:
            data = self.source.read_range(start, end)
        except BaseException as exc:
            with self._lock:
                futures = [self._inflight.pop(i) for i in run]
            for future in futures:
                future.set_exception(exc)
            return
        view = memoryview(data)
        blocks = {i: view[(i - run[0]) * self.block_size:(i - run[0] + 1) * self.block_size]
                  for i in run}
        with self._lock:
            for i, block in blocks.items():
                self._cache.put(i, block)
            futures = [self._inflight.pop(i) for i in run]
        for i, future in zip(run, futures, strict=True):
            future.set_result(blocks[i])
        if self._hasher_thread is not None:
            with self._hash_wakeup:
                self._hash_wakeup.notify()

    # -- integrity -------------------------------------------------------------------
    def _hash_loop(self) -> None:
        """The hashing thread: hashes each block that continues the hashed prefix, as soon
        as it is cached, beside the fetching threads rather than in them."""
        while True:
            with self._hash_wakeup:
                while not (self._closed or self.verified is not None or self._hashable()):
                    self._hash_wakeup.wait()
                if self._closed or self.verified is not None:
                    return
            with self._hash_lock:
                self._hash_prefix()

    def _hashable(self) -> bool:
        with self._lock:
            return self._cache.peek(self._hashed_blocks) is not None

    def settle_hash(self) -> None:
        """Wait for the hashing under way, hash what else is cached; raise a mismatch."""
        if self._expected is not None and self.verified is None:
            with self._hash_lock:
                self._hash_prefix()
        if self.failure is not None:
            raise self.failure

    def _hash_prefix(self) -> None:
        while self._hashed_blocks < self.blocks and self.verified is None:
            with self._lock:
                block = self._cache.peek(self._hashed_blocks)
            if block is None:
                return  # not here yet, or evicted before the hash reached it
            self._hasher.update(block)
            self._hashed_blocks += 1
        self._finish_hash()

    def _finish_hash(self) -> None:
        if self._expected is None or self.verified is not None:
            return
        actual = self._hasher.hexdigest()
        self.verified = actual == self._expected
        if not self.verified:
            self.failure = IntegrityError(
                f"the bytes of {self.source.name} hash to sha1 {actual}, not {self._expected}; "
                f"they came from {self.source.origin} (nothing read from it can be trusted)")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:  # runs cancelled before they started: their waiters must not hang
            for future in self._inflight.values():
                if not future.done():
                    future.set_exception(ValueError("I/O operation on closed file"))
            self._inflight.clear()
        with self._hash_wakeup:
            self._closed = True
            self._hash_wakeup.notify()
        if self._hasher_thread is not None:
            self._hasher_thread.join()
        with self._lock:
            self._cache.clear()
        self.source.close()
