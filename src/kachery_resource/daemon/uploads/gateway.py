"""The zone gateway as the daemon sees it: signed ``POST {gateway}/api/gateway`` calls.

Every gateway request type the daemon sends (``getClientInfo``, ``findFile``, the file
upload requests here, the multipart requests of :mod:`.multipart_api`) goes through
:meth:`DaemonGateway.call`, signed with the daemon's own client keys
(``identity.signed_envelope``). A call fails with :class:`.retry.TransientError` when
retrying may cure it (no connection, timeout, 408/429/502/503/504) and with
``GatewayRefused`` (its ``code`` from the answer's ``error`` field) when it cannot.

``GET /api/info`` says which extensions the gateway has; it is asked at most once per
``INFO_CACHE_SEC``. A gateway whose info lists ``uploadHeaders`` is told the daemon sends
the headers it asks for (``acceptsUploadHeaders``); on a store that checks
``x-amz-checksum-sha1`` it then signs the PUT straight to the content key.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ...env_proxy import proxy_for
from ...errors import GatewayError, connection_problem
from ...identity import ClientKeys, signed_envelope
from .retry import TransientError

log = logging.getLogger("kachery_resource.daemon")

GATEWAY_TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
INFO_CACHE_SEC = 600.0  # how long the gateway's /api/info answer is trusted
CALL_TIMEOUT_SEC = 60.0
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,1000}")


class GatewayRefused(GatewayError):
    """The gateway answered a call with an error status; ``code`` is the ``error`` field
    of its JSON answer ("" when it had none), e.g. ``upload_missing``."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message, status)
        self.code = code


@dataclass(frozen=True)
class UploadTarget:
    """What initiateFileUpload answered."""

    already_exists: bool
    object_key: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # to send with the PUT


class DaemonGateway:
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

    async def call(self, payload: dict[str, Any],
                   timeout_sec: float = CALL_TIMEOUT_SEC) -> dict[str, Any]:
        """One signed request; its JSON answer (TransientError / GatewayRefused otherwise)."""
        body = signed_envelope(self.keys, payload)
        what = str(payload.get("type"))
        url = f"{self.url}/api/gateway"
        try:
            async with self.session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_sec),
                proxy=proxy_for(url)
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"cannot reach gateway {self.url} ({what}): {connection_problem(exc)}") from exc
        if status != 200:
            message = f"gateway {self.url} refused {what} ({status}): {text[:500]}"
            if status in GATEWAY_TRANSIENT_STATUSES:
                raise TransientError(message)
            raise GatewayRefused(message, status, _error_code(text))
        try:
            return _json_object(text)
        except ValueError:
            raise GatewayError(f"gateway {self.url} answered {what} with invalid JSON") from None

    async def client_info(self) -> dict[str, Any] | None:
        """This client's registration in the zone, or None when it is not registered."""
        data = await self.call(
            {"type": "getClientInfo", "clientId": self.keys.client_id, "zone": self.zone}
        )
        return data if data.get("found") else None

    async def find_file(self, sha1: str) -> bool:
        """Whether the zone holds ``sha1``. The daemon asks before uploading, so a gateway
        that fetches misses on demand is told not to (``onDemand: false``, sent only where
        ``/api/info`` lists ``announceResource``: older gateways refuse unknown fields) —
        else it would ask this very daemon and wait on the upload that waits on it."""
        payload: dict[str, Any] = {"type": "findFile", "hashAlg": "sha1", "hash": sha1,
                                   "zone": self.zone}
        if "announceResource" in (await self.capabilities()).get("requestTypes", []):
            payload["onDemand"] = False
        data = await self.call(payload)
        return bool(data.get("found"))

    def stop_upload_headers(self, why: str) -> None:
        """Upload the staged way from now on (a gateway or the path to the store refused
        the store-verified way)."""
        if self.upload_headers:
            log.warning("%s; uploads go the staged way from now on", why)
        self.upload_headers = False

    async def opts_in(self) -> bool:
        """Whether to offer ``acceptsUploadHeaders`` (the gateway lists ``uploadHeaders``)."""
        if not self.upload_headers:
            return False
        try:
            return (await self.capabilities()).get("uploadHeaders") is True
        except TransientError:  # /api/info is only needed for the opt-in
            return False

    async def initiate(self, sha1: str, size: int) -> UploadTarget:
        payload: dict[str, Any] = {"type": "initiateFileUpload", "size": size, "hashAlg": "sha1",
                                   "hash": sha1, "zone": self.zone}
        opt_in = await self.opts_in()
        if opt_in:
            payload["acceptsUploadHeaders"] = True
        try:
            data = await self.call(payload)
        except GatewayError as exc:  # e.g. an older instance behind the same load balancer
            if not (opt_in and exc.status == 400 and "acceptsUploadHeaders" in str(exc)):
                raise
            self.stop_upload_headers(f"gateway {self.url} refused acceptsUploadHeaders")
            return await self.initiate(sha1, size)
        return self.upload_target(data, "initiateFileUpload")

    def upload_target(self, data: dict[str, Any], what: str) -> UploadTarget:
        """An answer ``{alreadyExists} | {objectKey, signedUploadUrl, signedUploadHeaders?}``
        (initiateFileUpload's, and each chunk's), checked."""
        if data.get("alreadyExists"):
            return UploadTarget(already_exists=True)
        key, url = data.get("objectKey"), data.get("signedUploadUrl")
        if not (isinstance(key, str) and isinstance(url, str)):
            raise GatewayError(f"gateway {self.url} answered {what} without a URL")
        headers = data.get("signedUploadHeaders") or {}
        if not (isinstance(headers, dict) and all(
                isinstance(k, str) and _HEADER_NAME.fullmatch(k) and isinstance(v, str)
                and _HEADER_VALUE.fullmatch(v) for k, v in headers.items())):
            raise GatewayError(f"gateway {self.url} answered {what} with "
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


def _error_code(text: str) -> str:
    """The ``error`` field of a refusal's JSON body ("" when there is none)."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    return str(data.get("error", "")) if isinstance(data, dict) else ""
