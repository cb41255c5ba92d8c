"""The daemon's uploader (single plan) against an in-process stand-in gateway: signed calls, one streaming PUT with
Content-Length, hash check before the last byte, retries, empty files, the upload headers
a gateway asks for."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.daemon.uploads import put as put_mod
from kachery_resource.daemon.uploads.gateway import DaemonGateway
from kachery_resource.daemon.uploads.uploader import GatewayUploader
from kachery_resource.errors import GatewayError, IntegrityError
from kachery_resource.identity import ClientKeys, verify_signature
from kachery_resource.store import LocalFile


class StandIn:
    """Records what arrives; answers like a kachery gateway whose bucket is a dict."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.puts: list[dict[str, Any]] = []
        self.bucket: dict[str, bytes] = {}
        self.fail_puts = 0
        self.registered = True
        self.info: dict[str, Any] | None = None  # GET /api/info: 404 while None
        self.upload_headers: Any = None  # signedUploadHeaders to answer with, if any
        self.refuse_opt_in = False  # answer acceptsUploadHeaders like an older gateway
        self.refuse_headers = False  # answer PUTs that carry x-amz-checksum-sha1 with 403
        self.info_asked = 0
        self.fail_finalize = 0  # answer this many finalize calls with 503

    async def api_info(self, request: web.Request) -> web.Response:
        self.info_asked += 1
        if self.info is None:
            return web.Response(status=404)
        return web.json_response(self.info)

    async def gateway(self, request: web.Request) -> web.Response:
        body = await request.json()
        payload = body["payload"]
        assert verify_signature(payload, body["fromClientId"], body["signature"])
        self.calls.append(payload)
        kind, sha1 = payload["type"], payload.get("hash")
        if kind == "findFile":
            return web.json_response({"found": sha1 in self.bucket, "url": "x"})
        if kind == "getClientInfo":
            return web.json_response({"found": self.registered})
        if kind == "initiateFileUpload":
            if self.refuse_opt_in and "acceptsUploadHeaders" in payload:
                return web.json_response(status=400, data={
                    "error": "invalid_request", "message": "invalid initiateFileUpload request: "
                    "acceptsUploadHeaders: Extra inputs are not permitted"})
            if sha1 in self.bucket:
                return web.json_response({"alreadyExists": True})
            url = str(request.url.with_path(f"/put/{sha1}").with_query({}))
            answer = {"alreadyExists": False, "objectKey": f"sha1/{sha1}", "signedUploadUrl": url}
            if self.upload_headers is not None and payload.get("acceptsUploadHeaders"):
                answer["signedUploadHeaders"] = self.upload_headers
            return web.json_response(answer)
        if kind == "finalizeFileUpload":
            if self.fail_finalize:
                self.fail_finalize -= 1
                return web.Response(status=503, text="busy")
            return web.json_response({"type": "finalizeFileUpload"})
        return web.Response(status=500, text="Error: unknown")

    async def put(self, request: web.Request) -> web.Response:
        record: dict[str, Any] = {"headers": dict(request.headers), "complete": False}
        self.puts.append(record)
        if self.fail_puts:
            self.fail_puts -= 1
            return web.Response(status=503, text="slow down")
        if self.refuse_headers and "x-amz-checksum-sha1" in request.headers:
            return web.Response(status=403, text='<?xml version="1.0"?><Error><Code>AccessDenied'
                                '</Code><Message>no headers here</Message></Error>')
        data = bytearray()
        try:
            async for chunk in request.content.iter_chunked(65536):
                data += chunk
        except Exception:
            return web.Response(status=400)
        record["received"] = len(data)
        if request.content_length is not None and len(data) == request.content_length:
            record["complete"] = True
            self.bucket[request.match_info["sha1"]] = bytes(data)
        return web.Response(text="")


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    s = StandIn()
    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/api/gateway", s.gateway)
    app.router.add_put("/put/{sha1}", s.put)
    app.router.add_get("/api/info", s.api_info)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield s, str(server.make_url("")).rstrip("/")
    await server.close()


def local_file(path: Path, sha1: str | None = None) -> LocalFile:
    data = path.read_bytes()
    st = path.stat()
    return LocalFile(sha1 or hashlib.sha1(data).hexdigest(), path, st.st_size, st.st_mtime, False)


async def run_upload(url: str, local: LocalFile) -> list[int]:
    progress: list[int] = []
    async with aiohttp.ClientSession() as session:
        gw = DaemonGateway(session, url, ClientKeys.generate(), "default")
        up = GatewayUploader(gw)
        assert not await up.is_in_bucket(local.sha1)
        await up.upload(local, progress.append)
    return progress


async def test_streams_file_with_content_length_and_finalizes(standin: tuple[StandIn, str],
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    s, url = standin
    monkeypatch.setattr(put_mod, "BLOCK_SIZE", 100_000)
    path = tmp_path / "a file ü.bin"
    path.write_bytes(bytes(range(256)) * 2000)  # 512,000 bytes: several chunks
    local = local_file(path)
    progress = await run_upload(url, local)
    assert s.bucket[local.sha1] == path.read_bytes()
    put = s.puts[0]
    assert put["headers"]["Content-Length"] == "512000"
    assert "Transfer-Encoding" not in put["headers"]
    assert sum(progress) == 512000 and len(progress) == 6
    assert [c["type"] for c in s.calls] == ["findFile", "initiateFileUpload", "finalizeFileUpload"]
    assert s.calls[2]["size"] == 512000 and s.calls[2]["objectKey"] == f"sha1/{local.sha1}"


async def test_wrong_bytes_never_reach_the_last_byte(standin: tuple[StandIn, str],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    s, url = standin
    monkeypatch.setattr(put_mod, "BLOCK_SIZE", 100_000)
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 300_000)
    wrong = local_file(path, sha1="0" * 40)
    with pytest.raises(IntegrityError, match="no longer hashes"):
        await run_upload(url, wrong)
    await asyncio.sleep(0.1)
    assert s.bucket == {}
    assert all(not p["complete"] for p in s.puts)
    assert "finalizeFileUpload" not in [c["type"] for c in s.calls]


async def test_empty_file_and_already_existing(standin: tuple[StandIn, str], tmp_path: Path) -> None:
    s, url = standin
    path = tmp_path / "empty"
    path.write_bytes(b"")
    local = local_file(path)
    await run_upload(url, local)
    assert s.bucket[local.sha1] == b""
    assert s.puts[0]["headers"]["Content-Length"] == "0"
    # second time: initiate says alreadyExists (findFile is asked by the job, not here)
    async with aiohttp.ClientSession() as session:
        up = GatewayUploader(DaemonGateway(session, url, ClientKeys.generate(), "default"))
        await up.upload(local, lambda n: None)
    assert len(s.puts) == 1


async def test_transient_put_failure_is_retried(standin: tuple[StandIn, str], tmp_path: Path) -> None:
    s, url = standin
    s.fail_puts = 1
    path = tmp_path / "f.txt"
    path.write_text("hello")
    local = local_file(path)
    progress = await run_upload(url, local)
    assert s.bucket[local.sha1] == b"hello"
    assert len(s.puts) == 2 and sum(progress) == 5


async def test_gateway_refusal_is_not_retried(standin: tuple[StandIn, str]) -> None:
    s, url = standin
    async with aiohttp.ClientSession() as session:
        gw = DaemonGateway(session, url, ClientKeys.generate(), "default")
        with pytest.raises(GatewayError, match="500"):
            await gw.call({"type": "nonsense"})
        s.registered = False
        assert await gw.client_info() is None


async def test_sends_the_upload_headers_the_gateway_asks_for(standin: tuple[StandIn, str],
                                                              tmp_path: Path) -> None:
    """Only a gateway whose /api/info lists uploadHeaders is told the daemon accepts them;
    its signedUploadHeaders then go with the PUT, small (one piece) or streamed."""
    s, url = standin
    first = tmp_path / "first.bin"
    first.write_bytes(b"1" * 1000)
    await run_upload(url, local_file(first))
    assert "acceptsUploadHeaders" not in s.calls[1]  # no /api/info: as kachery-cloud asks

    s.info = {"uploadHeaders": True}
    s.upload_headers = {"x-amz-checksum-sha1": "c2hhMQ=="}
    asked = s.info_asked
    async with aiohttp.ClientSession() as session:
        uploader = GatewayUploader(DaemonGateway(session, url, ClientKeys.generate(), "default"))
        for name, size in [("small.bin", 1000), ("large.bin", 600_000)]:
            path = tmp_path / name
            path.write_bytes(name.encode() * (size // len(name)))
            local = local_file(path)
            await uploader.upload(local, lambda n: None)
            assert s.calls[-2]["type"] == "initiateFileUpload"
            assert s.calls[-2]["acceptsUploadHeaders"] is True
            assert s.puts[-1]["headers"]["x-amz-checksum-sha1"] == "c2hhMQ=="
            assert s.bucket[local.sha1] == path.read_bytes()
        uploader.close()
    assert s.info_asked == asked + 1  # /api/info once for both uploads (cached)


@pytest.mark.parametrize("headers", [{"bad name": "x"}, {"x-a": "line\r\nX-Injected: 1"},
                                     ["x-a", "1"], {"x-a": 1}])
async def test_malformed_upload_headers_are_refused(standin: tuple[StandIn, str], tmp_path: Path,
                                                    headers: Any) -> None:
    s, url = standin
    s.info = {"uploadHeaders": True}
    s.upload_headers = headers
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(GatewayError, match="signedUploadHeaders"):
        await run_upload(url, local_file(path))
    assert s.puts == [] and s.bucket == {}


async def test_falls_back_to_staged_uploads_when_the_store_verified_way_is_refused(
        standin: tuple[StandIn, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 403 on a PUT with upload headers (a proxy on the way, say), or a gateway instance
    that does not know acceptsUploadHeaders: the upload still completes, the staged way,
    and the daemon stops opting in."""
    s, url = standin
    s.info = {"uploadHeaders": True}
    s.upload_headers = {"x-amz-checksum-sha1": "c2hhMQ=="}
    s.refuse_headers = True
    path = tmp_path / "f.bin"
    path.write_bytes(b"f" * 600_000)
    local = local_file(path)
    async with aiohttp.ClientSession() as session:
        gw = DaemonGateway(session, url, ClientKeys.generate(), "default")
        await GatewayUploader(gw).upload(local, lambda n: None)
        assert gw.upload_headers is False
    assert s.bucket[local.sha1] == path.read_bytes()
    initiates = [c for c in s.calls if c["type"] == "initiateFileUpload"]
    assert [c.get("acceptsUploadHeaders") for c in initiates] == [True, None]
    assert [p["complete"] for p in s.puts] == [False, True]
    assert "AccessDenied: no headers here" in caplog.text and "<?xml" not in caplog.text

    s.refuse_opt_in, s.refuse_headers = True, False
    other = tmp_path / "g.bin"
    other.write_bytes(b"g" * 1000)
    before = len(s.calls)
    await run_upload(url, local_file(other))
    assert [c.get("acceptsUploadHeaders") for c in s.calls[before:]
            if c["type"] == "initiateFileUpload"] == [True, None]
    assert s.bucket[local_file(other).sha1] == other.read_bytes()


async def test_a_finalize_retried_after_a_store_verified_put_counts_as_sent(
        standin: tuple[StandIn, str], tmp_path: Path) -> None:
    """The PUT went straight to the content key; finalize failed once; the retry finds the
    file in the bucket: still this daemon's upload (logged completed, not 'already in
    bucket')."""
    s, url = standin
    s.fail_finalize = 1
    path = tmp_path / "f.bin"
    path.write_bytes(b"f" * 300_000)
    local = local_file(path)
    progress: list[int] = []
    async with aiohttp.ClientSession() as session:
        up = GatewayUploader(DaemonGateway(session, url, ClientKeys.generate(), "default"))
        assert await up.upload(local, progress.append) is True
        up.close()
    assert sum(progress) == 300_000
    assert [c["type"] for c in s.calls] == ["initiateFileUpload", "finalizeFileUpload",
                                            "initiateFileUpload"]
    assert len(s.puts) == 1
