"""ProxyConnection against an in-process stand-in proxy: v1/v2 negotiation, exact v1
messages, garbage tolerated, reconnect, one KACHERY_RESOURCE_URL line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.config import ResourceConfig
from kachery_resource.daemon.connection import ProxyConnection, websocket_url
from kachery_resource.daemon.jobs import JobManager
from kachery_resource.errors import ProxyRefusedError
from kachery_resource.store import LocalFile

HAVE = "a" * 40


class StandInProxy:
    def __init__(self, protocols: list[int] | None) -> None:
        self.protocols = protocols
        self.initialized: list[dict[str, Any]] = []
        self.responses: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sockets: list[web.WebSocketResponse] = []
        self.stdout = ""

    async def serve(self, port: int) -> web.AppRunner:
        """Its WebSocket on ``port`` (no /api/info: an old proxy), until the runner is cleaned up."""
        app = web.Application()
        app.router.add_get("/", self.ws)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    async def info(self, request: web.Request) -> web.Response:
        if self.protocols is None:
            return web.Response(status=404, text="Cannot GET /api/info")
        return web.json_response({"service": "kachery-resource-proxy", "protocols": self.protocols})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        first = await ws.receive_json()
        self.initialized.append(first)
        await ws.send_json({"type": "acknowledge"})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self.responses.put(json.loads(msg.data))
        return ws

    async def send(self, data: Any) -> None:
        ws = self.sockets[-1]
        await (ws.send_str(data) if isinstance(data, str) else ws.send_json(data))


class NoUploads:
    async def is_in_bucket(self, sha1: str) -> bool:
        return True

    async def upload(self, local: LocalFile, progress: Callable[[int], None]) -> bool:
        progress(local.size)  # like initiateFileUpload answering alreadyExists
        return False


async def resolve(sha1: str) -> LocalFile | None:
    return LocalFile(sha1, Path("/x"), 7, 0.0, False) if sha1 == HAVE else None


@pytest.fixture(params=[None, [1, 2]], ids=["v1-proxy", "v2-proxy"])
async def setup(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
                ) -> AsyncIterator[tuple[StandInProxy, ProxyConnection]]:
    proxy = StandInProxy(request.param)
    app = web.Application()
    app.router.add_get("/api/info", proxy.info)
    app.router.add_get("/", proxy.ws)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    config = ResourceConfig(resourceName="res1", proxyUrl=url, proxySecret="sec",
                            kacheryZone="z1")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        conn.backoff.first = 0.05
        conn.backoff.reset()
        task = asyncio.create_task(conn.run_forever())
        for _ in range(200):
            if proxy.initialized:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        proxy.stdout = capsys.readouterr().out
        yield proxy, conn
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await server.close()


def request(request_id: str, uri: str, **extra: Any) -> dict[str, Any]:
    return {"type": "requestFromClient", "resourceName": "res1", "zone": "z1",
            "request": {"type": "fileUpload", "uri": uri, "timeoutMsec": 5000},
            "timeoutMsec": 10000, "requestId": request_id, **extra}


async def test_initialize_matches_negotiated_protocol(setup: tuple[StandInProxy, ProxyConnection]) -> None:
    proxy, conn = setup
    init = proxy.initialized[0]
    expected = {"type": "initialize", "resourceName": "res1", "zone": "z1", "proxySecret": "sec"}
    if proxy.protocols is None:
        assert init == expected and conn.protocol == 1
    else:
        assert init == {**expected, "protocolVersion": 2, "requestTypes": ["fileUpload"]}
        assert conn.protocol == 2


async def test_requests_garbage_and_reconnect(setup: tuple[StandInProxy, ProxyConnection],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    proxy, _conn = setup
    await proxy.send("this is not json")
    await proxy.send({"type": "somethingNew", "x": 1})
    await proxy.send([1, 2, 3])
    await proxy.send({**request("noid", f"sha1://{HAVE}"), "requestId": None})
    await proxy.send(request("bad1", "sha1://XYZ"))
    await proxy.send(request("bad2", f"sha1://{HAVE}", request={"type": "deleteEverything"}))
    await proxy.send(request("ok1", f"sha1://{HAVE}"))
    await proxy.send(request("nf1", "sha1://" + "b" * 40))
    got = {}
    for _ in range(4):
        r = await asyncio.wait_for(proxy.responses.get(), 5)
        got[r["requestId"]] = r
    assert got["bad1"]["response"]["status"]["status"] == "error"
    assert "sha1" in got["bad1"]["response"]["status"]["error"]
    assert got["bad2"]["error"] and got["bad2"]["response"] == {}
    ok = got["ok1"]
    assert set(ok) == {"type", "requestId", "response"}
    assert ok["response"]["type"] == "fileUpload"
    status = ok["response"]["status"]
    assert status["status"] == "completed" and status["size"] == 7 and status["bytesUploaded"] == 7
    assert set(status) <= {"status", "size", "bytesUploaded", "timestampRequested",
                           "timestampStarted", "timestampCompleted", "error"}
    assert got["nf1"]["response"]["status"] == {"status": "not-found"}
    # the proxy drops the socket: the daemon comes back and serves again
    await proxy.sockets[-1].close()
    for _ in range(300):
        if len(proxy.initialized) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(proxy.initialized) == 2
    await asyncio.sleep(0.05)
    await proxy.send(request("ok2", f"sha1://{HAVE}"))
    r = await asyncio.wait_for(proxy.responses.get(), 5)
    assert r["requestId"] == "ok2" and r["response"]["status"]["status"] == "completed"
    # the URL line was printed once, at the first acknowledge, not again after reconnecting
    assert proxy.stdout.count("KACHERY_RESOURCE_URL=") == 1
    assert proxy.stdout.strip().endswith("/r/res1")
    assert "KACHERY_RESOURCE_URL" not in capsys.readouterr().out


async def test_restarted_proxy_is_found_before_the_backoff_runs_out() -> None:
    from ..servers import free_port

    port = free_port()
    proxy = StandInProxy(None)

    runner = await proxy.serve(port)
    config = ResourceConfig(resourceName="res1", proxyUrl=f"http://127.0.0.1:{port}",
                            proxySecret="sec")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        conn.backoff.first = 3.0  # tries at ≈ 2.3–3 s (refused), then ≈ 6.8–9 s
        conn.backoff.reset()
        task = asyncio.create_task(conn.run_forever())
        for _ in range(200):
            if proxy.initialized:
                break
            await asyncio.sleep(0.01)
        for ws in proxy.sockets:
            await ws.close()
        await runner.cleanup()  # the proxy goes away …
        await asyncio.sleep(3.5)  # without the port probe the next try would come ≥ 3 s later
        runner = await proxy.serve(port)  # … and comes back on the same port
        back = asyncio.get_running_loop().time()
        for _ in range(500):
            if len(proxy.initialized) == 2:
                break
            await asyncio.sleep(0.01)
        took = asyncio.get_running_loop().time() - back
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await runner.cleanup()
    assert len(proxy.initialized) == 2 and took < 2.5


@pytest.mark.parametrize(("proxy_url", "ws_url"), [
    ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/"),  # never an empty path
    ("https://relay.example.org", "wss://relay.example.org/"),
    ("https://example.org/kachery/proxy", "wss://example.org/kachery/proxy"),
])
def test_websocket_url(proxy_url: str, ws_url: str) -> None:
    assert websocket_url(proxy_url) == ws_url


async def refusing_proxy(code: int, *, acknowledge: bool = False) -> TestServer:
    """A stand-in proxy that closes every daemon's socket with ``code`` (after an
    acknowledge if asked, as a takeover does)."""
    async def refuse(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive_json()
        if acknowledge:
            await ws.send_json({"type": "acknowledge"})
        await ws.close(code=code, message=b"refused")
        return ws

    app = web.Application()
    app.router.add_get("/", refuse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.parametrize(("code", "grace", "hint"), [
    (4001, 75.0, "the proxy did not accept proxySecret"),
    (4003, 75.0, "the proxy serves another zone"),
    (4002, 0.0, "another daemon already serves this resource name"),
])
async def test_a_refusal_retrying_cannot_cure_ends_the_daemon(code: int, grace: float,
                                                               hint: str) -> None:
    server = await refusing_proxy(code)
    config = ResourceConfig(resourceName="res1", proxyUrl=str(server.make_url("")).rstrip("/"),
                            proxySecret="sec")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session,
                               name_taken_grace_sec=grace)
        with pytest.raises(ProxyRefusedError) as caught:
            await asyncio.wait_for(conn.run_forever(), 20)
    await server.close()
    assert f"(code {code}: refused); {hint}" in str(caught.value)
    assert ProxyRefusedError.exit_code != 0


async def test_a_takeover_ends_the_replaced_daemon() -> None:
    server = await refusing_proxy(4009, acknowledge=True)
    config = ResourceConfig(resourceName="res1", proxyUrl=str(server.make_url("")).rstrip("/"),
                            proxySecret="tok")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        with pytest.raises(ProxyRefusedError, match="two daemons serve this resource"):
            await asyncio.wait_for(conn.run_forever(), 20)
    await server.close()


@pytest.mark.parametrize(("code", "hint"), [
    (4002, "another daemon already serves this resource name"),  # within the grace period
    (4008, "the proxy got no initialize in time"),
])
async def test_a_refusal_that_may_heal_is_retried_with_one_line(
        code: int, hint: str, caplog: pytest.LogCaptureFixture) -> None:
    server = await refusing_proxy(code)
    config = ResourceConfig(resourceName="res1", proxyUrl=str(server.make_url("")).rstrip("/"),
                            proxySecret="sec")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        task = asyncio.create_task(conn.run_forever())
        for _ in range(2000):  # up to 20 s on a loaded machine
            if "instead of acknowledging" in caplog.text:
                break
            await asyncio.sleep(0.01)
        assert not task.done()  # still trying
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await server.close()
    lines = [r.getMessage() for r in caplog.records if "instead of acknowledging" in r.getMessage()]
    assert f"(code {code}: refused); {hint}" in lines[0]
    assert "retrying in" in lines[0]  # one line per attempt, with the delay
    assert not any(r.getMessage().startswith("reconnecting") for r in caplog.records)


async def test_an_unreachable_proxy_is_one_readable_line(caplog: pytest.LogCaptureFixture) -> None:
    from ..servers import free_port

    config = ResourceConfig(resourceName="res1", proxyUrl=f"http://127.0.0.1:{free_port()}",
                            proxySecret="sec")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        task = asyncio.create_task(conn.run_forever())
        for _ in range(2000):
            if "cannot connect" in caplog.text:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert f"proxy {config.proxyUrl}: cannot connect: connection refused" in caplog.text


async def test_a_refusal_after_being_accepted_is_retried_not_fatal(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A proxy restarted without the daemon's secret must not end it for good."""
    import kachery_resource.daemon.connection as connection

    monkeypatch.setattr(connection, "REFUSED_RETRY_SEC", 0.05)
    server = await refusing_proxy(4001)
    config = ResourceConfig(resourceName="res1", proxyUrl=str(server.make_url("")).rstrip("/"),
                            proxySecret="sec")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        conn.accepted_once = True  # as after a first acknowledge
        task = asyncio.create_task(conn.run_forever())
        for _ in range(2000):
            if sum("accepted before" in r.getMessage() for r in caplog.records) >= 2:
                break
            await asyncio.sleep(0.01)
        assert not task.done()  # still trying, slowly
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await server.close()
    assert sum("accepted before" in r.getMessage() for r in caplog.records) >= 2
