"""Upload jobs: one job per hash however many requests ask, a FIFO limit on running uploads.

A request for a hash joins the job for that hash, or starts one; then it waits up to its
own timeout for the job to finish and answers with the job's status at that moment.

A job goes through the states of :class:`UploadState`::

    QUEUED ──► RUNNING ──► COMPLETED
      │           └──────► ERROR
      ├──► NOT_FOUND      (no store copy and no valid linked file)
      ├──► COMPLETED      (the gateway already has the object)
      └──► ERROR          (the linked file changed or cannot be read)

The gateway is asked whether it has the object before the job waits for a slot; with a
slot free the upload's own first call answers that (``initiateFileUpload`` reports an
object that exists), so a cold request makes one gateway round trip fewer.

Finished NOT_FOUND/ERROR jobs are forgotten at once (the next request looks again);
COMPLETED jobs are remembered for ``keep_completed_sec`` so repeated polls answer at once.

Errors go to remote users without the owner's absolute paths (:func:`public_error`: a
path is cut to its last component); the daemon's own log keeps them whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import FileChangedError, KacheryResourceError
from ..messages import UploadState, UploadStatus
from ..store import LocalFile
from .slots import Slots

log = logging.getLogger("kachery_resource.daemon")
# a quoted absolute path as repr() writes it (either quote; the other may stand inside)
_QUOTED_PATH = re.compile(r"'(/(?:[^'\\\n]|\\.)*)'" + r'|"(/(?:[^"\\\n]|\\.)*)"')
_ABS_PATH = re.compile(r"(?<![\w:/.~])/(?:[^\s/'\"(),;:]+/)+(?=[^\s/'\"(),;:]*)")
NOT_FOUND: dict[str, Any] = {"status": UploadState.NOT_FOUND.value}

Resolver = Callable[[str], Awaitable[LocalFile | None]]
"""Find the local file holding a sha1 (None: not here); may raise FileChangedError."""


class Uploader(Protocol):
    """What a job needs from the gateway side (see :mod:`.uploads.uploader`)."""

    async def is_in_bucket(self, sha1: str) -> bool: ...

    async def upload(self, local: LocalFile, progress: Callable[[int], None]) -> bool:
        """Upload ``local``; False when the gateway already had it (nothing sent)."""
        ...


def public_error(text: str, path: Path | None = None) -> str:
    """``text`` with every absolute path cut to its last component (``…/name``): remote
    users see which file, never where it lives on the owner's machine. ``path``, the
    job's file, is cut wherever it appears, spaces and all."""
    if path is not None:
        text = text.replace(str(path), f"…/{path.name}")
    return _ABS_PATH.sub("…/", _QUOTED_PATH.sub(_last_component, text))


def _last_component(match: re.Match[str]) -> str:
    quote = "'" if match.group(1) is not None else '"'
    path = match.group(1) if match.group(1) is not None else match.group(2)
    return f"{quote}…/{path.rstrip('/').rsplit('/', 1)[-1]}{quote}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class UploadJob:
    """The one upload of one hash, and what its requests are told about it."""

    sha1: str
    state: UploadState = UploadState.QUEUED
    size: int | None = None
    bytes_uploaded: int = 0
    timestamp_requested: int = field(default_factory=now_ms)
    timestamp_started: int | None = None
    timestamp_completed: int | None = None
    error: str | None = None
    sent: bool = False  # bytes went to the bucket (not: it was there already)
    path: Path | None = None  # the local file, once found
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def add_progress(self, nbytes: int) -> None:
        self.bytes_uploaded += nbytes

    def finish(self, state: UploadState, error: str | None = None) -> None:
        self.state = state
        self.error = None if error is None else public_error(error, self.path)
        if state is UploadState.COMPLETED:
            self.timestamp_completed = now_ms()
            if self.size is not None:
                self.bytes_uploaded = self.size
        self.done.set()

    def wire_status(self) -> dict[str, Any]:
        """A snapshot in the wire shape of ``UploadStatus`` (v1 fields that are set)."""
        if self.state is UploadState.NOT_FOUND:
            return dict(NOT_FOUND)
        status: dict[str, Any] = {"status": self.state.value}
        if self.size is not None:
            status["size"] = self.size
            status["bytesUploaded"] = self.bytes_uploaded
        status["timestampRequested"] = self.timestamp_requested
        for key, value in (("timestampStarted", self.timestamp_started),
                           ("timestampCompleted", self.timestamp_completed),
                           ("error", self.error)):
            if value is not None:
                status[key] = value
        return status


class JobManager:
    """Owns every upload job; at most ``max_concurrent`` run, first come first served."""

    def __init__(
        self,
        resolve: Resolver,
        uploader: Uploader,
        max_concurrent: int,
        *,
        keep_completed_sec: float = 60.0,
        is_absent: Callable[[str], bool] | None = None,
        on_finished: Callable[[UploadJob], None] | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._resolve = resolve
        self._uploader = uploader
        #: shared with the chunk jobs (daemon/ranges.py), which go first
        self.slots = Slots(max_concurrent)
        self._jobs: dict[str, UploadJob] = {}
        self._keep_completed_sec = keep_completed_sec
        self._is_absent = is_absent
        self._on_finished = on_finished
        self.uploads_started = 0
        self.running = 0
        self.max_running_seen = 0

    def job(self, sha1: str) -> UploadJob | None:
        return self._jobs.get(sha1)

    def ensure_job(self, sha1: str) -> UploadJob:
        """The live job for ``sha1``, starting one if there is none (never two)."""
        job = self._jobs.get(sha1)
        if job is not None:
            return job
        job = UploadJob(sha1)
        self._jobs[sha1] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"upload {sha1}")
        return job

    def poll(self, sha1: str, wait_sec: float) -> dict[str, Any] | UploadJob:
        """Join or start the job for ``sha1``: its wire status if the answer is due now (the
        job finished, or no wait), else the job to :meth:`wait` for. A hash the store does
        not have is answered ``not-found`` with no job at all."""
        job = self._jobs.get(sha1)
        if job is None:
            if self._is_absent is not None and self._is_absent(sha1):
                return dict(NOT_FOUND)
            job = self.ensure_job(sha1)
        if job.finished or wait_sec <= 0:
            return job.wire_status()
        return job

    @staticmethod
    async def wait(job: UploadJob, wait_sec: float) -> dict[str, Any]:
        """Wait up to ``wait_sec`` for ``job`` to finish; its wire status then."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.done.wait(), wait_sec)
        return job.wire_status()

    async def request(self, sha1: str, timeout_sec: float) -> UploadStatus:
        """Join or start the job for ``sha1``; wait up to ``timeout_sec``; return its status."""
        now = self.poll(sha1, timeout_sec)
        status = await self.wait(now, timeout_sec) if isinstance(now, UploadJob) else now
        return UploadStatus.model_validate(status)

    async def close(self) -> None:
        """Cancel every job (running uploads are aborted; nothing is finalized)."""
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._jobs.clear()

    # -- one job -------------------------------------------------------------------
    async def _run(self, job: UploadJob) -> None:
        t0 = time.monotonic()
        try:
            local = await self._resolve(job.sha1)
            if local is None:
                job.finish(UploadState.NOT_FOUND)
                return
            job.path = local.path
            job.size = local.size
            sent = False
            if not (self.slots.locked() and await self._uploader.is_in_bucket(job.sha1)):
                async with self.slots.hold():
                    self._mark_running(job)
                    try:
                        sent = await self._uploader.upload(local, job.add_progress)
                    finally:
                        self.running -= 1
            job.sent = sent
            job.finish(UploadState.COMPLETED)
            if sent:
                _log_upload(job, "completed", time.monotonic() - t0)
            else:
                log.info("upload sha1://%s size=%d already in bucket", job.sha1, local.size)
        except asyncio.CancelledError:
            job.finish(UploadState.ERROR, "the resource daemon stopped during the upload")
            _log_upload(job, "aborted", time.monotonic() - t0)
            raise
        except FileChangedError as exc:
            job.finish(UploadState.ERROR, f"file changed: {exc}")
            log.warning("stale link record for sha1://%s: %s", job.sha1, exc)
        except KacheryResourceError as exc:
            job.finish(UploadState.ERROR, str(exc))
            _log_upload(job, f"error: {exc}", time.monotonic() - t0)
        except OSError as exc:  # strerror only: the exception's text holds the whole path
            job.finish(UploadState.ERROR, f"cannot read the file for sha1://{job.sha1} "
                                          f"(…/{job.path.name if job.path else '?'}): "
                                          f"{exc.strerror or type(exc).__name__}")
            _log_upload(job, f"error: {exc}", time.monotonic() - t0)
        except Exception as exc:  # a bug: report it to the client instead of hanging
            job.finish(UploadState.ERROR, "internal error in the resource daemon "
                                          f"({type(exc).__name__}); its log says more")
            log.exception("upload of sha1://%s failed unexpectedly", job.sha1)
        finally:
            self._forget_later(job)
            if self._on_finished is not None and job.finished:
                self._on_finished(job)

    def _mark_running(self, job: UploadJob) -> None:
        job.state = UploadState.RUNNING
        job.timestamp_started = now_ms()
        self.uploads_started += 1
        self.running += 1
        self.max_running_seen = max(self.max_running_seen, self.running)
        log.debug("upload sha1://%s started (%d running)", job.sha1, self.running)

    def _forget_later(self, job: UploadJob) -> None:
        if job.state is UploadState.COMPLETED and self._keep_completed_sec > 0:
            asyncio.get_running_loop().call_later(self._keep_completed_sec, self._forget, job)
        else:
            self._forget(job)

    def _forget(self, job: UploadJob) -> None:
        if self._jobs.get(job.sha1) is job:
            del self._jobs[job.sha1]


def _log_upload(job: UploadJob, outcome: str, seconds: float) -> None:
    size = job.size or 0
    rate = job.bytes_uploaded / seconds / 1e6 if seconds > 0 else 0.0
    level = logging.INFO if outcome == "completed" else logging.WARNING  # failures show at once
    log.log(level, "upload sha1://%s size=%d %s in %.3f s (%.1f MB/s)", job.sha1, size, outcome,
            seconds, rate)
