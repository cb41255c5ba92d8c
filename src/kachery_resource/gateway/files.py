"""``GET|HEAD|PUT /files/{zone}/{key}``: objects of local-directory zones, via signed URLs.

GET answers with the file (Range requests give 206). PUT is accepted only for staging
keys the gateway signed, with or without Content-Length (chunked bodies are fine), and
answers exactly 200 once the body is stored and hashed.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from ..uri import is_sha1_hex
from . import keys
from .problems import ApiError
from .storage import LocalStorage
from .zones import Zone

_PART_NUMBER = re.compile(r"[0-9]{5}")

class FileRoutes:
    """Serves the objects of every local-directory zone."""

    def __init__(self, zones: dict[str, Zone]) -> None:
        self.zones = zones

    def _locate(self, request: web.Request) -> tuple[Zone, LocalStorage, str]:
        zone = self.zones.get(request.match_info["zone"])
        if zone is None or not isinstance(zone.storage, LocalStorage):
            raise ApiError(404, "not_found", "no such zone served by this gateway")
        key = keys.ensure_safe_key(request.match_info["key"])
        return zone, zone.storage, key

    async def get(self, request: web.Request) -> web.StreamResponse:
        """GET (and HEAD) a content object through a signed URL."""
        zone, storage, key = self._locate(request)
        storage.signer.check("GET", zone.name, key, dict(request.query))
        path = storage.path(key)
        if not path.is_file():
            raise ApiError(404, "not_found", f"no object {key!r} in zone {zone.name!r}")
        return web.FileResponse(path, chunk_size=1024 * 1024,
                                headers={"Content-Type": "application/octet-stream"})

    async def put(self, request: web.Request) -> web.Response:
        """PUT the body of an upload to its staging key (hashed while received) or part key."""
        zone, storage, key = self._locate(request)
        max_size = storage.signer.check("PUT", zone.name, key, dict(request.query))
        is_part = ensure_upload_key(zone.prefix, key)
        declared = request.content_length
        if declared is not None and max_size is not None and declared > max_size:
            raise ApiError(413, "upload_too_large",
                           f"Content-Length {declared} is larger than the {max_size} bytes declared "
                           "in initiateFileUpload")
        tag, size = await storage.receive(key, request.content.iter_any(), max_size)
        return web.Response(status=200, content_type="application/json",
                            text=json.dumps({"received": size, "etag" if is_part else "sha1": tag}),
                            headers={"ETag": f'"{tag}"'})


def ensure_upload_key(prefix: str, key: str) -> bool:
    """Whether ``key`` is a multipart part key (else a staging key) of ``prefix``; a 403 if
    it is neither."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[-4] == "multipart" and _PART_NUMBER.fullmatch(parts[-1]):
        keys.parse_staging_key(prefix, "/".join(parts[:-1]), parts[-3], "multipart")
        return True
    if len(parts) >= 3 and is_sha1_hex(parts[-2]):
        keys.parse_staging_key(prefix, key, parts[-2])
        return False
    raise ApiError(403, "invalid_url_signature", "uploads go to staging or part keys only")
