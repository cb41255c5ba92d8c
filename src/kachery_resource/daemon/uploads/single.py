"""The single plan: a whole file in one PUT (kachery-cloud's own way, any gateway).

``initiateFileUpload`` (an object that already exists: nothing to do), one PUT to the
signed URL, ``finalizeFileUpload``. A small file is read, hashed and sent in one piece
on the event loop; a larger one streams from a worker thread that reads, hashes and
sends in a single pass (:mod:`.put`): if the bytes do not hash to the requested sha1 the
PUT is cut short before its last byte, so nothing becomes visible, and finalize is never
called. With the signed headers of a store-verified upload (see :mod:`.gateway`) the PUT
goes straight to the content key and finalize only confirms it; a 403 on such a PUT (a
proxy on the way that drops headers) turns the opt-in off and the upload is retried the
staged way. The whole upload is retried with backoff (:mod:`.retry`) on transient failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ...errors import IntegrityError, UploadFailedError
from ...store import LocalFile
from .gateway import DaemonGateway, UploadTarget
from .put import Put, check_put_status, put_bytes
from .retry import TransientError, with_retries

SMALL_FILE = 256 * 1024  # up to this size: read, hash and PUT in one piece on the loop
Progress = Callable[[int], None]


class SinglePlan:
    """Uploads a file with one PUT; takes any file (the plan of last resort)."""

    def __init__(self, gateway: DaemonGateway, max_threads: int = 64) -> None:
        self.gateway = gateway
        self.threads = ThreadPoolExecutor(max_threads, thread_name_prefix="upload")

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def wants(self, local: LocalFile) -> bool:
        return True

    async def upload(self, local: LocalFile, progress: Progress) -> bool:
        """Upload ``local`` unless the gateway has it (then False, and nothing is sent)."""
        sent = 0
        sent_whole = False  # by an earlier attempt whose finalize then failed

        def counted(n: int) -> None:
            nonlocal sent
            sent += n
            progress(n)

        async def attempt() -> bool:
            nonlocal sent, sent_whole
            if sent:
                sent_whole = sent_whole or sent == local.size
                progress(-sent)  # a retry starts from zero again
                sent = 0
            # a store-verified PUT is in the bucket already: this daemon did send it
            return await self._upload_once(local, counted) or sent_whole

        return await with_retries(f"upload of sha1://{local.sha1}", attempt)

    async def _upload_once(self, local: LocalFile, progress: Progress) -> bool:
        target = await self.gateway.initiate(local.sha1, local.size)
        if target.already_exists:
            progress(local.size)
            return False
        try:
            if local.size <= SMALL_FILE:
                await self._put_small(local, target, progress)
            else:
                await self._put(local, target, progress)
        except UploadFailedError as exc:
            if not (target.headers and exc.status == 403):
                raise
            # a proxy on the way that drops headers, or a store that changed its mind
            self.gateway.stop_upload_headers(f"a store-verified upload PUT was refused ({exc})")
            raise TransientError(str(exc)) from exc
        await self.gateway.finalize(local.sha1, local.size, target.object_key)
        return True

    async def _put_small(self, local: LocalFile, target: UploadTarget, progress: Progress) -> None:
        """A small file in one piece on the event loop (keep-alive connection, no thread)."""
        with open(local.path, "rb") as f:
            data = f.read(local.size + 1)
        if len(data) != local.size or hashlib.sha1(data).hexdigest() != local.sha1:
            raise IntegrityError(
                f"file changed: {local.path} no longer holds the {local.size} bytes of "
                f"sha1 {local.sha1}; nothing was stored — link or store it again"
            )
        await put_bytes(self.gateway.session, target.url, data, target.headers)
        progress(local.size)

    async def _put(self, local: LocalFile, target: UploadTarget, progress: Progress) -> None:
        loop = asyncio.get_running_loop()

        def progress_from_thread(n: int) -> None:
            loop.call_soon_threadsafe(progress, n)

        put = Put(target.url, local, progress_from_thread, target.headers)
        future = loop.run_in_executor(self.threads, put.run)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            put.abort()  # the thread stops within one block; finalize is never called
            with contextlib.suppress(Exception):
                await future
            raise
        except OSError as exc:
            if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                raise
            raise TransientError(f"upload PUT failed: {exc!r}") from exc
        except http.client.HTTPException as exc:
            raise TransientError(f"upload PUT failed: {exc!r}") from exc
        finally:  # a failed future holds its exception, whose traceback holds this frame:
            del future  # a cycle, which kept the PUT's read buffers until the collector ran
        check_put_status(result.status, result.body)
