"""Sending the parts of one multipart upload: bounded parallelism, per-part retries, stall
watchdog, and (with ``multipartHashLocally``) the sequential whole-file hash that gates
them (see :mod:`.parts`).

What it needs from the multipart plan comes in as :class:`PartTools` (the gateway's
multipart calls, the settings it reads, the journal, the worker threads); it knows
nothing of the plan itself."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from ...errors import FileChangedError, IntegrityError, UploadFailedError
from ...store import LocalFile
from .journal import JournalEntry, UploadJournal
from .multipart_api import MultipartApi
from .parts import HashingStopped, PartAborted, PartPut, PartResult, SequentialHasher
from .put import TRANSIENT_STATUSES
from .retry import TransientError, with_retries

log = logging.getLogger("kachery_resource.daemon")

Progress = Callable[[int], None]
URL_BATCH = 32
URL_MAX_AGE_SEC = 600.0


class PartSettings(Protocol):
    """The settings a part sender reads (``MultipartSettings`` has them)."""

    @property
    def parallel_parts(self) -> int: ...
    @property
    def parallel_bodies(self) -> int: ...
    @property
    def stall_sec(self) -> float: ...
    @property
    def part_tries(self) -> int: ...
    @property
    def hash_locally(self) -> bool: ...


@dataclass(frozen=True)
class PartTools:
    """What every part sender of one multipart plan shares."""

    api: MultipartApi
    settings: PartSettings
    journal: UploadJournal | None
    threads: Executor


class PartFailed(TransientError):
    """One attempt at one part failed in a way worth retrying."""

    def __init__(self, message: str, refresh_url: bool = False) -> None:
        super().__init__(message)
        self.refresh_url = refresh_url


class PartSender:
    """Sends every part of ``entry`` not in ``done``; :meth:`send_all`, then maybe :meth:`resend`."""

    def __init__(self, tools: PartTools, entry: JournalEntry, local: LocalFile,
                 progress: Progress, done: dict[int, str]) -> None:
        self.tools = tools
        self.entry = entry
        self.local = local
        self.progress = progress
        self.window = tools.settings.parallel_parts + 2
        self._bodies = threading.Semaphore(tools.settings.parallel_bodies)
        self._todo = deque(n for n in range(1, entry.num_parts + 1) if n not in done)
        self._in_flight: set[int] = set()
        self._urls: dict[int, tuple[str, float]] = {}
        self._url_lock = asyncio.Lock()
        self._hashed = 0
        self._hash_changed = asyncio.Event()
        self._hasher: SequentialHasher | None = None
        self._hash_future: asyncio.Future[str] | None = None
        self.bytes_sent = 0
        already = sum(entry.part_size_of(n) for n in done)
        if already:
            progress(already)

    # -- the whole run -------------------------------------------------------------
    async def send_all(self) -> None:
        """Send the missing parts (while hashing the file with ``multipartHashLocally``:
        IntegrityError if it is not ``sha1``); FileChangedError if it was modified."""
        e = self.entry
        if not self.tools.settings.hash_locally:
            self._hashed = e.num_parts  # the gateway verifies the whole file at completion
            await self._run_workers()
            await self._check_unchanged()
            return
        loop = asyncio.get_running_loop()
        self._hasher = SequentialHasher(self.local.path, e.size, e.part_size, e.num_parts,
                                        lambda n: loop.call_soon_threadsafe(self._on_hashed, n))
        self._advance()
        self._hash_future = loop.run_in_executor(self.tools.threads, self._hasher.run)
        self._hash_future.add_done_callback(lambda _: self._hash_changed.set())
        try:
            await self._run_workers()
            actual = await self._hash_future
        finally:
            self._hasher.stop()
            with contextlib.suppress(HashingStopped, Exception):
                await self._hash_future
        if actual != e.sha1:
            raise IntegrityError(
                f"file changed: {self.local.path} no longer hashes to {e.sha1} (its bytes hash "
                f"to {actual}); the upload was aborted and nothing stored — link or store it again")
        await self._check_unchanged()

    async def _check_unchanged(self) -> None:
        e = self.entry
        st = await asyncio.to_thread(self.local.path.stat)
        if (st.st_size, st.st_mtime_ns) != (e.size, e.mtime_ns):
            raise FileChangedError(f"{self.local.path} was modified during the upload; link it again")

    async def resend(self, numbers: list[int]) -> None:
        """Send ``numbers`` again (the hash is already known)."""
        self._todo.extend(numbers)
        await self._run_workers()

    async def _run_workers(self) -> None:
        count = min(self.tools.settings.parallel_parts, len(self._todo))
        workers = [asyncio.create_task(self._worker()) for _ in range(count)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def _worker(self) -> None:
        while self._todo:
            n = self._todo.popleft()
            self._in_flight.add(n)
            await self._wait_hashed(n)
            await self._send_with_retries(n)
            self._in_flight.discard(n)
            self._advance()

    # -- hashing gate -----------------------------------------------------------------
    def _on_hashed(self, number: int) -> None:
        self._hashed = number
        self._hash_changed.set()

    def _advance(self) -> None:
        """Let the hasher run ``window`` parts past the oldest part not yet stored."""
        pending = list(self._todo) + list(self._in_flight)
        low = min(pending) if pending else self.entry.num_parts + 1
        if self._hasher is not None:
            self._hasher.allow(low + self.window)

    async def _wait_hashed(self, number: int) -> None:
        while self._hashed < number:
            fut = self._hash_future
            if fut is not None and fut.done():
                fut.result()  # raises what the hasher raised (e.g. the file shrank)
                return
            self._hash_changed.clear()
            await self._hash_changed.wait()

    # -- one part ---------------------------------------------------------------------
    async def _send_with_retries(self, n: int) -> None:
        refresh = False

        async def attempt() -> str:
            nonlocal refresh
            try:
                return await self._send_once(n, await self._url(n, refresh))
            except PartFailed as exc:
                refresh = exc.refresh_url
                raise

        etag = await with_retries(
            f"part {n} of sha1://{self.entry.sha1}", attempt, self.tools.settings.part_tries,
            "; the parts already stored are kept — request the file again to resume")
        if self.tools.journal is not None:
            await asyncio.to_thread(self.tools.journal.add_part, self.entry.object_key, n,
                                    self.entry.part_size_of(n), etag)

    async def _url(self, n: int, refresh: bool) -> str:
        async with self._url_lock:
            cached = self._urls.get(n)
            if cached and not refresh and time.monotonic() - cached[1] < URL_MAX_AGE_SEC:
                return cached[0]
            batch = [n, *[m for m in self._todo if m != n and m not in self._urls]][:URL_BATCH]
            urls = await with_retries(
                "getMultipartUploadUrls",
                lambda: self.tools.api.urls(self.entry.sha1, self.entry.object_key, batch))
            now = time.monotonic()
            self._urls.update({m: (u, now) for m, u in urls.items()})
            return urls[n]

    async def _send_once(self, n: int, url: str) -> str:
        """One PUT of part ``n``; its ETag, or PartFailed (retry) / UploadFailedError (give up)."""
        loop = asyncio.get_running_loop()
        e = self.entry
        stall = self.tools.settings.stall_sec
        put = PartPut(url, self.local.path, n, (n - 1) * e.part_size, e.part_size_of(n),
                      lambda k: loop.call_soon_threadsafe(self._count, k), stall, self._bodies)
        future = loop.run_in_executor(self.tools.threads, put.run)
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=min(1.0, stall / 4))
                if not future.done() and put.stalled():
                    log.warning("part %d of sha1://%s stalled (no progress for %.0f s)", n,
                                e.sha1, stall)
                    put.abort()
            result = future.result()
        except asyncio.CancelledError:
            put.abort()
            with contextlib.suppress(BaseException):
                await future
            self._count(-put.sent)
            raise
        except (PartAborted, http.client.HTTPException) as exc:
            self._count(-put.sent)
            raise PartFailed(f"{exc!r}") from exc
        except OSError as exc:
            self._count(-put.sent)
            if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                raise
            raise PartFailed(f"{exc!r}") from exc
        except BaseException:
            self._count(-put.sent)
            raise
        finally:  # as in the single plan: a failed future here would make a cycle with this
            del future  # frame, holding the part's read block until the collector ran
        if not 200 <= result.status < 300:
            self._count(-put.sent)
            _raise_for_part_status(n, result)
        return result.etag

    def _count(self, nbytes: int) -> None:
        self.bytes_sent += nbytes
        self.progress(nbytes)


def _raise_for_part_status(n: int, result: PartResult) -> None:
    message = f"part {n} PUT answered {result.status}: {result.body[:300]}"
    if result.status == 403:  # most likely an expired URL: get a fresh one
        raise PartFailed(message, refresh_url=True)
    if result.status in TRANSIENT_STATUSES or result.status == 409 or (
            result.status == 400 and "RequestTimeout" in result.body):
        raise PartFailed(message)
    raise UploadFailedError(message, result.status)
