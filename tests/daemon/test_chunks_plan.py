"""The chunks plan against an in-process stand-in gateway that checks what the design
asks of the real one (docs/design-chunks.md): the signed list, each chunk's sha1."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.chunking import ChunkList, ChunkRecords, read_signed_chunk_list
from kachery_resource.daemon.uploads.chunks import ChunksPlan
from kachery_resource.daemon.uploads.chunks_api import REQUEST_TYPES
from kachery_resource.daemon.uploads.gateway import DaemonGateway, GatewayRefused
from kachery_resource.errors import FileChangedError, IntegrityError
from kachery_resource.identity import ClientKeys, verify_signature
from kachery_resource.store import LocalFile

MIB = 1024 * 1024


def refuse(code: str) -> web.Response:
    return web.json_response(status=400, data={"error": code, "message": code})


class StandIn:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.puts: list[str] = []
        self.staged: dict[str, bytes] = {}
        self.lists: dict[str, ChunkList] = {}
        self.chunks: dict[tuple[str, int], bytes] = {}
        self.info: dict[str, Any] = {"chunkUpload": {"requestTypes": sorted(REQUEST_TYPES)}}
        self.fail_puts = 0
        self.tamper = False

    async def api_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.info)

    async def put(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.puts.append(key)
        if self.fail_puts:
            self.fail_puts -= 1
            return web.Response(status=503, text="slow down")
        body = bytearray(await request.read())
        if self.tamper and body:
            body[0] ^= 1
        self.staged[key] = bytes(body)
        return web.Response(text="")

    def target(self, request: web.Request, sha1: str) -> dict[str, Any]:
        key = f"staging/{sha1}/{uuid.uuid4().hex}"
        return {"objectKey": key, "signedUploadUrl": str(request.url.with_path(f"/put/{key}"))}

    async def gateway(self, request: web.Request) -> web.Response:
        body = await request.json()
        p, signer = body["payload"], body["fromClientId"]
        assert verify_signature(p, signer, body["signature"])
        self.calls.append(p)
        kind, sha1 = p["type"], p["hash"]
        if kind == "initiateChunkList":
            if sha1 in self.lists:
                return web.json_response({"alreadyExists": True})
            return web.json_response(self.target(request, p["listSha1"]))
        if kind == "finalizeChunkList":
            doc = self.staged.pop(p["objectKey"], b"")
            if hashlib.sha1(doc).hexdigest() != p["listSha1"] or len(doc) != p["listSize"]:
                return refuse("content_mismatch")
            try:
                chunks, by = read_signed_chunk_list(doc, p["zone"])
            except IntegrityError:
                return refuse("chunk_list_invalid")
            if by != signer or (chunks.sha1, chunks.size, chunks.chunk_size) != (
                    sha1, p["size"], p["chunkSize"]):
                return refuse("chunk_list_invalid")
            self.lists[sha1] = chunks
            return web.json_response({})
        chunks = self.lists.get(sha1)
        if chunks is None:
            return refuse("chunk_list_missing")
        if kind == "initiateChunkUpload":
            return web.json_response({"chunks": {
                str(i): {"alreadyExists": True} if (sha1, i) in self.chunks
                else self.target(request, chunks.sha1_of(i)) for i in p["indices"]}})
        if kind == "finalizeChunkUpload":
            i = p["index"]
            data = self.staged.pop(p["objectKey"], b"")
            if (len(data), hashlib.sha1(data).hexdigest()) != (chunks.span(i)[1], chunks.sha1_of(i)):
                return refuse("content_mismatch")  # never readable
            self.chunks[(sha1, i)] = data
            return web.json_response({})
        return refuse("unknown_request_type")


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    s = StandIn()
    app = web.Application(client_max_size=64 * MIB)
    app.router.add_post("/api/gateway", s.gateway)
    app.router.add_put("/put/{key:.+}", s.put)
    app.router.add_get("/api/info", s.api_info)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield s, str(server.make_url("")).rstrip("/")
    await server.close()


def hashed_file(tmp_path: Path, size: int) -> tuple[LocalFile, ChunkList, bytes]:
    data = os.urandom(size)
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    chunks = ChunkRecords(tmp_path / "store").hash_file(path)
    return LocalFile(chunks.sha1, path, size, path.stat().st_mtime, True), chunks, data


async def test_uploads_only_the_chunks_asked_for(standin: tuple[StandIn, str],
                                                 tmp_path: Path) -> None:
    s, url = standin
    local, chunks, data = hashed_file(tmp_path, 2 * 4 * MIB + 100)  # chunks of 4 MiB, 4 MiB, 100 B
    progress: list[int] = []
    async with aiohttp.ClientSession() as session:
        plan = ChunksPlan(DaemonGateway(session, url, ClientKeys.generate(), "default"))
        assert await plan.offered()
        assert await plan.upload_chunks(local, chunks, [2, 0], progress.append) == {0: True, 2: True}
        assert s.chunks == {(local.sha1, 0): data[:4 * MIB], (local.sha1, 2): data[8 * MIB:]}
        assert sum(progress) == 4 * MIB + 100
        puts = len(s.puts)
        assert await plan.upload_chunks(local, chunks, [1, 2], progress.append) == {1: True, 2: False}
        assert s.chunks[(local.sha1, 1)] == data[4 * MIB:8 * MIB]
        assert len(s.puts) == puts + 1  # chunk 2 was there: not sent again
        with pytest.raises(IndexError):
            await plan.upload_chunks(local, chunks, [3], progress.append)
    kinds = [c["type"] for c in s.calls]
    assert kinds.count("initiateChunkList") == 1 and kinds.count("finalizeChunkList") == 1


async def test_a_file_changed_since_hashing_sends_nothing(standin: tuple[StandIn, str],
                                                          tmp_path: Path) -> None:
    s, url = standin
    local, chunks, data = hashed_file(tmp_path, 4 * MIB + 10)
    changed = bytearray(data)
    changed[4 * MIB + 3] ^= 1  # chunk 1, same size
    local.path.write_bytes(bytes(changed))
    async with aiohttp.ClientSession() as session:
        plan = ChunksPlan(DaemonGateway(session, url, ClientKeys.generate(), "default"))
        assert await plan.upload_chunks(local, chunks, [0], lambda n: None) == {0: True}
        with pytest.raises(FileChangedError, match="chunk 1"):
            await plan.upload_chunks(local, chunks, [1], lambda n: None)
    assert list(s.chunks) == [(local.sha1, 0)]
    assert len(s.puts) == 2  # the list and chunk 0


async def test_a_failed_put_is_retried_and_a_refused_chunk_is_not(standin: tuple[StandIn, str],
                                                                   tmp_path: Path) -> None:
    s, url = standin
    local, chunks, data = hashed_file(tmp_path, 2 * 4 * MIB)
    async with aiohttp.ClientSession() as session:
        plan = ChunksPlan(DaemonGateway(session, url, ClientKeys.generate(), "default"))
        await plan.register(chunks)
        s.fail_puts = 1
        assert await plan.upload_chunks(local, chunks, [0], lambda n: None) == {0: True}
        assert s.chunks[(local.sha1, 0)] == data[:4 * MIB] and len(s.puts) == 3
        s.tamper = True  # the bytes change on the way: the gateway refuses them, once
        with pytest.raises(GatewayRefused) as refused:
            await plan.upload_chunks(local, chunks, [1], lambda n: None)
        assert refused.value.code == "content_mismatch"
    assert len(s.puts) == 4 and (local.sha1, 1) not in s.chunks


async def test_a_gateway_without_chunks(standin: tuple[StandIn, str]) -> None:
    s, url = standin
    s.info = {"multipartUpload": {}}
    async with aiohttp.ClientSession() as session:
        assert not await ChunksPlan(DaemonGateway(session, url, ClientKeys.generate(),
                                                  "default")).offered()
