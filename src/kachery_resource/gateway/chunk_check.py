"""Checking chunk lists against whole files, and sweeping chunk sets (docs/design-chunks.md).

When a whole file becomes visible (:meth:`ChunkChecks.arrived`, from finalize, multipart
complete and store-verified confirm) its chunk lists are checked in the background, one
file at a time: the content object is read once, the chunk sha1s computed for every
list's chunk size, and compared. A match writes the ``checked`` marker. A mismatch logs
an error naming the list's signer and the first bad chunk, deletes the list and the
chunks, and writes the marker with ``ok: false``: findChunks then answers ``wholeFile``
only and the chunk calls refuse (409 ``chunk_list_refused``).

The sweep (:meth:`ChunkChecks.sweep`, part of the gateway's periodic sweep) visits at most
``SWEEP_FOLDERS`` files per zone and run, continuing where the last run stopped:

- whole file there, marker older than ``downloadUrlTtlSec``: the set is deleted (chunk
  URLs handed out before may still be in use until then);
- whole file there, no marker: the check is queued (a restart lost it); chunks without a
  list are deleted after ``downloadUrlTtlSec``;
- no whole file, nothing written for ``chunkMaxAgeSec``: the set is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable

from ..uri import is_sha1_hex
from . import keys
from .chunk_store import ChunkStore, Marker, StoredList
from .settings import GatewaySettings
from .zones import Zone

log = logging.getLogger("kachery_resource.gateway")

MAX_QUEUED = 10000  # beyond: dropped, the sweep queues them again
SWEEP_FOLDERS = 200


class ChunkChecks:
    """The background check of chunk lists, and the sweep of chunk sets; one per gateway."""

    def __init__(self, settings: GatewaySettings, store: ChunkStore) -> None:
        self.settings = settings
        self.store = store
        self._queue: asyncio.Queue[tuple[Zone, str]] = asyncio.Queue(MAX_QUEUED)
        self._queued: set[tuple[int, str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor: dict[tuple[int, str], str] = {}

    def arrived(self, zone: Zone, sha1: str) -> None:
        """The whole file ``sha1`` is now visible in ``zone``: check its lists (if any)."""
        slot = (id(zone.storage), zone.prefix, sha1)
        if slot in self._queued:
            return
        try:
            self._queue.put_nowait((zone, sha1))
        except asyncio.QueueFull:
            log.warning("too many chunk list checks queued; sha1://%s is checked by a later sweep",
                        sha1)
            return
        self._queued.add(slot)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def idle(self) -> None:
        """Wait until every queued check is done."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            zone, sha1 = await self._queue.get()
            self._queued.discard((id(zone.storage), zone.prefix, sha1))  # a list arriving now
            try:                                                         # queues it again
                await self.check(zone, sha1)
            except Exception as exc:  # one line; the sweep queues it again
                log.warning("checking the chunk lists of sha1://%s in zone %s failed (%s: %s)",
                            sha1, zone.name, type(exc).__name__, exc)
            finally:
                self._queue.task_done()

    async def check(self, zone: Zone, sha1: str) -> None:
        """Check every unchecked list of ``sha1`` against the whole file in ``zone``."""
        content = keys.content_key(zone.prefix, sha1)
        size = await zone.storage.size_of(content)
        if size is None:
            return
        lists: dict[int, StoredList] = {}
        for chunk_size in await self.store.chunk_sizes(zone, sha1):
            if await self.store.marker(zone, sha1, chunk_size) is not None:
                continue
            stored = await self.store.read_list(zone, sha1, chunk_size, fresh=True)
            if stored is not None:
                lists[chunk_size] = stored
        if not lists:
            return
        computed = await asyncio.to_thread(chunk_sha1s, zone.storage.read_blocks(content), lists)
        for chunk_size, stored in lists.items():
            if stored.chunks.size == size and stored.chunks.chunk_sha1 == computed[chunk_size]:
                await self.store.write_marker(zone, sha1, chunk_size, Marker(True, time.time()))
                log.info("the chunk list of sha1://%s matches the whole file", sha1)
                continue
            index = first_difference(stored.chunks.chunk_sha1, computed[chunk_size])
            log.error("the chunk list of sha1://%s in zone %s, signed by client %s, does not match "
                      "the whole file (first bad chunk: %d); its chunks were deleted and chunk "
                      "requests for it are refused", sha1, zone.name, stored.signer, index)
            await self.store.write_marker(zone, sha1, chunk_size,  # first: chunk calls refuse
                                          Marker(False, time.time(), stored.signer, index))
            await self.store.delete_chunks(zone, sha1, chunk_size)

    async def sweep(self, zone: Zone) -> int:
        """One run of the sweep over ``zone``'s chunk sets; returns how many objects it deleted."""
        slot = (id(zone.storage), zone.prefix)
        names = await zone.storage.list_folders(keys.chunks_root(zone.prefix),
                                                self._cursor.get(slot, ""), SWEEP_FOLDERS)
        self._cursor[slot] = names[-1] if len(names) == SWEEP_FOLDERS else ""
        removed = 0
        for sha1 in names:
            if is_sha1_hex(sha1):
                removed += await self._sweep_file(zone, sha1)
        return removed

    async def _sweep_file(self, zone: Zone, sha1: str) -> int:
        storage, now = zone.storage, time.time()
        folder = keys.chunk_folder(zone.prefix, sha1)
        if await storage.size_of(keys.content_key(zone.prefix, sha1)) is None:
            written = await storage.list_modified(folder)
            if written and now - max(written.values()) < self.settings.chunk_max_age_sec:
                return 0
            for chunk_size in await self.store.chunk_sizes(zone, sha1):
                self.store.forget(zone, sha1, chunk_size)
            return await storage.cleanup(folder, 0)  # everything (and, locally, the folder)
        removed, ttl = 0, self.settings.download_url_ttl_sec
        for chunk_size in await self.store.chunk_sizes(zone, sha1):
            marker = await self.store.marker(zone, sha1, chunk_size)
            if marker is not None:
                if now - marker.at > ttl:
                    removed += await self.store.delete_set(zone, sha1, chunk_size)
            elif await self.store.read_list(zone, sha1, chunk_size, fresh=True) is not None:
                self.arrived(zone, sha1)
            else:  # chunks without a (valid) list: nobody can use them
                removed += await storage.cleanup(keys.chunk_set(zone.prefix, sha1, chunk_size), ttl)
        return removed


class _Chunker:
    """The sha1 of each ``size``-byte chunk of a stream."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.digest = hashlib.sha1()
        self.filled = 0
        self.found: list[str] = []

    def feed(self, data: memoryview) -> None:
        while data:
            take = min(len(data), self.size - self.filled)
            self.digest.update(data[:take])
            self.filled += take
            data = data[take:]
            if self.filled == self.size:
                self.close()

    def close(self) -> None:
        if self.filled:
            self.found.append(self.digest.hexdigest())
            self.digest, self.filled = hashlib.sha1(), 0


def chunk_sha1s(blocks: Iterable[bytes], chunk_sizes: Iterable[int]) -> dict[int, str]:
    """One read of ``blocks``: for each chunk size, the concatenated sha1s of its chunks
    (blocking: run it in a worker thread)."""
    chunkers = {size: _Chunker(size) for size in chunk_sizes}
    for block in blocks:
        view = memoryview(block)
        for chunker in chunkers.values():
            chunker.feed(view)
    for chunker in chunkers.values():
        chunker.close()
    return {size: "".join(c.found) for size, c in chunkers.items()}


def first_difference(claimed: str, actual: str) -> int:
    """The index of the first chunk whose sha1 differs (or that one of them lacks)."""
    for i in range(0, min(len(claimed), len(actual)), 40):
        if claimed[i:i + 40] != actual[i:i + 40]:
            return i // 40
    return min(len(claimed), len(actual)) // 40
