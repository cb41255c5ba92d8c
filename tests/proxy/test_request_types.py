"""Request types a daemon declares: routed when declared, refused at once when not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .conftest import SECRET, SHA_A, Proxy, client_body

RANGES = {"type": "fileRanges", "uri": f"sha1://{SHA_A}", "ranges": [[0, 10]], "timeoutMsec": 1000}


def ranges_body(name: str) -> dict[str, Any]:
    return {**client_body(name), "request": dict(RANGES)}


@contextlib.asynccontextmanager
async def v2_daemon(proxy: Proxy, name: str, types: list[str] | None,
                    received: list[dict[str, Any]]) -> AsyncIterator[None]:
    """A protocol-2 daemon declaring ``types`` (None: no declaration) that records every
    request and answers fileRanges with ``ready``."""
    init: dict[str, Any] = {"type": "initialize", "resourceName": name, "zone": "default",
                            "proxySecret": SECRET, "protocolVersion": 2}
    if types is not None:
        init["requestTypes"] = types
    async with aiohttp.ClientSession() as s, s.ws_connect("ws" + proxy.url[4:]) as ws:
        await ws.send_json(init)
        assert (await ws.receive_json(timeout=5))["type"] == "acknowledge"

        async def answer() -> None:
            async for msg in ws:
                data = msg.json()
                received.append(data)
                response = {"type": "fileRanges", "status": "ready", "size": 10,
                            "chunkSize": 4194304, "chunks": [{"index": 0, "status": "completed"}]}
                await ws.send_json({"type": "responseToClient", "requestId": data["requestId"],
                                    "response": response})

        task = asyncio.create_task(answer())
        try:
            yield
        finally:
            task.cancel()


async def test_info_lists_the_request_types_the_proxy_routes(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{proxy.url}/api/info") as r:
        assert (await r.json())["resourceRequestTypes"] == ["fileUpload", "fileRanges"]


async def test_declared_type_is_routed(proxy: Proxy, session: aiohttp.ClientSession) -> None:
    received: list[dict[str, Any]] = []
    async with v2_daemon(proxy, "ranged", ["fileUpload", "fileRanges"], received):
        status, body, _ = await proxy.post(session, "ranged", ranges_body("ranged"))
    assert status == 200 and body["response"]["status"] == "ready"
    assert received[0]["request"]["ranges"] == [[0, 10]]


async def test_undeclared_type_is_refused_and_never_forwarded(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    received: list[dict[str, Any]] = []
    async with v2_daemon(proxy, "plain", None, received):
        status, body, _ = await proxy.post(session, "plain", ranges_body("plain"))
        assert status == 400 and body["code"] == "unsupported-request"
        assert "fileRanges" in body["message"] and "fileUpload" in body["message"]
        other = {**client_body("plain"), "request": {"type": "somethingElse", "uri": "x"}}
        status, body, _ = await proxy.post(session, "plain", other)
        assert status == 400 and body["code"] == "unsupported-request"
        status, _, _ = await proxy.post(session, "plain", client_body("plain"))
        assert status == 200  # fileUpload still goes through
    assert [m["request"]["type"] for m in received] == ["fileUpload"]


async def test_v1_daemon_gets_no_ranges(proxy: Proxy, session: aiohttp.ClientSession) -> None:
    d = await proxy.daemon("old")
    status, body, _ = await proxy.post(session, "old", ranges_body("old"))
    assert status == 400 and body["code"] == "unsupported-request" and "protocol 1" in body["message"]
    assert d.received == [] and d.violations == []
