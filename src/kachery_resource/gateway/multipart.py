"""Multipart uploads (an extension of ``POST /api/gateway``, advertised in ``/api/info``).

For files of any size (S3's single PUT stops at 5 GB) and resumable uploads::

    initiateMultipartUpload  {hash, hashAlg, size, partSize}  → {objectKey, partSize, numParts}
                                                                 or {alreadyExists: true}
    getMultipartUploadUrls   {hash, hashAlg, objectKey, partNumbers: [1, 2, …]}
                                                              → {urls: {"1": url, …}}
    listMultipartParts       {hash, hashAlg, objectKey}       → {parts: [{partNumber, size, etag}]}
    completeMultipartUpload  {hash, hashAlg, objectKey, size} → {}   (verifies the whole file)
    abortMultipartUpload     {hash, hashAlg, objectKey}       → {}

Every part but the last has exactly ``partSize`` bytes. Each part URL accepts one raw-body
PUT of that part and answers 200 (S3 answers with an ``ETag``); a part may be re-sent.
Completion checks every part is there with its size, then — exactly as for a single
upload — the whole file's size and sha1 before it becomes visible under its content key;
on a mismatch everything is deleted. The upload's record (``<objectKey>.upload.json``)
and parts of uploads never completed are deleted after ``stagingMaxAgeSec``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import keys
from .api import Call, Handler, ensure_size_allowed, whole_file_arrived
from .envelope import Payload, Sha1
from .problems import ApiError, bad_request
from .settings import GatewaySettings
from .storage.base import PartInfo

DEFAULT_PART_SIZE = 64 * 1024**2
PartNumber = Annotated[int, Field(ge=1, le=10000)]


class InitiateMultipartUpload(Payload):
    type: Literal["initiateMultipartUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    size: Annotated[int, Field(ge=1)]
    partSize: Annotated[int, Field(ge=1)]


class GetMultipartUploadUrls(Payload):
    type: Literal["getMultipartUploadUrls"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    objectKey: Annotated[str, Field(max_length=1000)]
    partNumbers: Annotated[list[PartNumber], Field(min_length=1, max_length=1000)]


class ListMultipartParts(Payload):
    type: Literal["listMultipartParts"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    objectKey: Annotated[str, Field(max_length=1000)]


class CompleteMultipartUpload(Payload):
    type: Literal["completeMultipartUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    objectKey: Annotated[str, Field(max_length=1000)]
    size: Annotated[int, Field(ge=1)]


class AbortMultipartUpload(Payload):
    type: Literal["abortMultipartUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    objectKey: Annotated[str, Field(max_length=1000)]


class Manifest(BaseModel):
    """What the gateway remembers about one multipart upload (stored beside its parts)."""

    model_config = ConfigDict(extra="ignore")

    size: int
    partSize: int
    numParts: int
    backendUploadId: str
    created: float

    def part_size(self, number: int) -> int:
        """The exact size part ``number`` must have."""
        if number < self.numParts:
            return self.partSize
        return self.size - self.partSize * (self.numParts - 1)


def manifest_key(object_key: str) -> str:
    """Where the record of the upload at ``object_key`` is kept."""
    return object_key + ".upload.json"


def check_part_size(settings: GatewaySettings, size: int, part_size: int) -> int:
    """The number of parts, or a 400 saying which part sizes would work."""
    lo, hi, most = (settings.multipart_min_part_size, settings.multipart_max_part_size,
                    settings.multipart_max_parts)
    parts = -(-size // part_size)
    smallest = max(lo, -(-size // most))
    if part_size > hi or (part_size < lo and parts > 1) or parts > most:
        raise bad_request(
            "invalid_part_size",
            f"partSize {part_size} does not fit a {size}-byte file: parts must be {lo}–{hi} bytes "
            f"(the last may be smaller) and at most {most} of them; use at least {smallest}",
        )
    return parts


async def load_manifest(call: Call, object_key: str, sha1: str) -> Manifest:
    """The record of a multipart upload of ``sha1`` in this zone, or a 400."""
    keys.parse_staging_key(call.zone.prefix, object_key, sha1, "multipart")
    data = await call.zone.storage.read_small(manifest_key(object_key))
    if data is None:
        raise ApiError(400, "upload_missing",
                       f"no multipart upload {object_key!r} (finished, aborted or expired); "
                       "start a new one with initiateMultipartUpload")
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ApiError(500, "internal_error", f"the record of {object_key!r} is unreadable") from exc


async def initiate(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, InitiateMultipartUpload)
    await call.uploader()
    ensure_size_allowed(p.size, call.settings.multipart_max_size)
    num_parts = check_part_size(call.settings, p.size, p.partSize)
    zone = call.zone
    if await zone.storage.size_of(keys.content_key(zone.prefix, p.hash)) is not None:
        return {"type": p.type, "alreadyExists": True}
    object_key = keys.multipart_key(zone.prefix, p.hash, keys.new_upload_id())
    backend_id = await zone.storage.mp_create(object_key)
    await zone.storage.mp_prepare(object_key, backend_id, p.size, p.partSize)
    manifest = Manifest(size=p.size, partSize=p.partSize, numParts=num_parts,
                        backendUploadId=backend_id, created=time.time())
    await zone.storage.write_small(manifest_key(object_key), manifest.model_dump_json().encode())
    return {"type": p.type, "alreadyExists": False, "objectKey": object_key,
            "partSize": p.partSize, "numParts": num_parts}


async def part_urls(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, GetMultipartUploadUrls)
    await call.uploader()
    manifest = await load_manifest(call, p.objectKey, p.hash)
    wrong = [n for n in p.partNumbers if n > manifest.numParts]
    if wrong:
        raise bad_request("invalid_request",
                          f"part numbers {wrong[:10]} are beyond this upload's {manifest.numParts} parts")
    ctx, ttl = call.url_context(), call.settings.upload_url_ttl_sec
    urls = {str(n): call.zone.storage.mp_part_url(ctx, p.objectKey, manifest.backendUploadId, n, ttl,
                                                  manifest.part_size(n))
            for n in p.partNumbers}
    return {"type": p.type, "urls": urls}


async def list_parts(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, ListMultipartParts)
    await call.uploader()
    manifest = await load_manifest(call, p.objectKey, p.hash)
    parts = await call.zone.storage.mp_parts(p.objectKey, manifest.backendUploadId)
    return {"type": p.type, "partSize": manifest.partSize, "numParts": manifest.numParts,
            "parts": [{"partNumber": i.number, "size": i.size, "etag": i.etag}
                      for i in sorted(parts.values(), key=lambda i: i.number)]}


def ensure_complete(manifest: Manifest, parts: dict[int, PartInfo]) -> list[PartInfo]:
    """Every part, in order, with its exact size; else a 400 listing what is wrong."""
    missing = [n for n in range(1, manifest.numParts + 1) if n not in parts]
    wrong = [n for n in range(1, manifest.numParts + 1)
             if n in parts and parts[n].size != manifest.part_size(n)]
    if missing or wrong:
        raise bad_request(
            "multipart_incomplete",
            f"cannot complete: missing parts {missing[:20]}, parts of the wrong size {wrong[:20]} "
            f"(of {manifest.numParts}); upload those parts again, then complete",
        )
    return [parts[n] for n in range(1, manifest.numParts + 1)]


async def complete(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, CompleteMultipartUpload)
    await call.uploader()
    zone = call.zone
    content = keys.content_key(zone.prefix, p.hash)
    keys.parse_staging_key(zone.prefix, p.objectKey, p.hash, "multipart")
    if (await zone.storage.read_small(manifest_key(p.objectKey)) is None
            and await zone.storage.size_of(content) == p.size):
        return {"type": p.type}  # a retry after the answer to an earlier complete was lost
    manifest = await load_manifest(call, p.objectKey, p.hash)
    if p.size != manifest.size:
        raise bad_request("content_mismatch",
                          f"size {p.size} differs from the {manifest.size} bytes this upload was started with")
    parts = ensure_complete(manifest, await zone.storage.mp_parts(p.objectKey, manifest.backendUploadId))
    try:
        await zone.storage.mp_complete(p.objectKey, manifest.backendUploadId, parts, content,
                                       manifest.size, p.hash)
    except ApiError as exc:
        if exc.status not in (409, 503) and exc.code != "multipart_incomplete":
            await zone.storage.delete(manifest_key(p.objectKey))
        raise
    except BaseException:
        await zone.storage.delete(manifest_key(p.objectKey))
        raise
    await zone.storage.delete(manifest_key(p.objectKey))
    whole_file_arrived(call.request.app, zone, p.hash)
    return {"type": p.type}


async def abort(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, AbortMultipartUpload)
    await call.uploader()
    manifest = await load_manifest(call, p.objectKey, p.hash)
    await call.zone.storage.mp_abort(p.objectKey, manifest.backendUploadId)
    await call.zone.storage.delete(manifest_key(p.objectKey))
    return {"type": p.type}


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "initiateMultipartUpload": InitiateMultipartUpload,
    "getMultipartUploadUrls": GetMultipartUploadUrls,
    "listMultipartParts": ListMultipartParts,
    "completeMultipartUpload": CompleteMultipartUpload,
    "abortMultipartUpload": AbortMultipartUpload,
}

HANDLERS: dict[str, Handler] = {
    "initiateMultipartUpload": initiate,
    "getMultipartUploadUrls": part_urls,
    "listMultipartParts": list_parts,
    "completeMultipartUpload": complete,
    "abortMultipartUpload": abort,
}


def capability(settings: GatewaySettings) -> dict[str, Any]:
    """What ``/api/info`` says under ``multipartUpload``."""
    return {
        "requestTypes": sorted(HANDLERS),
        "minPartSize": settings.multipart_min_part_size,
        "maxPartSize": settings.multipart_max_part_size,
        "maxParts": settings.multipart_max_parts,
        "maxSize": settings.multipart_max_size,
        "defaultPartSize": DEFAULT_PART_SIZE,
    }
