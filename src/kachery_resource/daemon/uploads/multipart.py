"""The multipart plan: resumable uploads of large files in parallel parts (gateway
extension ``multipartUpload``).

It takes files above ``multipartThreshold`` when the gateway's ``GET /api/info``
advertises ``multipartUpload``; otherwise the uploader gives them to the single plan.

0. Already there? ``findFile`` first, before resuming or starting parts.

1. Resume or start. The journal (:mod:`.journal`) may hold an upload of this hash from
   before a crash; if the file is unchanged (path, size, mtime) the gateway is asked
   which parts it holds (``listMultipartParts``) and only the others are sent. A changed
   file, or an upload the gateway no longer knows, discards the entry (and aborts the
   old upload); then ``initiateMultipartUpload`` starts a new one (part size: the
   setting, default 64 MiB, raised if needed to stay within the advertised
   ``maxParts``).
2. Send. ``multipartParallelParts`` parts are in flight at once, each a streaming PUT in
   a thread (:class:`.parts.PartPut`), ``multipartParallelBodies`` of them (default 1)
   streaming their body at a time while the others await the store's answer or their
   turn — so a crash loses less than that many parts' bytes. Each is retried on its own
   with backoff (a fresh URL after a 403). A part that moves no byte for
   ``uploadStallSec`` is cut and retried.
   Each acknowledged part is committed to the journal with its ETag.
3. Verify. The gateway verifies the whole file's size and sha1 at completion, before
   anything becomes visible; the daemon only checks the file's size and mtime did not
   move. With ``multipartHashLocally`` one sequential pass
   (:class:`.parts.SequentialHasher`) also hashes the whole file here while the parts go
   out, so a changed file is caught before completion (it costs a second read and a
   sha1 of the file on this machine).
4. ``completeMultipartUpload``; parts it reports missing are sent again. A sha1 the
   gateway refuses (``content_mismatch``), or a mismatch found here, is an
   IntegrityError: the upload is aborted (nothing visible, no parts) and forgotten.

Progress (``bytesUploaded``) = bytes of acknowledged parts + bytes sent of parts in
flight (a failed attempt takes its bytes back). When the daemon stops (Ctrl-C, SIGTERM)
during an upload, the upload is aborted — nothing visible, no parts left — and its
journal entry dropped; only a crash (``kill -9``, power loss) leaves it to be resumed.
A network failure that outlasts the retries also keeps the entry: the next request resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import ConfigError, FileChangedError, IntegrityError, UploadFailedError
from ...store import LocalFile
from .gateway import DaemonGateway, GatewayRefused
from .journal import JournalEntry, UploadJournal
from .multipart_api import MultipartApi, MultipartLimits
from .part_sender import PartSender, PartTools, Progress
from .retry import with_retries

log = logging.getLogger("kachery_resource.daemon")

MIB = 1024 * 1024


class MultipartSettings(BaseModel):
    """Optional ``kachery-resource.yaml`` keys for large uploads."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    threshold: int = Field(128 * MIB, alias="multipartThreshold", ge=0,
                           description="files larger than this many bytes go multipart")
    part_size: int = Field(64 * MIB, alias="multipartPartSize", ge=1,
                           description="bytes per part (kept within the gateway's limits)")
    parallel_parts: int = Field(4, alias="multipartParallelParts", ge=1, le=64,
                                description="parts in flight at once per upload")
    parallel_bodies: int = Field(1, alias="multipartParallelBodies", ge=1, le=64,
                                 description="of those, how many stream their body at once (the "
                                             "others await the store's answer or their turn); a "
                                             "crash re-sends at most the unsent rest of this many")
    stall_sec: float = Field(60.0, alias="uploadStallSec", gt=0,
                             description="a part that moves no byte this long is cut and retried")
    part_tries: int = Field(8, alias="multipartPartTries", ge=1,
                            description="attempts per part before the upload fails (resumable)")
    hash_locally: bool = Field(False, alias="multipartHashLocally",
                               description="also hash the whole file here while the parts go out "
                                           "(the gateway always verifies it before it is visible)")

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> MultipartSettings:
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"kachery-resource.yaml: {err['loc'][0]}: {err['msg']}") from None


def choose_part_size(size: int, wanted: int, limits: MultipartLimits) -> int:
    """``wanted`` within the gateway's part size limits, raised to keep ≤ ``max_parts`` parts."""
    part = max(limits.min_part_size, min(wanted, limits.max_part_size))
    if -(-size // part) > limits.max_parts:
        part = -(-size // limits.max_parts)
        part = -(-part // MIB) * MIB  # whole MiB
    if part > limits.max_part_size or size > limits.max_size:
        raise UploadFailedError(
            f"a {size}-byte file is larger than the gateway accepts "
            f"(at most {limits.max_size} bytes in {limits.max_parts} parts)", 413)
    return part


class MultipartPlan:
    """Large-file uploads in parts, resumable through the journal (one per daemon)."""

    def __init__(self, gateway: DaemonGateway, settings: MultipartSettings,
                 journal: UploadJournal | None = None, max_threads: int = 64) -> None:
        self.api = MultipartApi(gateway)
        self.settings = settings
        self.journal = journal
        self.threads = ThreadPoolExecutor(max_threads, thread_name_prefix="part")
        self._tools = PartTools(self.api, settings, journal, self.threads)

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        if self.journal is not None:
            self.journal.close()

    async def limits(self) -> MultipartLimits | None:
        """The gateway's multipart limits, None when it does not support multipart."""
        info = await with_retries("GET /api/info", self.api.gateway.capabilities)
        return MultipartLimits.from_info(info)

    async def wants(self, local: LocalFile) -> bool:
        """Whether ``local`` goes multipart (big enough, and the gateway supports it)."""
        return local.size > self.settings.threshold and await self.limits() is not None

    async def upload(self, local: LocalFile, progress: Progress) -> bool:
        """Upload ``local`` in parts, resuming from the journal; False if the gateway had it."""
        if await with_retries(f"findFile sha1://{local.sha1}",
                              lambda: self.api.gateway.find_file(local.sha1)):
            progress(local.size)
            return False
        limits = await self.limits()
        if limits is None:
            raise UploadFailedError(f"the gateway {self.api.gateway.url} has no multipart uploads")
        st = await asyncio.to_thread(os.stat, local.path)
        if st.st_size != local.size:
            raise FileChangedError(f"{local.path} now has {st.st_size} bytes, not {local.size}; "
                                   "link it again")
        prepared = await self._resume_or_start(local, st.st_mtime_ns, limits)
        if prepared is None:
            progress(local.size)  # the gateway already has it
            return False
        entry, done = prepared
        sender = PartSender(self._tools, entry, local, progress, done)
        try:
            await sender.send_all()
            await self._complete(sender, entry)
        except asyncio.CancelledError:
            await self._discard(entry, "the daemon is stopping")
            raise
        except (IntegrityError, FileChangedError) as exc:
            await self._discard(entry, str(exc))
            raise
        except GatewayRefused as exc:
            if exc.code in ("upload_missing", "content_mismatch"):
                await self._forget(entry)
            raise
        await self._forget(entry)
        return True

    async def _resume_or_start(self, local: LocalFile, mtime_ns: int, limits: MultipartLimits
                               ) -> tuple[JournalEntry, dict[int, str]] | None:
        entry = await self._journal_entry(local.sha1)
        if entry is not None:
            if (entry.path, entry.size, entry.mtime_ns) == (str(local.path), local.size, mtime_ns):
                done = await self._parts_in_store(entry)
                if done is not None:
                    log.info("resuming upload of sha1://%s: %d of %d parts already stored",
                             local.sha1, len(done), entry.num_parts)
                    return entry, done
            else:
                await self._discard(entry, f"{local.path} changed since the upload began")
        part_size = choose_part_size(local.size, self.settings.part_size, limits)
        answer = await with_retries(f"initiateMultipartUpload sha1://{local.sha1}",
                                    lambda: self.api.initiate(local.sha1, local.size, part_size))
        if answer.get("alreadyExists"):
            return None
        entry = JournalEntry(
            gateway=self.api.gateway.url, zone=self.api.gateway.zone, sha1=local.sha1,
            path=str(local.path), size=local.size, mtime_ns=mtime_ns,
            object_key=str(answer["objectKey"]), part_size=int(answer["partSize"]),
            num_parts=int(answer["numParts"]))
        if self.journal is not None:
            entry = await asyncio.to_thread(self.journal.start, entry)
        log.info("multipart upload of sha1://%s: %d parts of %d bytes", local.sha1,
                 entry.num_parts, entry.part_size)
        return entry, {}

    async def _journal_entry(self, sha1: str) -> JournalEntry | None:
        if self.journal is None:
            return None
        gateway = self.api.gateway
        return await asyncio.to_thread(self.journal.find, gateway.url, gateway.zone, sha1)

    async def _parts_in_store(self, entry: JournalEntry) -> dict[int, str] | None:
        """Parts the store holds with the right size (and the journal's ETag if it has one);
        None when the gateway no longer knows the upload (the entry is then dropped)."""
        try:
            listed = await with_retries("listMultipartParts",
                                        lambda: self.api.parts(entry.sha1, entry.object_key))
        except GatewayRefused as exc:
            if exc.code not in ("upload_missing", "object_key_mismatch", "invalid_key"):
                raise
            log.info("journal entry for sha1://%s is stale (%s); starting over", entry.sha1, exc.code)
            await self._forget(entry)
            return None
        journaled = (await asyncio.to_thread(self.journal.parts, entry.object_key)
                     if self.journal is not None else {})
        done: dict[int, str] = {}
        for number, (size, etag) in listed.items():
            known = journaled.get(number)
            if size == entry.part_size_of(number) and (known is None or known.etag == etag):
                done[number] = etag
        return done

    async def _complete(self, sender: PartSender, entry: JournalEntry) -> None:
        timeout = 120 + entry.size / (40 * MIB)  # the gateway reads the whole object back
        for round_ in range(3):
            try:
                await with_retries(
                    "completeMultipartUpload",
                    lambda: self.api.complete(entry.sha1, entry.object_key, entry.size, timeout))
                log.debug("multipart upload of sha1://%s completed", entry.sha1)
                return
            except GatewayRefused as exc:
                if exc.code == "content_mismatch":
                    raise IntegrityError(
                        f"file changed: {sender.local.path} no longer hashes to {entry.sha1} (the "
                        f"gateway refused it: {exc}); the upload was dropped and nothing stored — "
                        "link or store it again") from exc
                if exc.code != "multipart_incomplete" or round_ == 2:
                    raise
            listed = await with_retries("listMultipartParts",
                                        lambda: self.api.parts(entry.sha1, entry.object_key))
            missing = [n for n in range(1, entry.num_parts + 1)
                       if listed.get(n, (-1, ""))[0] != entry.part_size_of(n)]
            log.warning("the gateway lacks parts %s of sha1://%s; sending them again",
                        missing[:20], entry.sha1)
            await sender.resend(missing)

    async def _forget(self, entry: JournalEntry) -> None:
        if self.journal is not None:
            await asyncio.to_thread(self.journal.remove, entry)

    async def _discard(self, entry: JournalEntry, why: str) -> None:
        """Abort the upload at the gateway (best effort, bounded) and drop its journal entry."""
        log.info("aborting multipart upload of sha1://%s: %s", entry.sha1, why)
        try:
            await asyncio.wait_for(self.api.abort(entry.sha1, entry.object_key), 15)
        except GatewayRefused as exc:
            if exc.code != "upload_missing":
                log.warning("could not abort the upload of sha1://%s: %s", entry.sha1, exc)
        except Exception as exc:
            log.warning("could not abort the upload of sha1://%s: %r (the gateway drops it "
                        "after its stagingMaxAgeSec)", entry.sha1, exc)
        with contextlib.suppress(Exception):
            await self._forget(entry)
