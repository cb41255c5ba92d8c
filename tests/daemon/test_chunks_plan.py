"""The daemon's chunks plan against the real gateway (in process, local directory):
the signed list, each chunk checked against it (docs/design-chunks.md)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.chunking import ChunkList, ChunkRecords
from kachery_resource.daemon.uploads import chunks as chunks_plan
from kachery_resource.daemon.uploads.chunks import ChunksPlan
from kachery_resource.daemon.uploads.gateway import DaemonGateway, GatewayRefused
from kachery_resource.errors import FileChangedError
from kachery_resource.gateway import keys
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.registry import ClientRecord, now_ms
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys
from kachery_resource.store import LocalFile

MIB = 1024 * 1024
CS = 256 * 1024  # the chunks of a file past one chunk (ONE) and up to 16 GiB
ONE = 4 * MIB
LAST = 18  # of the file below


@dataclass
class Gateway:
    url: str
    root: Path
    keys: ClientKeys
    puts: list[str] = field(default_factory=list)
    fail_puts: int = 0

    def chunk(self, sha1: str, index: int) -> bytes | None:
        path = self.root / keys.chunk_key("", sha1, CS, index)
        return path.read_bytes() if path.is_file() else None

    def chunks(self, sha1: str) -> list[int]:
        folder = self.root / keys.chunk_set("", sha1, CS)
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    root = tmp_path / "storage"
    app = build_app(load_settings(storage=str(root)))
    g = Gateway("", root, ClientKeys.generate())

    @web.middleware
    async def watch_puts(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.method == "PUT":
            g.puts.append(request.path)
            if g.fail_puts:
                g.fail_puts -= 1
                async for _ in request.content.iter_any():  # drain the body
                    pass
                return web.Response(status=503, text="slow down")
        return await handler(request)

    app.middlewares.append(watch_puts)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await app[ZONES_KEY]["default"].registry.put(ClientRecord(
        clientId=g.keys.client_id, zone="default", label="daemon", ownerId="t",
        timestampCreated=now_ms(), approved=True, upload=True, download=True))
    g.url = str(server.make_url("")).rstrip("/")
    yield g
    await server.close()


def hashed_file(tmp_path: Path, size: int) -> tuple[LocalFile, ChunkList, bytes]:
    data = os.urandom(size)
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    chunks = ChunkRecords(tmp_path / "store").hash_file(path)
    return LocalFile(chunks.sha1, path, size, path.stat().st_mtime, True), chunks, data


def count_list_calls(plan: ChunksPlan) -> list[str]:
    """Spy on the plan's list registrations (the real calls still go to the gateway)."""
    seen: list[str] = []
    initiate, finalize = plan.api.initiate_list, plan.api.finalize_list

    async def spy_initiate(*args: Any) -> Any:
        seen.append("initiate")
        return await initiate(*args)

    async def spy_finalize(*args: Any) -> Any:
        seen.append("finalize")
        return await finalize(*args)

    plan.api.initiate_list = spy_initiate  # type: ignore[method-assign]
    plan.api.finalize_list = spy_finalize  # type: ignore[method-assign]
    return seen


async def test_uploads_only_the_chunks_asked_for(gateway: Gateway, tmp_path: Path) -> None:
    local, chunks, data = hashed_file(tmp_path, ONE + 2 * CS + 100)  # 18 × 256 KiB, 100 B
    progress: list[int] = []
    async with aiohttp.ClientSession() as session:
        plan = ChunksPlan(DaemonGateway(session, gateway.url, gateway.keys, "default"))
        listing = count_list_calls(plan)
        assert await plan.offered()
        assert await plan.upload_chunks(local, chunks, [LAST, 0], progress.append) == {
            0: True, LAST: True}
        assert gateway.chunks(local.sha1) == [0, LAST]
        assert gateway.chunk(local.sha1, 0) == data[:CS]
        assert gateway.chunk(local.sha1, LAST) == data[LAST * CS:]
        assert sum(progress) == CS + 100
        puts = len(gateway.puts)
        assert await plan.upload_chunks(local, chunks, [1, LAST], progress.append) == {
            1: True, LAST: False}
        assert gateway.chunk(local.sha1, 1) == data[CS:2 * CS]
        assert len(gateway.puts) == puts + 1  # the last chunk was there: not sent again
        with pytest.raises(IndexError):
            await plan.upload_chunks(local, chunks, [LAST + 1], progress.append)
        # a second daemon process (a fresh plan) finds the list registered
        again = ChunksPlan(DaemonGateway(session, gateway.url, gateway.keys, "default"))
        assert await again.upload_chunks(local, chunks, [0], progress.append) == {0: False}
    assert listing == ["initiate", "finalize"]
    assert (gateway.root / keys.chunk_list_key("", local.sha1, CS)).is_file()


async def test_a_file_changed_since_hashing_sends_nothing(gateway: Gateway, tmp_path: Path) -> None:
    local, chunks, data = hashed_file(tmp_path, ONE + CS + 10)
    changed = bytearray(data)
    changed[CS + 3] ^= 1  # chunk 1, same size
    local.path.write_bytes(bytes(changed))
    async with aiohttp.ClientSession() as session:
        plan = ChunksPlan(DaemonGateway(session, gateway.url, gateway.keys, "default"))
        assert await plan.upload_chunks(local, chunks, [0], lambda n: None) == {0: True}
        with pytest.raises(FileChangedError, match="chunk 1"):
            await plan.upload_chunks(local, chunks, [1], lambda n: None)
    assert gateway.chunks(local.sha1) == [0]
    assert len(gateway.puts) == 2  # the list and chunk 0


async def test_a_failed_put_is_retried_and_a_refused_chunk_is_not(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local, chunks, data = hashed_file(tmp_path, ONE + 2 * CS)
    async with aiohttp.ClientSession() as session:
        plan = ChunksPlan(DaemonGateway(session, gateway.url, gateway.keys, "default"))
        await plan.register(chunks)
        gateway.fail_puts = 1
        assert await plan.upload_chunks(local, chunks, [0], lambda n: None) == {0: True}
        assert gateway.chunk(local.sha1, 0) == data[:CS] and len(gateway.puts) == 3
        real_put = chunks_plan.put_bytes

        async def tampering_put(session: aiohttp.ClientSession, url: str, body: bytes,
                                headers: Any = None) -> None:
            await real_put(session, url, bytes([body[0] ^ 1]) + body[1:], headers)

        monkeypatch.setattr(chunks_plan, "put_bytes", tampering_put)  # bytes change on the way
        with pytest.raises(GatewayRefused) as refused:
            await plan.upload_chunks(local, chunks, [1], lambda n: None)
        assert refused.value.code == "content_mismatch"
    assert len(gateway.puts) == 4 and gateway.chunks(local.sha1) == [0]


async def test_a_gateway_without_chunks(aiohttp_server: Any) -> None:
    app = web.Application()

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"multipartUpload": {}})

    app.router.add_get("/api/info", info)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        assert not await ChunksPlan(DaemonGateway(session, str(server.make_url("")).rstrip("/"),
                                                  ClientKeys.generate(), "default")).offered()
