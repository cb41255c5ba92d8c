"""``fileRanges``: the chunks of a file that cover a reader's ranges (docs/design-chunks.md).

A request names a sha1 and up to 16 byte ranges. The answer is one of::

    unavailable   the gateway has no chunkUpload capability: the reader loads the whole file
    not-found     no store copy and no valid linked file for the sha1
    hashing       the file's chunk list is being computed (a file linked before chunks
                  existed); ask again
    error         with ``error`` (the file changed, cannot be read, ...)
    ready         ``size``, ``chunkSize`` and ``chunks``: the state of each chunk asked for

One :class:`ChunkJob` per (sha1, chunk index) however many readers ask, like the one job
per hash of :mod:`.jobs`. The chunks a request starts go up together, in one upload slot
(shared with whole-file jobs, but served first: :class:`.slots.Slots`, since a reader
waits on them) with one ``initiateChunkUpload`` and their PUTs in parallel. At most
``MAX_CHUNKS`` chunks (the first ones) are started per request: a reader reads ahead in
several.

After the chunks of a file's first request are done, and when ``upload_whole`` is set
(``uploadWholeAfterRanges``), the whole file goes up in the background as a normal
upload job, one at a time and behind every chunk (whole-file jobs wait for a slot after
chunk jobs). It starts once the file's reader has paused (no ``fileRanges`` for it for
``WHOLE_AFTER_QUIET_SEC``): a whole-file upload takes the disk, CPUs and gateway that the
reader's chunks need, and started at once it made the first read of a cold 1 GiB file
2.5 times slower on two cores (docs/benchmarks.md). Errors reach remote users without absolute
paths (:func:`.jobs.public_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..chunking import ChunkList, ChunkRecords, chunks_covering
from ..errors import FileChangedError, KacheryResourceError
from ..messages import UploadState
from ..store import LocalFile
from .jobs import JobManager, Resolver, public_error

log = logging.getLogger("kachery_resource.daemon")

MAX_CHUNKS = 64  # chunks started per request
WHOLE_AFTER_QUIET_SEC = 2.0  # a file's whole upload starts once its reader paused this long
KEEP_LISTS = 16  # chunk lists kept in memory
Progress = Callable[[int], None]


class ChunkUploader(Protocol):
    """What the chunk jobs need from the gateway side (:class:`.uploads.chunks.ChunksPlan`)."""

    async def offered(self) -> bool: ...

    async def upload_chunks(self, local: LocalFile, chunks: ChunkList, indices: Iterable[int],
                            progress: Progress,
                            uploaded: Callable[[int], None] | None = None) -> dict[int, bool]: ...


@dataclass(eq=False)
class ChunkJob:
    """The upload of one chunk of one file."""

    sha1: str
    index: int
    state: UploadState = UploadState.QUEUED
    bytes_uploaded: int = 0
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.state.value}
        if self.state is UploadState.RUNNING:
            out["bytesUploaded"] = self.bytes_uploaded
        if self.error is not None:
            out["error"] = self.error
        return out

    def add_progress(self, nbytes: int) -> None:
        self.bytes_uploaded += nbytes


def answer(status: str, **fields: Any) -> dict[str, Any]:
    return {"type": "fileRanges", "status": status, **fields}


class RangeJobs:
    """Answers ``fileRanges`` requests; owns the chunk jobs and the background uploads."""

    def __init__(self, resolve: Resolver, records: ChunkRecords, plan: ChunkUploader,
                 jobs: JobManager, *, upload_whole: bool = True,
                 keep_completed_sec: float = 60.0) -> None:
        self._resolve = resolve
        self._records = records
        self._plan = plan
        self._jobs = jobs
        self._upload_whole = upload_whole
        self._keep_sec = keep_completed_sec
        self._chunks: dict[tuple[str, int], ChunkJob] = {}
        self._hashing: dict[str, asyncio.Task[ChunkList]] = {}
        self._whole_asked: set[str] = set()
        self._last_asked: dict[str, float] = {}  # sha1 -> loop time of its last fileRanges
        self._whole: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._lists: OrderedDict[str, ChunkList] = OrderedDict()  # the last few, in memory
        self.chunk_uploads = 0  # chunk jobs that ran (for tests and status)

    def chunk_job(self, sha1: str, index: int) -> ChunkJob | None:
        return self._chunks.get((sha1, index))

    async def answer(self, sha1: str, ranges: Iterable[tuple[int, int]],
                     wait_sec: float) -> dict[str, Any]:
        """Join or start the chunk jobs ``ranges`` need; wait up to ``wait_sec`` for them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_sec
        try:
            try:  # /api/info is cached: slow only while the gateway is unreachable
                offered = await asyncio.wait_for(self._plan.offered(), max(wait_sec, 1.0))
            except TimeoutError:
                return answer(UploadState.ERROR.value, error="the zone's gateway did not "
                              "answer in time; try again")
            if not offered:
                return answer("unavailable", error="the zone's gateway does not take chunks")
            local = await self._resolve(sha1)
            if local is None:
                return answer(UploadState.NOT_FOUND.value)
            chunks = await self._chunk_list(local, max(0.0, deadline - loop.time()))
        except FileChangedError as exc:
            return answer(UploadState.ERROR.value, error=public_error(f"file changed: {exc}"))
        except (KacheryResourceError, OSError) as exc:
            return answer(UploadState.ERROR.value, error=public_error(str(exc)))
        if chunks is None:
            return answer("hashing")
        wanted = sorted({i for offset, length in ranges
                         for i in chunks_covering(chunks.size, chunks.chunk_size, offset, length)})
        started = self._ensure(local, chunks, wanted[:MAX_CHUNKS])
        if sha1 in self._last_asked:  # its whole upload waits for the reader to pause
            self._last_asked[sha1] = loop.time()
        if started and sha1 not in self._whole_asked and self._upload_whole:
            self._whole_asked.add(sha1)
            self._last_asked[sha1] = loop.time()
            self._spawn(self._whole_after(sha1, started))
        pending = [j for j in started if not j.done.is_set()]
        if pending and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(j.done.wait() for j in pending)), left)
        return answer("ready", size=chunks.size, chunkSize=chunks.chunk_size,
                      chunks=[j.wire() for j in started])

    async def _chunk_list(self, local: LocalFile, wait_sec: float) -> ChunkList | None:
        """The file's chunk list; None while it is still being computed after ``wait_sec``."""
        found = self._lists.get(local.sha1) or self._records.get(local.sha1, local.size)
        if found is not None and found.size == local.size:
            self._lists[local.sha1] = found
            self._lists.move_to_end(local.sha1)
            while len(self._lists) > KEEP_LISTS:
                self._lists.popitem(last=False)
            return found
        task = self._hashing.get(local.sha1)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(
                self._records.ensure, local.sha1, local.path, local.size))
            self._hashing[local.sha1] = task
            task.add_done_callback(self._hashed(local.sha1))
            log.info("computing the chunk list of sha1://%s (%d bytes)", local.sha1, local.size)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(task), wait_sec)
        return None

    def _hashed(self, sha1: str) -> Callable[[asyncio.Future[ChunkList]], None]:
        def done(task: asyncio.Future[ChunkList]) -> None:
            self._hashing.pop(sha1, None)
            if not task.cancelled() and task.exception() is not None:  # the next request
                log.warning("hashing sha1://%s failed: %s", sha1, task.exception())  # retries

        return done

    def _ensure(self, local: LocalFile, chunks: ChunkList, indices: list[int]) -> list[ChunkJob]:
        """The jobs of chunks ``indices``: the running ones joined, the others started
        together (one slot, one initiate, their PUTs in parallel: :meth:`_run`)."""
        jobs, new = [], []
        for i in indices:
            job = self._chunks.get((local.sha1, i))
            if job is None:
                job = self._chunks[(local.sha1, i)] = ChunkJob(local.sha1, i)
                new.append(job)
            jobs.append(job)
        if new:
            task = asyncio.get_running_loop().create_task(
                self._run(new, local, chunks), name=f"chunks {indices[0]}.. of {local.sha1}")
            for job in new:
                job.task = task
        return jobs

    async def _run(self, group: list[ChunkJob], local: LocalFile, chunks: ChunkList) -> None:
        by_index = {job.index: job for job in group}

        def uploaded(index: int) -> None:
            job = by_index[index]
            job.state, job.bytes_uploaded = UploadState.COMPLETED, chunks.span(index)[1]
            job.done.set()
            self._forget_later(job)

        try:
            async with self._jobs.slots.hold(urgent=True):
                for job in group:
                    job.state = UploadState.RUNNING
                self.chunk_uploads += len(group)
                await self._plan.upload_chunks(local, chunks, list(by_index), lambda n: None,
                                               uploaded)
            for job in group:  # the plan returned: every chunk is in the bucket
                if not job.done.is_set():
                    uploaded(job.index)
        except asyncio.CancelledError:
            self._fail_rest(group, "the resource daemon stopped during the upload")
            raise
        except FileChangedError as exc:
            with contextlib.suppress(OSError):  # the list no longer matches the file
                self._records.path(local.sha1).unlink()
            self._lists.pop(local.sha1, None)
            self._fail_rest(group, f"file changed: {exc}")
            log.warning("chunks of sha1://%s: %s", local.sha1, exc)
        except (KacheryResourceError, OSError) as exc:
            self._fail_rest(group, str(exc))
            log.warning("chunks of sha1://%s failed: %s", local.sha1, exc)
        except Exception as exc:  # a bug: report it to the reader instead of hanging
            self._fail_rest(group, f"internal error in the resource daemon: {exc!r}")
            log.exception("chunks of sha1://%s failed unexpectedly", local.sha1)

    def _fail_rest(self, group: list[ChunkJob], error: str) -> None:
        """Every job of ``group`` not uploaded yet ends in ``error``."""
        for job in group:
            if not job.done.is_set():
                self._fail(job, error)
                job.done.set()
                self._forget_later(job)

    def _fail(self, job: ChunkJob, error: str) -> None:
        job.state = UploadState.ERROR
        job.error = public_error(error)

    def _forget_later(self, job: ChunkJob) -> None:
        def forget() -> None:
            if self._chunks.get((job.sha1, job.index)) is job:
                del self._chunks[(job.sha1, job.index)]

        if job.state is UploadState.COMPLETED and self._keep_sec > 0:
            asyncio.get_running_loop().call_later(self._keep_sec, forget)
        else:
            forget()

    # -- the whole file, in the background ----------------------------------------------
    async def _whole_after(self, sha1: str, started: list[ChunkJob]) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(j.done.wait() for j in started))
        while (quiet := loop.time() - self._last_asked[sha1]) < WHOLE_AFTER_QUIET_SEC:
            await asyncio.sleep(WHOLE_AFTER_QUIET_SEC - quiet)  # the reader is still reading
        del self._last_asked[sha1]
        if all(j.state is UploadState.COMPLETED for j in started):
            self._whole.put_nowait(sha1)
            if self._worker is None:
                self._worker = self._spawn(self._upload_whole_files())
        else:
            self._whole_asked.discard(sha1)  # try again after a later request

    async def _upload_whole_files(self) -> None:
        """One whole-file upload at a time; each waits for a slot behind every chunk."""
        while True:
            sha1 = await self._whole.get()
            job = self._jobs.ensure_job(sha1)
            await job.done.wait()
            log.info("background upload of sha1://%s after its first ranges: %s", sha1,
                     job.state.value)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel every chunk job, hashing and background upload."""
        tasks = [*self._tasks, *self._hashing.values(),
                 *(j.task for j in self._chunks.values() if j.task is not None)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._chunks.clear()
