"""Expiring HMAC-SHA256 signed URLs for objects the gateway serves itself (local backend).

A URL is ``{base}/files/{zone}/{key}?expires=<unix s>&signature=<hex>`` for a GET, plus
``&method=PUT&maxSize=<bytes>`` for an upload. The signature covers the method, zone,
key, expiry and size limit, so changing any of them makes the URL invalid.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from .problems import ApiError


class UrlSigner:
    """Signs and checks object URLs with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_secret_file(cls, path: Path) -> UrlSigner:
        """Use the secret in ``path``, creating it (mode 0600) if missing.

        Keeping it in the storage lets several gateways on one directory, and a
        restarted gateway, accept each other's URLs.
        """
        try:
            return cls(bytes.fromhex(path.read_text().strip()))
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # first writer wins when two gateways start at once
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return cls(bytes.fromhex(path.read_text().strip()))

    def _mac(self, method: str, zone: str, key: str, expires: int, max_size: int | None) -> str:
        message = f"{method}\n{zone}\n{key}\n{expires}\n{'' if max_size is None else max_size}"
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def url(self, base: str, method: str, zone: str, key: str, ttl_sec: int,
            max_size: int | None = None) -> str:
        """A URL allowing ``method`` on ``key`` of ``zone`` for ``ttl_sec`` seconds."""
        expires = int(time.time()) + ttl_sec
        query: dict[str, str | int] = {"expires": expires}
        if method != "GET":
            query["method"] = method
        if max_size is not None:
            query["maxSize"] = max_size
        query["signature"] = self._mac(method, zone, key, expires, max_size)
        return f"{base.rstrip('/')}/files/{quote(zone)}/{quote(key)}?{urlencode(query)}"

    def check(self, method: str, zone: str, key: str, query: dict[str, str]) -> int | None:
        """Raise a 403 unless ``query`` carries a valid, unexpired signature; returns maxSize."""
        if query.get("method", "GET") != method:
            raise ApiError(403, "invalid_url_signature",
                           f"this signed URL is not valid for {method}; ask the gateway for a new one")
        try:
            expires = int(query["expires"])
            max_size = int(query["maxSize"]) if "maxSize" in query else None
            signature = query["signature"]
        except (KeyError, ValueError):
            raise ApiError(403, "invalid_url_signature",
                           "the URL is not a complete signed URL (expires, signature); "
                           "ask the gateway for a new one") from None
        expected = self._mac(method, zone, key, expires, max_size)
        if not hmac.compare_digest(expected, signature):
            raise ApiError(403, "invalid_url_signature",
                           "the URL signature does not match; the URL was altered or is not from "
                           "this gateway")
        if expires < time.time():
            raise ApiError(403, "url_expired",
                           f"this signed URL expired {int(time.time() - expires)} s ago; "
                           "ask the gateway for a new one")
        return max_size
