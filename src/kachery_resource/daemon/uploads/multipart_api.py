"""The gateway's multipart request types, sent through :meth:`.gateway.DaemonGateway.call`
like every other gateway call (a refusal is a ``gateway.GatewayRefused`` with the gateway's
error ``code``, e.g. ``upload_missing``).

``GET /api/info`` says whether the gateway has them (``multipartUpload``); see
docs/gateway.md "Multipart uploads (extension)" for the payloads and answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import GatewayError
from .gateway import DaemonGateway

REQUEST_TYPES = frozenset({"initiateMultipartUpload", "getMultipartUploadUrls",
                           "listMultipartParts", "completeMultipartUpload",
                           "abortMultipartUpload"})


@dataclass(frozen=True)
class MultipartLimits:
    """What ``/api/info`` advertises under ``multipartUpload``."""

    min_part_size: int
    max_part_size: int
    max_parts: int
    max_size: int

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> MultipartLimits | None:
        """The limits, or None when the gateway does not offer every multipart request."""
        mp = info.get("multipartUpload")
        if not isinstance(mp, dict) or not set(mp.get("requestTypes") or []) >= REQUEST_TYPES:
            return None
        try:
            return cls(int(mp["minPartSize"]), int(mp["maxPartSize"]), int(mp["maxParts"]),
                       int(mp["maxSize"]))
        except (KeyError, TypeError, ValueError):
            return None


class MultipartApi:
    """``POST {gateway}/api/gateway`` for the five multipart request types."""

    def __init__(self, gateway: DaemonGateway) -> None:
        self.gateway = gateway

    async def initiate(self, sha1: str, size: int, part_size: int) -> dict[str, Any]:
        return await self._call("initiateMultipartUpload", sha1, size=size, partSize=part_size)

    async def urls(self, sha1: str, object_key: str, numbers: list[int]) -> dict[int, str]:
        data = await self._call("getMultipartUploadUrls", sha1, objectKey=object_key,
                                partNumbers=numbers)
        urls = data.get("urls")
        if not isinstance(urls, dict):
            raise GatewayError(f"gateway {self.gateway.url} answered getMultipartUploadUrls without urls")
        return {int(n): str(u) for n, u in urls.items()}

    async def parts(self, sha1: str, object_key: str) -> dict[int, tuple[int, str]]:
        """The parts the store holds: number → (size, ETag without quotes)."""
        data = await self._call("listMultipartParts", sha1, objectKey=object_key)
        return {int(p["partNumber"]): (int(p["size"]), str(p.get("etag") or "").strip('"'))
                for p in data.get("parts") or []}

    async def complete(self, sha1: str, object_key: str, size: int, timeout_sec: float) -> None:
        await self._call("completeMultipartUpload", sha1, timeout_sec=timeout_sec,
                         objectKey=object_key, size=size)

    async def abort(self, sha1: str, object_key: str) -> None:
        await self._call("abortMultipartUpload", sha1, objectKey=object_key)

    async def _call(self, what: str, sha1: str, timeout_sec: float = 60.0,
                    **fields: Any) -> dict[str, Any]:
        g = self.gateway
        return await g.call({"type": what, "hashAlg": "sha1", "hash": sha1, "zone": g.zone,
                             **fields}, timeout_sec)
