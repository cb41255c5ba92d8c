"""Uploading a local file to the zone's bucket, in-process, like a kachery-cloud client.

Gateway calls are signed with the daemon's own client keys (``identity.signed_envelope``):
``findFile`` first (already in the bucket → nothing to do), then ``initiateFileUpload``,
one streaming PUT to the signed URL that reads, hashes and sends in a single pass, and
``finalizeFileUpload``. The PUT itself is :mod:`.put` (a worker thread): if the bytes do
not hash to the requested sha1 it is cut short before its last byte, so nothing becomes
visible, and finalize is never called. A gateway whose ``GET /api/info`` lists
``uploadHeaders`` is told the daemon sends the headers it asks for; on a store that checks
``x-amz-checksum-sha1`` it then signs the PUT straight to the content key (the store
refuses other bytes), and finalize only confirms the object: no read-back, no copy.
Transient failures (connection errors, 429/502/503/504) are retried with backoff.
Files above ``multipartThreshold`` go to :mod:`.multipart` instead (parallel parts,
resumable) when the gateway supports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from ..env_proxy import proxy_for
from ..errors import GatewayError, IntegrityError, UploadFailedError, connection_problem
from ..identity import ClientKeys, signed_envelope
from ..store import LocalFile
from .put import Put

if TYPE_CHECKING:
    from .multipart import MultipartUploader

log = logging.getLogger("kachery_resource.daemon")

SMALL_FILE = 256 * 1024  # up to this size: read, hash and PUT in one piece on the loop
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
GATEWAY_TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
INFO_CACHE_SEC = 600.0  # how long the gateway's /api/info answer is trusted
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,1000}")
_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")
T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying (network trouble, overloaded server)."""


@dataclass(frozen=True)
class UploadTarget:
    """What initiateFileUpload answered."""

    already_exists: bool
    object_key: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # to send with the PUT


class GatewayClient:
    """Signed calls to ``POST {gateway}/api/gateway`` as a kachery-cloud client."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, keys: ClientKeys, zone: str
    ) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.keys = keys
        self.zone = zone
        self._info: dict[str, Any] = {}
        self._info_at = -INFO_CACHE_SEC
        self.upload_headers = True  # opt in to store-verified uploads where offered

    async def info(self) -> dict[str, Any]:
        """``GET /api/info`` ({} from a gateway that has none, like kachery-cloud's)."""
        url = f"{self.url}/api/info"
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=30),
                                        proxy=proxy_for(url)) as resp:
                if resp.status in GATEWAY_TRANSIENT_STATUSES:
                    raise TransientError(f"GET {url} answered {resp.status}")
                if resp.status != 200:
                    return {}
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"cannot reach gateway {url}: {connection_problem(exc)}") from exc
        try:
            return _json_object(text)
        except ValueError:
            return {}

    async def capabilities(self) -> dict[str, Any]:
        """:meth:`info`, asked again after ``INFO_CACHE_SEC``."""
        if time.monotonic() - self._info_at > INFO_CACHE_SEC:
            self._info = await self.info()
            self._info_at = time.monotonic()
        return self._info

    async def call(self, payload: dict[str, Any]) -> dict[str, Any]:
        body = signed_envelope(self.keys, payload)
        what = str(payload.get("type"))
        url = f"{self.url}/api/gateway"
        try:
            async with self.session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=60), proxy=proxy_for(url)
            ) as resp:
                text = await resp.text()
                if resp.status != 200:
                    message = f"gateway {self.url} refused {what} ({resp.status}): {text[:500]}"
                    if resp.status in GATEWAY_TRANSIENT_STATUSES:
                        raise TransientError(message)
                    raise GatewayError(message, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"cannot reach gateway {self.url} ({what}): {connection_problem(exc)}") from exc
        try:
            data = _json_object(text)
        except ValueError:
            raise GatewayError(f"gateway {self.url} answered {what} with invalid JSON") from None
        return data

    async def client_info(self) -> dict[str, Any] | None:
        """This client's registration in the zone, or None when it is not registered."""
        data = await self.call(
            {"type": "getClientInfo", "clientId": self.keys.client_id, "zone": self.zone}
        )
        return data if data.get("found") else None

    async def find_file(self, sha1: str) -> bool:
        data = await self.call({"type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": self.zone})
        return bool(data.get("found"))

    def stop_upload_headers(self, why: str) -> None:
        """Upload the staged way from now on (a gateway or the path to the store refused
        the store-verified way)."""
        if self.upload_headers:
            log.warning("%s; uploads go the staged way from now on", why)
        self.upload_headers = False

    async def _opts_in(self) -> bool:
        if not self.upload_headers:
            return False
        try:
            return (await self.capabilities()).get("uploadHeaders") is True
        except TransientError:  # /api/info is only needed for the opt-in
            return False

    async def initiate(self, sha1: str, size: int) -> UploadTarget:
        payload: dict[str, Any] = {"type": "initiateFileUpload", "size": size, "hashAlg": "sha1",
                                   "hash": sha1, "zone": self.zone}
        opt_in = await self._opts_in()
        if opt_in:
            payload["acceptsUploadHeaders"] = True
        try:
            data = await self.call(payload)
        except GatewayError as exc:  # e.g. an older instance behind the same load balancer
            if not (opt_in and exc.status == 400 and "acceptsUploadHeaders" in str(exc)):
                raise
            self.stop_upload_headers(f"gateway {self.url} refused acceptsUploadHeaders")
            return await self.initiate(sha1, size)
        if data.get("alreadyExists"):
            return UploadTarget(already_exists=True)
        key, url = data.get("objectKey"), data.get("signedUploadUrl")
        if not (isinstance(key, str) and isinstance(url, str)):
            raise GatewayError(f"gateway {self.url} answered initiateFileUpload without a URL")
        headers = data.get("signedUploadHeaders") or {}
        if not (isinstance(headers, dict) and all(
                isinstance(k, str) and _HEADER_NAME.fullmatch(k) and isinstance(v, str)
                and _HEADER_VALUE.fullmatch(v) for k, v in headers.items())):
            raise GatewayError(f"gateway {self.url} answered initiateFileUpload with "
                               "signedUploadHeaders that are not HTTP headers")
        return UploadTarget(False, key, url, headers)

    async def finalize(self, sha1: str, size: int, object_key: str) -> None:
        await self.call({
            "type": "finalizeFileUpload", "objectKey": object_key, "hashAlg": "sha1",
            "hash": sha1, "zone": self.zone, "size": size,
        })


def _json_object(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


async def with_retries(
    what: str, attempt: Callable[[], Awaitable[T]], tries: int = 4, first_delay: float = 0.5
) -> T:
    """Run ``attempt``; on TransientError wait (exponential, jittered) and try again."""
    delay = first_delay
    for n in range(1, tries + 1):
        try:
            return await attempt()
        except TransientError as exc:
            if n == tries:
                raise UploadFailedError(f"{what} failed after {tries} tries: {exc}") from exc
            log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


class GatewayUploader:
    """Implements the jobs' ``Uploader``: bucket lookups and verified streaming uploads."""

    def __init__(self, gateway: GatewayClient, max_threads: int = 64,
                 multipart: MultipartUploader | None = None) -> None:
        self.gateway = gateway
        self.multipart = multipart  # large files, when the gateway supports it
        self._threads = ThreadPoolExecutor(max_threads, thread_name_prefix="upload")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self.multipart is not None:
            self.multipart.close()

    async def is_in_bucket(self, sha1: str) -> bool:
        return await with_retries(f"findFile sha1://{sha1}", lambda: self.gateway.find_file(sha1))

    async def upload(self, local: LocalFile, progress: Callable[[int], None]) -> bool:
        """Upload ``local`` unless the gateway has it (then False, and nothing is sent)."""
        if self.multipart is not None and await self.multipart.wants(local):
            if await self.is_in_bucket(local.sha1):  # before resuming or starting parts
                progress(local.size)
                return False
            return await self.multipart.upload(local, progress)  # retries per part, resumable
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

    async def _upload_once(self, local: LocalFile, progress: Callable[[int], None]) -> bool:
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

    async def _put_small(self, local: LocalFile, target: UploadTarget,
                         progress: Callable[[int], None]) -> None:
        """A small file in one piece on the event loop (keep-alive connection, no thread)."""
        with open(local.path, "rb") as f:
            data = f.read(local.size + 1)
        if len(data) != local.size or hashlib.sha1(data).hexdigest() != local.sha1:
            raise IntegrityError(
                f"file changed: {local.path} no longer holds the {local.size} bytes of "
                f"sha1 {local.sha1}; nothing was stored — link or store it again"
            )
        url = target.url
        try:
            async with self.gateway.session.put(
                url, data=data, headers=target.headers, timeout=aiohttp.ClientTimeout(total=120),
                proxy=proxy_for(url)
            ) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"upload PUT failed: {exc!r}") from exc
        _check_put_status(resp.status, text)
        progress(local.size)

    async def _put(self, local: LocalFile, target: UploadTarget,
                   progress: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()

        def progress_from_thread(n: int) -> None:
            loop.call_soon_threadsafe(progress, n)

        put = Put(target.url, local, progress_from_thread, target.headers)
        future = loop.run_in_executor(self._threads, put.run)
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
        _check_put_status(result.status, result.body)


def _check_put_status(status: int, body: str) -> None:
    if not 200 <= status < 300:
        code, said = _S3_CODE.search(body), _S3_MESSAGE.search(body)
        if code:  # an S3 error document: its code and message, not the XML
            body = code.group(1) + (f": {said.group(1)}" if said else "")
        message = f"upload PUT answered {status}: {body[:300]}"
        if status in TRANSIENT_STATUSES:
            raise TransientError(message)
        raise UploadFailedError(message, status)
