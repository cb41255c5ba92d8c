"""The chunks plan: the fixed-size, aligned chunks of a file that cover a reader's range,
each uploaded as an object of its own (docs/design-chunks.md).

Before the first chunk of a file the signed chunk list goes up once per gateway
(``initiateChunkList``, one PUT of the document, ``finalizeChunkList``: the gateway checks
the document and its signature). Then for each chunk asked for: its bytes are read
(``os.pread`` in a thread, one chunk at most in memory per chunk in flight) and hashed —
bytes that do not hash to the list's entry mean the file changed since it was hashed:
FileChangedError, nothing sent — then one PUT to the chunk's signed URL (with the signed
headers of a store-verified upload when the gateway gives them) and
``finalizeChunkUpload``, where the gateway checks the chunk against the list before it
becomes readable. ``parallel`` chunks are in flight at once; each chunk is retried with
the layer's one policy (:mod:`.retry`); a refusal (e.g. ``content_mismatch``) is not.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ...chunking import ChunkList
from ...errors import FileChangedError, UploadFailedError
from ...store import LocalFile
from .chunks_api import MAX_INDICES, ChunksApi, offers_chunks
from .gateway import DaemonGateway, UploadTarget
from .put import put_bytes
from .retry import TransientError, with_retries

log = logging.getLogger("kachery_resource.daemon")

Progress = Callable[[int], None]


class ChunksPlan:
    """Uploads chunks of files; one per daemon and gateway."""

    def __init__(self, gateway: DaemonGateway, parallel: int = 4) -> None:
        self.gateway = gateway
        self.api = ChunksApi(gateway)
        self.parallel = parallel
        self._listed: set[str] = set()  # sha1s whose list the gateway has
        self._list_locks: dict[str, asyncio.Lock] = {}

    async def offered(self) -> bool:
        """Whether the gateway takes chunks (its ``/api/info`` lists them)."""
        return offers_chunks(await with_retries("GET /api/info", self.gateway.capabilities))

    async def upload_chunks(self, local: LocalFile, chunks: ChunkList, indices: Iterable[int],
                            progress: Progress,
                            uploaded: Callable[[int], None] | None = None) -> dict[int, bool]:
        """Upload chunks ``indices`` of ``local``; for each, False when the gateway already
        had it (nothing sent). ``uploaded`` is told each index once its chunk is readable."""
        if chunks.sha1 != local.sha1 or chunks.size != local.size:
            raise ValueError(f"the chunk list of sha1://{chunks.sha1} is not {local.path}'s")
        wanted = sorted(set(indices))
        for i in wanted:
            chunks.span(i)  # IndexError for a chunk the file does not have
        await self.register(chunks)
        gate = asyncio.Semaphore(self.parallel)
        sent: dict[int, bool] = {}
        for start in range(0, len(wanted), MAX_INDICES):
            batch = wanted[start:start + MAX_INDICES]
            targets = await with_retries(f"initiateChunkUpload sha1://{chunks.sha1}",
                                         functools.partial(self.api.initiate_chunks, chunks, batch))
            await _all(self._send_in_turn(gate, sent, local, chunks, i, t, progress, uploaded)
                       for i, t in targets.items())
        return sent

    async def _send_in_turn(self, gate: asyncio.Semaphore, sent: dict[int, bool],
                            local: LocalFile, chunks: ChunkList, index: int,
                            target: UploadTarget, progress: Progress,
                            uploaded: Callable[[int], None] | None) -> None:
        async with gate:
            sent[index] = await self._send_chunk(local, chunks, index, target, progress)
        if uploaded is not None:
            uploaded(index)

    async def register(self, chunks: ChunkList) -> None:
        """Put the signed chunk list in the gateway's hands (once per sha1)."""
        if chunks.sha1 in self._listed:
            return
        async with self._list_locks.setdefault(chunks.sha1, asyncio.Lock()):
            if chunks.sha1 in self._listed:
                return
            doc = chunks.signed(self.gateway.keys, self.gateway.zone)
            doc_sha1 = hashlib.sha1(doc).hexdigest()

            async def attempt() -> None:
                target = await self.api.initiate_list(chunks, doc_sha1, len(doc))
                if target.already_exists:
                    return
                await put_bytes(self.gateway.session, target.url, doc, target.headers)
                await self.api.finalize_list(chunks, target.object_key, doc_sha1, len(doc))

            await with_retries(f"chunk list of sha1://{chunks.sha1}", attempt)
            self._listed.add(chunks.sha1)

    async def _send_chunk(self, local: LocalFile, chunks: ChunkList, index: int,
                          first: UploadTarget, progress: Progress) -> bool:
        offset, length = chunks.span(index)
        data = await asyncio.to_thread(_read_chunk, local, offset, length)
        if hashlib.sha1(data).hexdigest() != chunks.sha1_of(index):
            raise FileChangedError(f"{local.path} changed since it was hashed (chunk {index} "
                                   f"no longer matches sha1://{local.sha1}); link it again")
        target: UploadTarget | None = first

        async def attempt() -> bool:
            nonlocal target
            if target is None:  # a retry: a fresh URL
                target = (await self.api.initiate_chunks(chunks, [index]))[index]
            t, target = target, None
            if t.already_exists:
                return False
            try:
                await put_bytes(self.gateway.session, t.url, data, t.headers)
            except UploadFailedError as exc:
                if not (t.headers and exc.status == 403):
                    raise
                self.gateway.stop_upload_headers(f"a store-verified chunk PUT was refused ({exc})")
                raise TransientError(str(exc)) from exc
            await self.api.finalize_chunk(chunks, index, t.object_key)
            return True

        sent = await with_retries(f"chunk {index} of sha1://{local.sha1}", attempt)
        progress(length)
        return sent


def _read_chunk(local: LocalFile, offset: int, length: int) -> bytes:
    fd = os.open(local.path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise FileChangedError(f"{local.path} became shorter; link it again")
    return data


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` together; the first failure cancels the others."""
    running = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*running)
    except BaseException:
        for r in running:
            r.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
