"""A file's chunk sets in a zone's storage (docs/design-chunks.md): the signed list, the
chunks, and the marker of the list's check against the whole file.

Only the gateway writes under ``P/chunks/``, and only what it checked: a list after its
signature and fields (finalizeChunkList), a chunk after its size and sha1 against the
list (finalizeChunkUpload), a marker after the check against the whole file. Lists are
read back often (every chunk call), so the last few are kept in memory for a minute;
whatever deletes a chunk set forgets its list.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

from ..chunking import ChunkList, read_signed_chunk_list
from ..errors import IntegrityError
from . import keys
from .problems import ApiError
from .zones import Zone

log = logging.getLogger("kachery_resource.gateway")

MAX_LIST_BYTES = 3_000_000  # 65,536 chunks of 40 hex characters and the envelope
LIST_CACHE_SEC = 60.0
LIST_CACHE_ENTRIES = 32
LOCK_STRIPES = 64


@dataclass(frozen=True)
class StoredList:
    """A checked chunk list as stored: the list, who signed it, the sha1 of the document."""

    chunks: ChunkList
    signer: str
    doc_sha1: str


@dataclass(frozen=True)
class Marker:
    """The outcome of checking a list against the whole file; on a mismatch, ``signer``
    and the first chunk ``index`` that differs."""

    ok: bool
    at: float
    signer: str = ""
    index: int = -1


def refused(sha1: str, marker: Marker) -> ApiError:
    """The 409 for any chunk call on a list the whole file proved false."""
    return ApiError(409, "chunk_list_refused",
                    f"the chunk list of sha1://{sha1} (signed by client {marker.signer}) did not "
                    f"match the whole file (chunk {marker.index} differs); its chunks were deleted. "
                    "Read the whole file (findFile) instead")


class ChunkStore:
    """Reads and deletes chunk sets; keeps recently read lists."""

    def __init__(self) -> None:
        self._lists: OrderedDict[tuple[int, str], tuple[float, StoredList]] = OrderedDict()
        self._locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]

    def lock(self, zone: Zone, sha1: str) -> asyncio.Lock:
        """Held while a list of ``sha1`` is compared with the one there and written."""
        return self._locks[hash((id(zone.storage), zone.prefix, sha1)) % LOCK_STRIPES]

    async def read_list(self, zone: Zone, sha1: str, chunk_size: int,
                        fresh: bool = False) -> StoredList | None:
        """The list of ``sha1`` at ``chunk_size``, or None when there is none (or it does
        not verify: it is then logged, and the sweep deletes it)."""
        key = keys.chunk_list_key(zone.prefix, sha1, chunk_size)
        slot = (id(zone.storage), key)
        cached = self._lists.get(slot)
        if cached is not None and not fresh and time.monotonic() - cached[0] < LIST_CACHE_SEC:
            return cached[1]
        data = await zone.storage.read_small(key, MAX_LIST_BYTES + 1)
        if data is None:
            self._lists.pop(slot, None)
            return None
        try:
            stored = parse_list(data, zone.name)
        except IntegrityError as exc:
            log.error("the stored chunk list %s is not valid (%s)", key, exc)
            return None
        self._lists[slot] = (time.monotonic(), stored)
        self._lists.move_to_end(slot)
        while len(self._lists) > LIST_CACHE_ENTRIES:
            self._lists.popitem(last=False)
        return stored

    async def find_list(self, zone: Zone, sha1: str) -> StoredList | None:
        """The list of ``sha1`` at whatever chunk size it has (findChunks is not told)."""
        for chunk_size in await self.chunk_sizes(zone, sha1):
            stored = await self.read_list(zone, sha1, chunk_size)
            if stored is not None:
                return stored
        return None

    async def chunk_sizes(self, zone: Zone, sha1: str) -> list[int]:
        """The chunk sizes of the chunk sets of ``sha1``."""
        names = await zone.storage.list_folders(keys.chunk_folder(zone.prefix, sha1))
        return [int(n) for n in names if n.isdigit()]

    async def marker(self, zone: Zone, sha1: str, chunk_size: int) -> Marker | None:
        data = await zone.storage.read_small(keys.chunk_checked_key(zone.prefix, sha1, chunk_size))
        if data is None:
            return None
        try:
            return Marker(**json.loads(data))
        except (ValueError, TypeError):
            return Marker(ok=False, at=0.0)  # unreadable: treated as a failed check

    async def ensure_not_refused(self, zone: Zone, sha1: str, chunk_size: int) -> None:
        """A 409 ``chunk_list_refused`` when the check of this set failed."""
        marker = await self.marker(zone, sha1, chunk_size)
        if marker is not None and not marker.ok:
            raise refused(sha1, marker)

    async def write_marker(self, zone: Zone, sha1: str, chunk_size: int, marker: Marker) -> None:
        await zone.storage.write_small(keys.chunk_checked_key(zone.prefix, sha1, chunk_size),
                                       json.dumps(asdict(marker)).encode())

    async def delete_set(self, zone: Zone, sha1: str, chunk_size: int) -> int:
        """Delete a chunk set (list, chunks, marker); returns how many objects."""
        self.forget(zone, sha1, chunk_size)
        return await zone.storage.cleanup(keys.chunk_set(zone.prefix, sha1, chunk_size), 0)

    async def delete_chunks(self, zone: Zone, sha1: str, chunk_size: int) -> int:
        """Delete a set's list and chunks, keeping its marker; returns how many objects."""
        self.forget(zone, sha1, chunk_size)
        marker = keys.chunk_checked_key(zone.prefix, sha1, chunk_size)
        found = [k for k in await zone.storage.list_keys(keys.chunk_set(zone.prefix, sha1, chunk_size))
                 if k != marker]
        for key in found:
            await zone.storage.delete(key)
        return len(found)

    def forget(self, zone: Zone, sha1: str, chunk_size: int) -> None:
        self._lists.pop((id(zone.storage), keys.chunk_list_key(zone.prefix, sha1, chunk_size)), None)


def parse_list(data: bytes, zone: str) -> StoredList:
    """A signed chunk list document, checked (IntegrityError saying what is wrong)."""
    if len(data) > MAX_LIST_BYTES:
        raise IntegrityError(f"the chunk list is over {MAX_LIST_BYTES} bytes")
    chunks, signer = read_signed_chunk_list(data, zone)
    return StoredList(chunks, signer, hashlib.sha1(data).hexdigest())
