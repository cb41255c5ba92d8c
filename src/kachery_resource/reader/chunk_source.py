"""Reading a file that is not in the bucket yet: the daemon uploads just the chunks a read
needs (``fileRanges``), the reader checks and reads them (docs/design-chunks.md).

For each read: one ``fileRanges`` request (:mod:`.chunk_requests`) for the chunks it
covers that the daemon has not yet reported uploaded, then one
``findChunks`` on the gateway for their URLs, then ``DOWNLOADS`` chunks downloaded at
once. Before any byte is used:

- the chunk list (fetched once) must pass :mod:`.list_check` (signed by a registered
  client of the zone, for this sha1, size and chunk size). A list that fails is refused:
  the file is then read the whole-file way (``list_refused`` says why);
- each chunk must have exactly its length and its sha1 from the list; a mismatch is
  fetched once more with a fresh URL, then IntegrityError (nothing of it is used).

``findChunks`` answering ``wholeFile`` (the daemon's background upload finished) moves
the source to the bucket. A resource that does not serve ranges (an older proxy or
daemon, a gateway without chunks) is remembered for the session (:mod:`.offers`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from ..chunking import ChunkList, chunk_size_for, chunks_covering
from ..client.gateway import FoundFile, GatewayClient
from ..client.resource import ResourceClient
from ..errors import GatewayError, IntegrityError, connection_problem
from .chunk_requests import ChunkRequests, runs_of
from .list_check import trusted_chunk_list
from .offers import RangesUnavailable
from .sessions import ThreadSessions
from .source import BucketSource, RangeSource

log = logging.getLogger("kachery_resource.reader")

KEEP_BYTES = 32 * 1024 * 1024  # verified chunks kept in memory (the file's blocks are
#                                 cached above, in the fetcher)
MAX_INDICES = 64  # chunks per fileRanges and findChunks
MAX_RANGES = 16  # ranges per fileRanges
DOWNLOADS = 4  # chunks downloaded at once
_FIND_DELAYS = (0.0, 0.05, 0.2, 0.5, 1.0)


class ChunkSource:
    """The bytes of ``sha1`` through chunks the resource's daemon uploads on demand."""

    def __init__(self, uri: str, sha1: str, gateway: GatewayClient, resource: ResourceClient,
                 whole: Callable[[], RangeSource], timeout: float | None = None) -> None:
        self.name = f"sha1://{sha1}"
        self.origin = (f"the chunks of resource {resource.name!r} in zone {gateway.zone!r}, "
                       "whose daemon's file may have changed; tell the data owner")
        self._sha1 = sha1
        self._gateway = gateway
        self._daemon = ChunkRequests(uri, self.name, resource, timeout)
        self._whole_factory = whole
        self._lock = threading.Lock()  # the pool, the list's check, the move to the bucket
        self._cache_lock = threading.Lock()  # the verified chunks (never held while waiting)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._urls: dict[int, str] = {}
        self._inflight: dict[int, Future[bytes]] = {}  # chunks being fetched
        self._pool: ThreadPoolExecutor | None = None
        self._pending_urls = True  # the gateway gives URLs of chunks before they are up
        self._list: ChunkList | None = None
        self._whole: RangeSource | None = None
        self._sessions = ThreadSessions()
        #: why the chunk list was refused (then reads go the whole-file way), or None
        self.list_refused: str | None = None
        #: chunks fetched (for tests and diagnostics), and refetches after a bad chunk
        self.fetched = 0
        self.refetched = 0
        self.size, self.chunk_size = self._daemon.shape()
        if self.chunk_size != chunk_size_for(self.size):  # an older daemon's chunk sizes
            raise RangesUnavailable(f"the resource gave chunk size {self.chunk_size} for "
                                    f"{self.name} ({self.size} bytes), not "
                                    f"{chunk_size_for(self.size)}")

    # -- reads --------------------------------------------------------------------------
    def read_range(self, start: int, end: int) -> bytes:
        if self._whole is not None:
            return self._whole.read_range(start, end)
        indices = list(chunks_covering(self.size, self.chunk_size, start, end - start))
        got = {i: data for i in indices if (data := self._cached(i)) is not None}
        missing = [i for i in indices if i not in got]
        try:
            for k in range(0, len(missing), MAX_INDICES):
                got.update(self._fetch(missing[k:k + MAX_INDICES]))
        except RangesUnavailable as why:
            self._go_whole(str(why))
            return self.read_range(start, end)
        out = bytearray()
        for i in indices:
            data = got[i]
            lo = max(start - i * self.chunk_size, 0)
            hi = min(end - i * self.chunk_size, len(data))
            out += data[lo:hi]
        return bytes(out)

    def _cached(self, index: int) -> bytes | None:
        with self._cache_lock:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
            return data

    def _fetch(self, indices: list[int]) -> dict[int, bytes]:
        """Chunks ``indices`` (at most ``MAX_INDICES``), verified. One fetch per chunk
        however many threads read it; fetches of other chunks run meanwhile (a read-ahead
        overlaps the read before it)."""
        got: dict[int, bytes] = {}
        waits: dict[int, Future[bytes]] = {}
        mine: dict[int, Future[bytes]] = {}
        with self._cache_lock:
            for i in indices:
                if (data := self._cache.get(i)) is not None:
                    got[i] = data
                elif i in self._inflight:
                    waits[i] = self._inflight[i]
                else:
                    mine[i] = self._inflight[i] = Future()
        try:
            if mine:
                for i, data in self._load(list(mine)).items():
                    got[i] = data
                    self._keep(i, data)
                    mine[i].set_result(data)
        except BaseException as exc:
            for future in mine.values():
                if not future.done():
                    future.set_exception(exc)
            raise
        finally:
            with self._cache_lock:
                for i in mine:
                    self._inflight.pop(i, None)
        for i, future in waits.items():
            got[i] = future.result()
        return got

    def _load(self, todo: list[int]) -> dict[int, bytes]:
        """The daemon is asked for the chunks it has not reported uploaded (as runs, 16 per
        ``fileRanges``), their URLs come in one ``findChunks``, and they are downloaded
        ``DOWNLOADS`` at a time."""
        pool = self._downloads()
        runs = runs_of([i for i in todo if i not in self._daemon.uploaded])
        ahead = None  # their URLs, asked for while the daemon uploads them
        if runs and self._list is not None and self._pending_urls:
            ahead = pool.submit(self._find, [i for i in todo if i not in self._urls], True)
        for k in range(0, len(runs), MAX_RANGES):
            self._daemon.ask([i for run in runs[k:k + MAX_RANGES] for i in run], self.chunk_size)
        if ahead is not None:
            try:
                ahead.result()
            except GatewayError as exc:
                if exc.status != 400:
                    raise
                self._pending_urls = False  # a gateway without includePending
        self._find([i for i in todo if i not in self._urls])
        return dict(zip(todo, pool.map(self._verified_chunk, todo), strict=True))

    def _downloads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(DOWNLOADS, "kachery-chunks")
            return self._pool

    def _keep(self, index: int, data: bytes) -> None:
        with self._cache_lock:
            self._cache[index] = data
            self._cache_bytes += len(data)
            while self._cache_bytes > KEEP_BYTES and len(self._cache) > 1:
                self._cache_bytes -= len(self._cache.popitem(last=False)[1])

    def _go_whole(self, why: str) -> None:
        with self._lock:
            if self._whole is None:
                log.info("%s: reading the whole file instead of chunks (%s)", self.name, why)
                self._whole = self._whole_factory()

    # -- the gateway --------------------------------------------------------------------
    def _verified_chunk(self, index: int) -> bytes:
        data = self._get(self._urls[index], index)
        if self._matches(index, data):
            return data
        self.refetched += 1
        data = self._get(self._url(index), index)
        if self._matches(index, data):
            return data
        raise IntegrityError(
            f"chunk {index} of {self.name} does not match its sha1 in the signed chunk list, "
            f"twice; nothing of it was used. It came from {self.origin}")

    def _matches(self, index: int, data: bytes) -> bool:
        assert self._list is not None
        return (len(data) == self._list.span(index)[1]
                and hashlib.sha1(data).hexdigest() == self._list.sha1_of(index))

    def _url(self, index: int) -> str:
        """A fresh URL of chunk ``index``."""
        self._urls.pop(index, None)
        self._find([index])
        return self._urls[index]

    def _find(self, indices: list[int], pending: bool = False) -> None:
        """The URLs of chunks ``indices`` in one ``findChunks`` (``pending``: also of chunks
        not uploaded yet); checks the chunk list the first time."""
        if not indices:
            return
        for delay in _FIND_DELAYS:  # the gateway may lag the daemon's report by a moment
            time.sleep(delay)
            found = self._gateway.find_chunks(self._sha1, indices, pending)
            chunks = found.get("chunks")
            if found.get("wholeFile") or (isinstance(chunks, dict)
                                          and all(str(i) in chunks for i in indices)):
                break
        else:
            raise GatewayError(f"the resource reported chunks {indices[:5]} of {self.name} "
                               f"uploaded, but the gateway at {self._gateway.url} does not "
                               "have them")
        if found.get("wholeFile"):
            url, size = found.get("url"), found.get("size")
            if not isinstance(url, str):
                raise GatewayError(f"the gateway gave no URL for {self.name}")
            self._whole = BucketSource(self._gateway, self._sha1,
                                       FoundFile(url, size if isinstance(size, int) else None))
            raise RangesUnavailable("the whole file is in the bucket now")
        self._check_list(found)
        assert isinstance(chunks, dict)
        for i in indices:
            url = chunks[str(i)]
            if not isinstance(url, str):
                raise GatewayError(f"the gateway gave no URL for chunk {i} of {self.name}")
            self._urls[i] = url

    def _check_list(self, found: dict[str, Any]) -> None:
        with self._lock:  # once, whichever read gets here first
            if self._list is None:
                self._check_new_list(found)

    def _check_new_list(self, found: dict[str, Any]) -> None:
        if found.get("size") != self.size or found.get("chunkSize") != self.chunk_size:
            raise IntegrityError(f"the gateway's chunks of {self.name} are for another size "
                                 f"({found.get('size')}, chunk size {found.get('chunkSize')})")
        url = found.get("listUrl")
        if not isinstance(url, str):
            raise GatewayError(f"the gateway gave no chunk list URL for {self.name}")
        doc = self._download(url, f"the chunk list of {self.name}")
        try:
            chunks = trusted_chunk_list(doc, self._gateway, self._sha1, self.size, self.chunk_size)
        except IntegrityError as exc:
            self.list_refused = str(exc)
            log.warning("%s: refused its chunk list: %s", self.name, exc)
            raise RangesUnavailable(f"the chunk list was refused: {exc}") from exc
        self._list = chunks

    def _get(self, url: str, index: int) -> bytes:
        self.fetched += 1
        try:
            return self._download(url, f"chunk {index} of {self.name}")
        except GatewayError as exc:
            if exc.status not in (400, 401, 403, 404):  # expired, or swept: ask again
                raise
        return self._download(self._url(index), f"chunk {index} of {self.name}")

    def _download(self, url: str, what: str) -> bytes:
        try:
            resp = self._sessions.get().get(url, timeout=(10, 60))
        except requests.RequestException as exc:
            raise GatewayError(f"cannot read {what}: {connection_problem(exc)}") from exc
        if resp.status_code != 200:
            raise GatewayError(f"the bucket answered HTTP {resp.status_code} for {what}",
                               status=resp.status_code)
        return resp.content

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)  # the sessions close below
        if self._whole is not None:
            self._whole.close()
        self._sessions.close()

