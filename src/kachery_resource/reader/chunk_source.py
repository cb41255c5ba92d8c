"""Reading a file that is not in the bucket yet: the daemon uploads just the chunks a read
needs (``fileRanges``), the reader checks and reads them (docs/design-chunks.md).

For each read: one ``fileRanges`` request for the chunks it covers that the daemon has not
yet reported uploaded (the daemon waits for them, up to 20 s per request), then one
``findChunks`` on the gateway for their URLs, then ``DOWNLOADS`` chunks downloaded at
once. Before any byte is used:

- the chunk list (fetched once) must carry a valid signature (``chunking``'s one check)
  by a registered client of the zone (``getClientInfo``, cached per signer), for this
  sha1, size and chunk size. A list that fails is refused: the file is then read the
  whole-file way (``list_refused`` says why);
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

from ..chunking import ChunkList, chunk_size_for, chunks_covering, read_signed_chunk_list
from ..client.gateway import FoundFile, GatewayClient
from ..client.resource import Busy, ResourceClient
from ..errors import (
    FileNotFoundOnResource,
    GatewayError,
    IntegrityError,
    TimeoutError_,
    UnsupportedRequestError,
    UploadFailedError,
    connection_problem,
)
from .offers import RangesUnavailable, no_ranges
from .source import BucketSource, RangeSource

log = logging.getLogger("kachery_resource.reader")

WAIT_SEC = 20.0  # how long the daemon may hold each fileRanges request
KEEP_BYTES = 32 * 1024 * 1024  # verified chunks kept in memory (the file's blocks are
#                                 cached above, in the fetcher)
MAX_INDICES = 64  # chunks per fileRanges and findChunks
MAX_RANGES = 16  # ranges per fileRanges
DOWNLOADS = 4  # chunks downloaded at once
_SIGNERS: dict[tuple[str, str, str], bool] = {}  # (gateway, zone, client id) -> registered
_FIND_DELAYS = (0.0, 0.05, 0.2, 0.5, 1.0)


class ChunkSource:
    """The bytes of ``sha1`` through chunks the resource's daemon uploads on demand."""

    def __init__(self, uri: str, sha1: str, gateway: GatewayClient, resource: ResourceClient,
                 whole: Callable[[], RangeSource], timeout: float | None = None) -> None:
        self.name = f"sha1://{sha1}"
        self.origin = (f"the chunks of resource {resource.name!r} in zone {gateway.zone!r}, "
                       "whose daemon's file may have changed; tell the data owner")
        self._uri, self._sha1 = uri, sha1
        self._gateway, self._resource = gateway, resource
        self._whole_factory, self._timeout = whole, timeout
        self._lock = threading.Lock()  # the pool, the list's check, the move to the bucket
        self._cache_lock = threading.Lock()  # the verified chunks (never held while waiting)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._uploaded: set[int] = set()  # chunks the daemon reported in the bucket
        self._urls: dict[int, str] = {}
        self._inflight: dict[int, Future[bytes]] = {}  # chunks being fetched
        self._pool: ThreadPoolExecutor | None = None
        self._pending_urls = True  # the gateway gives URLs of chunks before they are up
        self._list: ChunkList | None = None
        self._whole: RangeSource | None = None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        #: why the chunk list was refused (then reads go the whole-file way), or None
        self.list_refused: str | None = None
        #: chunks fetched (for tests and diagnostics), and refetches after a bad chunk
        self.fetched = 0
        self.refetched = 0
        first = self._ask([0], first=True)
        self.size = int(first["size"])
        self.chunk_size = int(first["chunkSize"])
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
        runs = _runs([i for i in todo if i not in self._uploaded])
        ahead = None  # their URLs, asked for while the daemon uploads them
        if runs and self._list is not None and self._pending_urls:
            ahead = pool.submit(self._find, [i for i in todo if i not in self._urls], True)
        for k in range(0, len(runs), MAX_RANGES):
            self._ask([i for run in runs[k:k + MAX_RANGES] for i in run])
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

    # -- the daemon ---------------------------------------------------------------------
    def _ask(self, indices: list[int], first: bool = False) -> dict[str, Any]:
        """``fileRanges`` for ``indices`` until each is uploaded; the last answer."""
        ranges = [(0, 1)] if first else self._ranges(indices)
        end = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError_(f"the resource did not upload the chunks of {self.name} "
                                    f"within {self._timeout:g} s; try again later")
            try:
                got = self._resource.request_ranges(
                    self._uri, ranges, WAIT_SEC if left is None else min(WAIT_SEC, left))
            except Busy as busy:
                time.sleep(busy.retry_after)
                continue
            except UnsupportedRequestError as exc:
                no_ranges(self._resource.url)
                raise RangesUnavailable(str(exc)) from exc
            if self._done(got, indices, first):
                return got

    def _ranges(self, indices: list[int]) -> list[tuple[int, int]]:
        """``(offset, length)`` of each run of consecutive chunks in ``indices``."""
        cs = self.chunk_size
        return [(run.start * cs, len(run) * cs) for run in _runs(indices)]

    def _done(self, got: dict[str, Any], indices: list[int], first: bool) -> bool:
        status = got.get("status")
        if status == "unavailable":
            no_ranges(self._resource.url)
            raise RangesUnavailable(str(got.get("error") or "the resource cannot send chunks"))
        if status == "not-found":
            raise FileNotFoundOnResource(f"{self._uri} is neither in the zone's bucket nor on "
                                         "the resource")
        if status == "error":
            raise UploadFailedError(f"the resource could not send {self._uri}: "
                                    f"{got.get('error') or 'no reason given'}")
        if status == "hashing":
            return False
        if status != "ready" or not isinstance(got.get("chunks"), list):
            raise GatewayError(f"the resource answered fileRanges for {self.name} with "
                               f"{str(got)[:200]}")
        if first and not (isinstance(got.get("size"), int) and isinstance(got.get("chunkSize"), int)):
            raise GatewayError(f"the resource gave no size for {self.name}")
        states = {c.get("index"): c for c in got["chunks"] if isinstance(c, dict)}
        self._uploaded.update(i for i, c in states.items()
                              if isinstance(i, int) and c.get("status") == "completed")
        wanted = [] if first and got.get("size") == 0 else indices
        for i in wanted:
            chunk = states.get(i) or {}
            if chunk.get("status") == "error":
                raise UploadFailedError(f"the resource could not send chunk {i} of {self._uri}: "
                                        f"{chunk.get('error') or 'no reason given'}")
        return all((states.get(i) or {}).get("status") == "completed" for i in wanted)

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
            chunks, signer = read_signed_chunk_list(doc, self._gateway.zone)
            if (chunks.sha1, chunks.size, chunks.chunk_size) != (self._sha1, self.size,
                                                                  self.chunk_size):
                raise IntegrityError(f"the chunk list is for sha1://{chunks.sha1} "
                                     f"({chunks.size} bytes), not this file")
            if not self._registered(signer):
                raise IntegrityError(f"the chunk list is signed by {signer}, which is not a "
                                     f"registered client of zone {self._gateway.zone!r}")
        except IntegrityError as exc:
            self.list_refused = str(exc)
            log.warning("%s: refused its chunk list: %s", self.name, exc)
            raise RangesUnavailable(f"the chunk list was refused: {exc}") from exc
        self._list = chunks

    def _registered(self, signer: str) -> bool:
        key = (self._gateway.url, self._gateway.zone, signer)
        if key not in _SIGNERS:
            _SIGNERS[key] = self._gateway.client_registered(signer)
        return _SIGNERS[key]

    def _get(self, url: str, index: int) -> bytes:
        self.fetched += 1
        try:
            return self._download(url, f"chunk {index} of {self.name}")
        except GatewayError as exc:
            if exc.status not in (400, 401, 403, 404):  # expired, or swept: ask again
                raise
        return self._download(self._url(index), f"chunk {index} of {self.name}")

    def _download(self, url: str, what: str) -> bytes:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            self._sessions.append(session)
        try:
            resp = session.get(url, timeout=(10, 60))
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
        for session in self._sessions:
            session.close()


def _runs(indices: list[int]) -> list[range]:
    """The runs of consecutive numbers in ``indices`` (sorted)."""
    runs: list[range] = []
    for i in indices:
        if runs and runs[-1].stop == i:
            runs[-1] = range(runs[-1].start, i + 1)
        else:
            runs.append(range(i, i + 1))
    return runs
