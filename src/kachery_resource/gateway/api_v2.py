"""The kachery 2.x API: ``POST /api/findFile``, ``/api/initiateFileUpload`` and
``/api/finalizeFileUpload``, as the released ``kachery`` client (2.0.3) and web pages call them.

Requests are plain JSON (``{"type": "findFileRequest", "hashAlg", "hash", "zoneName"}`` …),
authenticated by ``Authorization: Bearer <API key>`` of a user of the zone (users.py).
The zone, its objects and its upload checks are those of ``/api/gateway`` (the shared
functions of api.py): a finalize answers ``success`` only after the gateway verified the
upload's size and sha1, and a file stored by either client generation is found by both.

Errors answer ``{"error": "<message>", "code": "<code>"}`` (the client prints ``error``):
400 malformed request or bad work token, 401 missing or unknown API key, 403 a user
without the right, 404 unknown zone, 413 body too large.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..uri import is_sha1_hex
from .api import (
    FETCHER_KEY,
    finalize_upload,
    find_in_zone,
    initiate_upload,
    url_context,
    whole_file_arrived,
)
from .envelope import describe, read_limited
from .problems import ApiError, bad_request
from .requestlog import note
from .settings import ZONE_NAME, GatewaySettings
from .users import UserRecord
from .zones import Zone

WORK_TOKEN_BITS = 13
"""Leading zero bits of sha1(hash + workToken) an initiate must show (the client's value)."""

Json = dict[str, Any]
Size = Annotated[int, Field(ge=0)]
M = TypeVar("M", bound="V2Request")


class V2Request(BaseModel):
    """Fields of every kachery 2.x request; unknown fields are ignored (the client may add
    ``allowPublicZones``)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    hashAlg: Annotated[str, Field(max_length=20)]
    hash: Annotated[str, Field(max_length=100)]
    zoneName: Annotated[str, Field(max_length=200)]


class FindFileRequest(V2Request):
    type: Literal["findFileRequest"]


class InitiateFileUploadRequest(V2Request):
    type: Literal["initiateFileUploadRequest"]
    size: Size
    workToken: Annotated[str, Field(max_length=200)]


class FinalizeFileUploadRequest(V2Request):
    type: Literal["finalizeFileUploadRequest"]
    size: Size
    objectKey: Annotated[str, Field(max_length=1000)]


def has_work(work_token: str, sha1: str, bits: int = WORK_TOKEN_BITS) -> bool:
    """Whether sha1(``sha1`` + ``work_token``) starts with ``bits`` zero bits."""
    digest = int(hashlib.sha1((sha1 + work_token).encode()).hexdigest(), 16)
    return digest >> (160 - bits) == 0


def ensure_work(work_token: str, sha1: str) -> None:
    """A 400 unless the proof-of-work token is good for ``sha1``."""
    if not has_work(work_token, sha1):
        raise bad_request("invalid_work_token",
                          f"invalid work token: sha1(hash + workToken) must start with "
                          f"{WORK_TOKEN_BITS} zero bits (the kachery client computes it)")


async def parse(request: web.Request, model: type[M], limit: int) -> M:
    """The request body as ``model``, or a 400 (413 when too large) saying what is wrong."""
    body = await read_limited(request, limit)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request("invalid_json", f"the request body is not valid JSON: {exc}") from None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise bad_request("invalid_request", f"invalid request: {describe(exc, '')}") from None
    if parsed.hashAlg != "sha1":
        raise bad_request("unsupported_hash_alg", f"hashAlg {parsed.hashAlg[:20]!r} is not "
                          "supported; this gateway stores files by sha1")
    if not is_sha1_hex(parsed.hash):
        raise bad_request("invalid_hash", "invalid hash: a sha1 is 40 lowercase hexadecimal characters")
    return parsed


Handler = Callable[[web.Request], Awaitable[Json]]


def v2_errors(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Answer ``handler``'s JSON, or its ApiError as ``{"error": message, "code": code}``."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return web.json_response(await handler(request))
        except ApiError as exc:  # counted and logged like every other refusal (problems.py)
            note(error=exc.code)
            return web.json_response({"error": str(exc), "code": exc.code}, status=exc.http_status)

    return wrapped


class V2Api:
    """The three kachery 2.x endpoints over the gateway's zones."""

    def __init__(self, settings: GatewaySettings, zones: dict[str, Zone]) -> None:
        self.settings = settings
        self.zones = zones

    def routes(self) -> list[web.RouteDef]:
        """The POST routes to add to the app."""
        return [web.post("/api/findFile", v2_errors(self.find_file)),
                web.post("/api/initiateFileUpload", v2_errors(self.initiate_file_upload)),
                web.post("/api/finalizeFileUpload", v2_errors(self.finalize_file_upload))]

    def zone(self, name: str) -> Zone:
        """Zone ``name``, or a 404 naming the zones there are."""
        zone = self.zones.get(name) if ZONE_NAME.fullmatch(name) else None
        if zone is None:
            raise ApiError(404, "unknown_zone", f"zone not found: {name[:100]!r}; this gateway's "
                           f"zones: {', '.join(sorted(self.zones))} (set KACHERY_ZONE)")
        return zone

    async def user(self, request: web.Request, zone: Zone) -> UserRecord | None:
        """The user of the request's API key, None without a key, a 401 for a key that is
        malformed or unknown in ``zone`` (never treated as anonymous)."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, api_key = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not api_key.strip():
            raise ApiError(401, "invalid_authorization",
                           "the Authorization header must be 'Bearer <API key>'")
        user = await zone.users.for_key(api_key.strip())
        if user is None:
            raise ApiError(401, "unknown_api_key",
                           f"the API key is not one of zone {zone.name!r} (mistyped, reset or "
                           "removed); check KACHERY_API_KEY, or ask the gateway admin for a key: "
                           f"kachery-resource gateway users reset-key NAME --zone {zone.name}")
        return user

    async def downloader(self, request: web.Request, zone: Zone) -> None:
        """Check the request may download from ``zone`` (401/403 otherwise)."""
        user = await self.user(request, zone)
        if zone.settings.allow_public_download:
            return
        if user is None:
            raise ApiError(401, "api_key_required",
                           f"zone {zone.name!r} does not allow public download: set "
                           "KACHERY_API_KEY to the API key of a user with the download right "
                           f"(the gateway admin runs: kachery-resource gateway users add NAME "
                           f"--zone {zone.name})")
        if not user.download:
            raise ApiError(403, "download_not_allowed",
                           f"user {user.name} may not download from zone {zone.name!r}")

    async def uploader(self, request: web.Request, zone: Zone) -> UserRecord:
        """The user of the request if it may upload to ``zone`` (401/403 otherwise)."""
        user = await self.user(request, zone)
        if user is None:
            raise ApiError(401, "api_key_required",
                           f"uploading to zone {zone.name!r} needs an API key: set KACHERY_API_KEY "
                           "to the key the gateway admin gives you (kachery-resource gateway users "
                           f"add NAME --zone {zone.name} --upload)")
        if not (user.upload or zone.settings.allow_public_upload):
            raise ApiError(403, "upload_not_allowed",
                           f"user {user.name} may not upload to zone {zone.name!r}; the gateway "
                           f"admin can allow it: kachery-resource gateway users add {user.name} "
                           f"--zone {zone.name} --upload")
        return user

    async def find_file(self, request: web.Request) -> Json:
        req = await parse(request, FindFileRequest, self.settings.max_body_bytes)
        zone = self.zone(req.zoneName)
        await self.downloader(request, zone)
        found = await find_in_zone(zone, req.hash, url_context(request, self.settings, zone),
                                   self.settings, request.app.get(FETCHER_KEY))
        if found is None:
            return {"type": "findFileResponse", "found": False}
        return {"type": "findFileResponse", "found": True, **found, "cacheHit": False}

    async def initiate_file_upload(self, request: web.Request) -> Json:
        req = await parse(request, InitiateFileUploadRequest, self.settings.max_body_bytes)
        zone = self.zone(req.zoneName)
        ensure_work(req.workToken, req.hash)
        await self.uploader(request, zone)
        answer = await initiate_upload(zone, self.settings, url_context(request, self.settings, zone),
                                       req.hash, req.size)
        return {"type": "initiateFileUploadResponse", "alreadyPending": False, **answer}

    async def finalize_file_upload(self, request: web.Request) -> Json:
        req = await parse(request, FinalizeFileUploadRequest, self.settings.max_body_bytes)
        zone = self.zone(req.zoneName)
        await self.uploader(request, zone)
        await finalize_upload(zone, self.settings, req.hash, req.size, req.objectKey)
        whole_file_arrived(request.app, zone, req.hash)
        return {"type": "finalizeFileUploadResponse", "success": True}
