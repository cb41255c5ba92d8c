"""``POST /api/gateway``: the five request types kachery-cloud 0.4.10 sends (see the reference doc).

Extension: an ``initiateFileUpload`` with ``acceptsUploadHeaders: true`` on a storage that
verifies sha1 checksums itself (``Storage.verifies_sha1``) is answered with a URL for the
content key and the ``signedUploadHeaders`` its PUT must carry; finalizing that upload
(``objectKey`` = the content key) only confirms the object. Every other upload is staged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from . import keys
from .envelope import (
    PAYLOAD_TYPES,
    DeleteFile,
    FinalizeFileUpload,
    FindFile,
    GetClientInfo,
    InitiateFileUpload,
    Payload,
    check_signature,
    check_timestamp,
    parse_envelope,
    read_limited,
)
from .problems import ApiError, bad_request, forbidden
from .registry import ClientRecord
from .requestlog import note
from .settings import GatewaySettings
from .storage import UrlContext
from .storage.base import content_mismatch
from .zones import Zone

DIRECT_URL_TTL_SEC = 300  # at most, for the store-verified URLs of content keys

EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"

Json = dict[str, Any]
Handler = Callable[["Call"], Awaitable[Json]]


class Fetcher(Protocol):
    """Fetches a missing file from the zone's resources (on_demand.OnDemand)."""

    async def find_or_fetch(self, zone: Zone, sha1: str, requester: str | None = None) -> bool: ...


FETCHER_KEY = web.AppKey("fetcher", Fetcher)


class WholeFiles(Protocol):
    """Told when a whole file becomes visible in a zone (chunk_check.ChunkChecks)."""

    def arrived(self, zone: Zone, sha1: str) -> None: ...


WHOLE_FILES_KEY = web.AppKey("whole_files", WholeFiles)


def whole_file_arrived(app: web.Application, zone: Zone, sha1: str) -> None:
    """Tell the app's listener (if any) that ``sha1`` is now whole in ``zone``."""
    listener = app.get(WHOLE_FILES_KEY)
    if listener is not None:
        listener.arrived(zone, sha1)


class Call:
    """One verified gateway call: who signed it, for which zone, with which payload."""

    def __init__(self, request: web.Request, settings: GatewaySettings, zone: Zone,
                 client_id: str, payload: Payload) -> None:
        self.request = request
        self.settings = settings
        self.zone = zone
        self.client_id = client_id
        self.payload = payload

    def url_context(self) -> UrlContext:
        """Base URL for URLs the gateway itself serves, as the caller sees the gateway."""
        return url_context(self.request, self.settings, self.zone)

    async def uploader(self) -> ClientRecord:
        """The signer's record if it may upload to this zone, else a 403."""
        record = await self.zone.registry.approved(self.client_id)
        if record is None:
            raise not_registered(self.zone.name, self.client_id)
        if not (record.upload or self.zone.settings.allow_public_upload):
            raise forbidden(
                "upload_not_allowed",
                f"client {self.client_id} may not upload to zone {self.zone.name!r}; ask the "
                f"gateway admin to run: kachery-resource gateway clients add {self.client_id} "
                f"--zone {self.zone.name} --upload",
            )
        return record

    async def ensure_downloader(self) -> None:
        """A 403 unless the signer may download from this zone."""
        zone = self.zone
        if zone.settings.allow_public_download:
            return
        record = await zone.registry.approved(self.client_id)
        if record is None:
            raise not_registered(zone.name, self.client_id)
        if not record.download:
            raise forbidden("download_not_allowed",
                            f"client {self.client_id} may not download from zone {zone.name!r}")


def url_context(request: web.Request, settings: GatewaySettings, zone: Zone) -> UrlContext:
    """Base URL for URLs the gateway itself serves, as the caller of ``request`` sees it.

    ``request.url``, not ``request.host``: a request that came through an HTTP proxy
    names the whole URL, and aiohttp's host for it has no port."""
    base = settings.public_url or str(request.url.origin())
    return UrlContext(base_url=base, zone=zone.name)


def not_registered(zone: str, client_id: str) -> ApiError:
    """The 403 for a signer that is not an approved client of ``zone``."""
    return forbidden(
        "client_not_registered",
        f"client {client_id} is not registered in zone {zone!r}. Run kachery-cloud-init and open "
        "the URL it prints, then ask the gateway admin to approve it "
        f"(kachery-resource gateway clients add {client_id} --zone {zone} --upload)",
    )


def bucket_uri(zone: Zone) -> str:
    """What findFile reports as ``bucketUri``."""
    bucket = getattr(zone.storage, "bucket", None)
    return f"s3://{bucket}" if bucket else f"gateway://{zone.name}"


async def get_client_info(call: Call) -> Json:
    assert isinstance(call.payload, GetClientInfo)
    record = await call.zone.registry.approved(call.payload.clientId)
    if record is None:
        return {"type": "getClientInfo", "found": False}
    client = {"clientId": record.clientId, "ownerId": record.ownerId,
              "timestampCreated": record.timestampCreated, "label": record.label}
    return {"type": "getClientInfo", "found": True, "client": client}


async def find_in_zone(zone: Zone, sha1: str, ctx: UrlContext, settings: GatewaySettings,
                       fetcher: Fetcher | None = None, requester: str | None = None) -> Json | None:
    """Look up content ``sha1`` in ``zone`` and sign a download URL for it: the one lookup
    behind findFile of both API generations (``/api/gateway`` and ``/api/findFile``).

    On a miss, ``fetcher`` (the app's on-demand component, when there is one) asks the
    zone's resources for the file and waits, bounded, for its verified upload; a
    ``requester`` that is itself an announced resource never triggers that.
    Answers ``size``, ``url``, ``bucketUri`` and ``objectKey``, or None when the zone does
    not hold the file. Rights are the caller's business."""
    key = keys.content_key(zone.prefix, sha1)
    size = await zone.storage.size_of(key)
    if size is None and fetcher is not None and await fetcher.find_or_fetch(zone, sha1, requester):
        size = await zone.storage.size_of(key)
    if size is None:
        return None
    url = zone.storage.download_url(ctx, key, settings.download_url_ttl_sec)
    return {"size": size, "url": url, "bucketUri": bucket_uri(zone), "objectKey": key}


async def find_file(call: Call) -> Json:
    payload = call.payload
    assert isinstance(payload, FindFile)
    zone = call.zone
    await call.ensure_downloader()
    fetcher = call.request.app.get(FETCHER_KEY) if payload.onDemand else None
    found = await find_in_zone(zone, payload.hash, call.url_context(), call.settings,
                               fetcher, call.client_id)
    if found is None:
        return {"type": "findFile", "found": False}
    return {"type": "findFile", "found": True, **found, "cacheHit": False}


def ensure_size_allowed(size: int, limit: int) -> None:
    """Raise a 413 for a single-PUT upload above ``limit`` bytes."""
    if size > limit:
        raise ApiError(413, "file_too_large",
                       f"a single upload may be at most {limit} bytes; this file has {size}")


async def initiate_upload(zone: Zone, settings: GatewaySettings, ctx: UrlContext, sha1: str,
                          size: int, accepts_upload_headers: bool = False) -> Json:
    """Start an upload of ``size`` bytes hashing to ``sha1`` (both API generations):
    ``alreadyExists``, else ``objectKey`` and ``signedUploadUrl`` (a staging key, or the
    content key with ``signedUploadHeaders`` on a store that verifies sha1 itself)."""
    ensure_size_allowed(size, settings.max_upload_size)
    content = keys.content_key(zone.prefix, sha1)
    if size == 0 and sha1 != EMPTY_SHA1:
        raise content_mismatch(sha1, 0, EMPTY_SHA1, 0)
    if await zone.storage.size_of(content) is not None:
        return {"alreadyExists": True}
    if size == 0 and not zone.storage.accepts_chunked_put:
        await zone.storage.put_verified_empty(content)
        return {"alreadyExists": True}
    ttl = settings.upload_url_ttl_sec
    if accepts_upload_headers and zone.storage.verifies_sha1:
        # short-lived: nobody asks the gateway again before such an upload becomes readable
        url, headers = zone.storage.checked_upload_url(ctx, content, sha1, size,
                                                       min(ttl, DIRECT_URL_TTL_SEC))
        return {"alreadyExists": False, "objectKey": content, "signedUploadUrl": url,
                "signedUploadHeaders": headers}
    staging = keys.staging_key(zone.prefix, sha1, keys.new_upload_id())
    url = zone.storage.upload_url(ctx, staging, ttl, size)
    return {"alreadyExists": False, "objectKey": staging, "signedUploadUrl": url}


async def finalize_upload(zone: Zone, settings: GatewaySettings, sha1: str, size: int,
                          object_key: str) -> None:
    """Make the upload at ``object_key`` visible under the content key of ``sha1`` only after
    checking its size and sha1 (both API generations); raises a 4xx otherwise."""
    ensure_size_allowed(size, settings.max_upload_size)
    content = keys.content_key(zone.prefix, sha1)
    if object_key == content:  # a store-verified upload: it is there, or it is not
        await zone.storage.confirm(content, size, sha1)
        return
    keys.parse_staging_key(zone.prefix, object_key, sha1)
    await zone.storage.promote(object_key, content, size, sha1)


async def initiate_file_upload(call: Call) -> Json:
    payload = call.payload
    assert isinstance(payload, InitiateFileUpload)
    await call.uploader()
    answer = await initiate_upload(call.zone, call.settings, call.url_context(), payload.hash,
                                   payload.size, payload.acceptsUploadHeaders)
    return {"type": "initiateFileUpload", **answer}


async def finalize_file_upload(call: Call) -> Json:
    payload = call.payload
    assert isinstance(payload, FinalizeFileUpload)
    await call.uploader()
    await finalize_upload(call.zone, call.settings, payload.hash, payload.size, payload.objectKey)
    whole_file_arrived(call.request.app, call.zone, payload.hash)
    return {"type": "finalizeFileUpload"}


async def delete_file(call: Call) -> Json:
    payload = call.payload
    assert isinstance(payload, DeleteFile)
    record = await call.zone.registry.approved(call.client_id)
    if record is None or not record.admin:
        raise forbidden("admin_only", f"deleteFile needs an admin client of zone {call.zone.name!r}")
    key = keys.content_key(call.zone.prefix, payload.hash)
    if await call.zone.storage.size_of(key) is None:
        return {"type": "deleteFile", "success": False, "error": f"file not found: sha1://{payload.hash}"}
    await call.zone.storage.delete(key)
    return {"type": "deleteFile", "success": True}


HANDLERS: dict[str, Handler] = {
    "getClientInfo": get_client_info,
    "findFile": find_file,
    "initiateFileUpload": initiate_file_upload,
    "finalizeFileUpload": finalize_file_upload,
    "deleteFile": delete_file,
}


class GatewayApi:
    """Validates every call, then dispatches it to its handler."""

    def __init__(self, settings: GatewaySettings, zones: dict[str, Zone],
                 extra_types: dict[str, type[Payload]] | None = None,
                 extra_handlers: dict[str, Handler] | None = None) -> None:
        self.settings = settings
        self.zones = zones
        self.payload_types = {**PAYLOAD_TYPES, **(extra_types or {})}
        self.handlers = {**HANDLERS, **(extra_handlers or {})}

    def zone(self, name: str) -> Zone:
        """Zone ``name``, or a 404 naming the zones there are."""
        zone = self.zones.get(name)
        if zone is None:
            raise ApiError(404, "unknown_zone",
                           f"this gateway has no zone {name!r}; its zones: {', '.join(sorted(self.zones))}")
        return zone

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /api/gateway``."""
        body = await read_limited(request, self.settings.max_body_bytes)
        envelope, payload = parse_envelope(body, self.payload_types)
        check_timestamp(payload.timestamp, self.settings.timestamp_window_sec)
        check_signature(envelope)
        kind = str(envelope.payload["type"])
        note(endpoint=kind, client=envelope.fromClientId)
        handler = self.handlers.get(kind)
        if handler is None:  # the two tables are kept in step
            raise bad_request("unknown_request_type", f"request type {kind!r} is not handled")
        call = Call(request, self.settings, self.zone(payload.zone), envelope.fromClientId, payload)
        return web.json_response(await handler(call))
