"""Chunk uploads (an extension of ``POST /api/gateway``, advertised in ``/api/info`` as
``chunkUpload``; docs/design-chunks.md, docs/gateway.md)::

    initiateChunkList   {hash, hashAlg, size, chunkSize, listSha1, listSize}
                                        → {alreadyExists: true} | {objectKey, signedUploadUrl}
    finalizeChunkList   {… the same, objectKey}                          → {}
    initiateChunkUpload {hash, hashAlg, chunkSize, indices, acceptsUploadHeaders?}
                        → {chunks: {"<i>": {alreadyExists: true} | {objectKey, signedUploadUrl,
                                                                      signedUploadHeaders?}}}
    finalizeChunkUpload {hash, hashAlg, chunkSize, index, objectKey}     → {}
    findChunks          {hash, hashAlg, indices, includePending?} → {found: false}
                        | {found, wholeFile, url, size}
                        | {found, size, chunkSize, listUrl, listSha1, chunks: {"<i>": url},
                           present?}  (includePending: URLs of every chunk asked for, the
                           ones not uploaded yet answer 404 until they are; ``present``
                           lists those that are)

The signed list goes up as an object (to a staging key of the document's sha1) and is
checked when finalized: size and sha1, signature, signer = caller, hash/size/chunkSize/
zone. A chunk goes up to a staging key of its own sha1 (or, store-verified, straight to
its key) and is readable only once its size and sha1 match the list.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from ..chunking import LIST_VERSION, MAX_CHUNKS, chunk_size_for
from ..errors import IntegrityError
from . import keys
from .api import DIRECT_URL_TTL_SEC, Call, Handler
from .chunk_check import ChunkChecks
from .chunk_store import MAX_LIST_BYTES, StoredList, parse_list, refused
from .envelope import Payload, Sha1, Size
from .problems import ApiError, bad_request
from .zones import Zone

CHUNKS_KEY = web.AppKey("chunks", ChunkChecks)
MAX_INDICES = 64
Index = Annotated[int, Field(ge=0, lt=MAX_CHUNKS)]
Indices = Annotated[list[Index], Field(min_length=1, max_length=MAX_INDICES)]
ObjectKey = Annotated[str, Field(max_length=1000)]
ChunkSize = Annotated[int, Field(ge=1, le=1 << 50)]


class InitiateChunkList(Payload):
    type: Literal["initiateChunkList"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    size: Size
    chunkSize: ChunkSize
    listSha1: Sha1
    listSize: Annotated[int, Field(ge=1, le=MAX_LIST_BYTES)]


class FinalizeChunkList(InitiateChunkList):
    type: Literal["finalizeChunkList"]  # type: ignore[assignment]
    objectKey: ObjectKey


class InitiateChunkUpload(Payload):
    type: Literal["initiateChunkUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    chunkSize: ChunkSize
    indices: Indices
    acceptsUploadHeaders: bool = False


class FinalizeChunkUpload(Payload):
    type: Literal["finalizeChunkUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    chunkSize: ChunkSize
    index: Index
    objectKey: ObjectKey


class FindChunks(Payload):
    type: Literal["findChunks"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    indices: Indices
    includePending: bool = False  # URLs of chunks not uploaded yet too (they 404 until then)


def invalid_list(why: str) -> ApiError:
    return bad_request("chunk_list_invalid", f"the chunk list was refused: {why}")


def checks(call: Call) -> ChunkChecks:
    return call.request.app[CHUNKS_KEY]


async def initiate_list(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, InitiateChunkList)
    await call.uploader()
    if p.chunkSize != chunk_size_for(p.size):
        raise invalid_list(f"chunkSize {p.chunkSize} is not {chunk_size_for(p.size)}, the chunk "
                           f"size of a {p.size}-byte file")
    zone, store = call.zone, checks(call).store
    await store.ensure_not_refused(zone, p.hash, p.chunkSize)
    if await zone.storage.size_of(keys.chunk_list_key(zone.prefix, p.hash, p.chunkSize)) is not None:
        return {"type": p.type, "alreadyExists": True}
    staging = keys.staging_key(zone.prefix, p.listSha1, keys.new_upload_id())
    url = zone.storage.upload_url(call.url_context(), staging, call.settings.upload_url_ttl_sec,
                                  p.listSize)
    return {"type": p.type, "alreadyExists": False, "objectKey": staging, "signedUploadUrl": url}


async def finalize_list(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, FinalizeChunkList)
    await call.uploader()
    zone, service = call.zone, checks(call)
    await service.store.ensure_not_refused(zone, p.hash, p.chunkSize)
    keys.parse_staging_key(zone.prefix, p.objectKey, p.listSha1)
    checked = f"{p.objectKey}.list"  # beside the staged upload; swept with it
    await zone.storage.promote(p.objectKey, checked, p.listSize, p.listSha1)
    try:
        data = await zone.storage.read_small(checked, MAX_LIST_BYTES + 1) or b""
    finally:
        await zone.storage.delete(checked)
    stored = check_list(data, call, p)
    key = keys.chunk_list_key(zone.prefix, p.hash, p.chunkSize)
    async with service.store.lock(zone, p.hash):
        there = await service.store.read_list(zone, p.hash, p.chunkSize, fresh=True)
        if there is not None and there.chunks != stored.chunks:
            raise ApiError(409, "chunk_list_conflict",
                           f"another chunk list of sha1://{p.hash} (signed by client {there.signer}) "
                           "is registered and its chunks differ: one of the two files is not what "
                           "its sha1 says. Check the file (kachery-resource link it again)")
        if there is None:
            await zone.storage.write_small(key, data)
    if await zone.storage.size_of(keys.content_key(zone.prefix, p.hash)) is not None:
        service.arrived(zone, p.hash)  # the whole file came first: check the list now
    return {"type": p.type}


def check_list(data: bytes, call: Call, p: FinalizeChunkList) -> StoredList:
    """The uploaded document as a list of this call's file, signed by the caller."""
    try:
        stored = parse_list(data, call.zone.name)
    except IntegrityError as exc:
        raise invalid_list(str(exc)) from None
    if stored.signer != call.client_id:
        raise invalid_list(f"it is signed by client {stored.signer}, not by the caller")
    got = stored.chunks
    for name, mine, theirs in (("hash", got.sha1, p.hash), ("size", got.size, p.size),
                               ("chunkSize", got.chunk_size, p.chunkSize)):
        if mine != theirs:
            raise invalid_list(f"its {name} is {mine!r}, the call's is {theirs!r}")
    return stored


async def listed(call: Call, sha1: str, chunk_size: int) -> StoredList:
    """The list a chunk call needs, or 409 ``chunk_list_refused`` / 400 ``chunk_list_missing``."""
    store = checks(call).store
    await store.ensure_not_refused(call.zone, sha1, chunk_size)
    stored = await store.read_list(call.zone, sha1, chunk_size)
    if stored is None:
        raise bad_request("chunk_list_missing",
                          f"no chunk list of sha1://{sha1} at chunk size {chunk_size} is registered; "
                          "register it (initiateChunkList, finalizeChunkList) before its chunks")
    return stored


def ensure_indices(stored: StoredList, indices: list[int]) -> None:
    wrong = [i for i in indices if i >= stored.chunks.count]
    if wrong:
        raise bad_request("invalid_request", f"chunks {wrong[:10]} are beyond the "
                          f"{stored.chunks.count} chunks of sha1://{stored.chunks.sha1}")


async def existing(zone: Zone, sha1: str, chunk_size: int, indices: list[int]) -> set[int]:
    """Which of ``indices`` the zone holds."""
    sizes = await asyncio.gather(*(zone.storage.size_of(keys.chunk_key(zone.prefix, sha1, chunk_size, i))
                                   for i in indices))
    return {i for i, size in zip(indices, sizes, strict=True) if size is not None}


async def initiate_chunks(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, InitiateChunkUpload)
    await call.uploader()
    stored = await listed(call, p.hash, p.chunkSize)
    indices = sorted(set(p.indices))
    ensure_indices(stored, indices)
    zone, ctx, ttl = call.zone, call.url_context(), call.settings.upload_url_ttl_sec
    there = await existing(zone, p.hash, p.chunkSize, indices)
    answer: dict[str, Any] = {}
    for i in indices:
        sha1, length = stored.chunks.sha1_of(i), stored.chunks.span(i)[1]
        if i in there:
            answer[str(i)] = {"alreadyExists": True}
        elif p.acceptsUploadHeaders and zone.storage.verifies_sha1:
            key = keys.chunk_key(zone.prefix, p.hash, p.chunkSize, i)
            url, headers = zone.storage.checked_upload_url(ctx, key, sha1, length,
                                                           min(ttl, DIRECT_URL_TTL_SEC))
            answer[str(i)] = {"alreadyExists": False, "objectKey": key, "signedUploadUrl": url,
                              "signedUploadHeaders": headers}
        else:
            key = keys.staging_key(zone.prefix, sha1, keys.new_upload_id())
            answer[str(i)] = {"alreadyExists": False, "objectKey": key,
                              "signedUploadUrl": zone.storage.upload_url(ctx, key, ttl, length)}
    return {"type": p.type, "chunks": answer}


async def finalize_chunk(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, FinalizeChunkUpload)
    await call.uploader()
    stored = await listed(call, p.hash, p.chunkSize)
    ensure_indices(stored, [p.index])
    zone = call.zone
    sha1, length = stored.chunks.sha1_of(p.index), stored.chunks.span(p.index)[1]
    key = keys.chunk_key(zone.prefix, p.hash, p.chunkSize, p.index)
    if p.objectKey == key:  # store-verified: it is there (and checked by the store), or not
        await zone.storage.confirm(key, length, sha1)
    else:
        keys.parse_staging_key(zone.prefix, p.objectKey, sha1)
        await zone.storage.promote(p.objectKey, key, length, sha1)
    return {"type": p.type}


async def find_chunks(call: Call) -> dict[str, Any]:
    p = call.payload
    assert isinstance(p, FindChunks)
    await call.ensure_downloader()
    zone, ctx, ttl = call.zone, call.url_context(), call.settings.download_url_ttl_sec
    content = keys.content_key(zone.prefix, p.hash)
    size = await zone.storage.size_of(content)
    if size is not None:
        return {"type": p.type, "found": True, "wholeFile": True, "size": size,
                "url": zone.storage.download_url(ctx, content, ttl)}
    store = checks(call).store
    stored = await store.find_list(zone, p.hash)
    if stored is None:
        return {"type": p.type, "found": False}
    chunks = stored.chunks
    marker = await store.marker(zone, p.hash, chunks.chunk_size)
    if marker is not None and not marker.ok:
        raise refused(p.hash, marker)
    indices = sorted(set(p.indices))
    ensure_indices(stored, indices)
    there = await existing(zone, p.hash, chunks.chunk_size, indices)
    urls = {str(i): zone.storage.download_url(ctx, keys.chunk_key(zone.prefix, p.hash,
                                                                  chunks.chunk_size, i), ttl)
            for i in indices if i in there or p.includePending}
    pending = {"present": sorted(there)} if p.includePending else {}
    return {"type": p.type, "found": True, "wholeFile": False, "size": chunks.size,
            "chunkSize": chunks.chunk_size, "listSha1": stored.doc_sha1, "chunks": urls,
            **pending, "listUrl": zone.storage.download_url(
                ctx, keys.chunk_list_key(zone.prefix, p.hash, chunks.chunk_size), ttl)}


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "initiateChunkList": InitiateChunkList,
    "finalizeChunkList": FinalizeChunkList,
    "initiateChunkUpload": InitiateChunkUpload,
    "finalizeChunkUpload": FinalizeChunkUpload,
    "findChunks": FindChunks,
}

HANDLERS: dict[str, Handler] = {
    "initiateChunkList": initiate_list,
    "finalizeChunkList": finalize_list,
    "initiateChunkUpload": initiate_chunks,
    "finalizeChunkUpload": finalize_chunk,
    "findChunks": find_chunks,
}


def capability() -> dict[str, Any]:
    """What ``/api/info`` says under ``chunkUpload``."""
    return {"requestTypes": sorted(HANDLERS), "listVersion": LIST_VERSION,
            "maxChunks": MAX_CHUNKS, "maxChunkListBytes": MAX_LIST_BYTES}
