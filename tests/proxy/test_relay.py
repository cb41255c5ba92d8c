"""The relay with a strict v1 daemon: exact v1 messages, envelope, status codes."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from kachery_resource.messages import RequestFromClient, dump
from kachery_resource.proxy import fastpath

from .conftest import SHA_A, SHA_B, MakeProxy, Proxy, client_body
from .v1daemon import REQUEST_KEYS


async def test_v1_daemon_gets_exact_v1_messages_and_client_gets_envelope(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    done = {"status": "completed", "size": 12, "bytesUploaded": 12}
    d = await proxy.daemon("res1", statuses={SHA_A: done}, send_ping=True, ping_every=0.05)
    status, body, _ = await proxy.post(session, "res1", client_body("res1", SHA_A))
    assert status == 200
    assert body == {"type": "responseToClient",
                    "response": {"type": "fileUpload", "status": done}}
    status, body, _ = await proxy.post(session, "res1", client_body("res1", SHA_B))
    assert (status, body["response"]["status"]) == (200, {"status": "not-found"})
    await asyncio.sleep(0.15)  # a few pings went by; the proxy ignores them (v1)
    assert d.violations == []
    assert len(d.received) == 2
    msg = d.received[0]
    assert set(msg) == REQUEST_KEYS
    assert msg["request"] == {"type": "fileUpload", "uri": f"sha1://{SHA_A}", "timeoutMsec": 5000}
    # the same fields our pydantic model emits
    assert msg == dump(RequestFromClient.model_validate(msg))


async def test_request_ids_are_unguessable(proxy: Proxy, session: aiohttp.ClientSession) -> None:
    d = await proxy.daemon("res1")
    for _ in range(5):
        await proxy.post(session, "res1", client_body("res1"))
    ids = [m["requestId"] for m in d.received]
    assert len(set(ids)) == 5 and all(len(i) >= 20 for i in ids)


async def test_extra_inner_fields_are_not_sent_to_a_v1_daemon(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    d = await proxy.daemon("res1")
    body = client_body("res1")
    body["request"]["extra"] = 1
    body["alsoExtra"] = True
    status, _, _ = await proxy.post(session, "res1", body)
    assert status == 200 and d.violations == []
    body["request"]["type"] = "batchFileUpload"
    status, reply, _ = await proxy.post(session, "res1", body)
    assert status == 400 and "protocol 1" in reply["message"]


async def test_waits_are_clamped_inner_before_outer(
        make_proxy: object, session: aiohttp.ClientSession) -> None:
    proxy: Proxy = await make_proxy(max_wait_sec=3)  # type: ignore[operator]
    d = await proxy.daemon("res1")
    await proxy.post(session, "res1", client_body("res1", inner=60000, outer=120000))
    sent = d.received[0]
    assert sent["timeoutMsec"] == 3000
    assert sent["request"]["timeoutMsec"] == 2000  # outer wait minus the 1 s margin


async def test_status_codes_like_the_old_proxy(proxy: Proxy,
                                               session: aiohttp.ClientSession) -> None:
    await proxy.daemon("res1", zone="zoneA")
    status, body, _ = await proxy.post(session, "nobody", client_body("nobody"))
    assert status == 404 and body["code"] == "resource-not-found" and "nobody" in body["message"]
    status, body, _ = await proxy.post(session, "res1", b"{not json")
    assert status == 400 and body["code"] == "bad-request"
    withid = {**client_body("res1", zone="zoneA"), "requestId": "mine"}
    status, body, _ = await proxy.post(session, "res1", withid)
    assert status == 400 and "requestId" in body["message"]
    status, body, _ = await proxy.post(session, "res1", client_body("res1", zone="default"))
    assert status == 500 and body["code"] == "zone-mismatch"
    status, body, _ = await proxy.post(session, "res1", client_body("other", zone="zoneA"))
    assert status == 500 and body["code"] == "name-mismatch"
    assert proxy.counters()["waitingRequests"] == 0


async def test_timeout_is_504_and_late_reply_is_dropped(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    d = await proxy.daemon("slow", delay=0.6)
    status, body, _ = await proxy.post(session, "slow", client_body("slow", inner=100, outer=300))
    assert status == 504 and body["code"] == "timeout"
    await asyncio.sleep(0.5)  # the late reply arrives and is dropped, not fatal
    assert d.answered == 1 and not d.ws.closed  # type: ignore[union-attr]
    d.delay = 0
    status, _, _ = await proxy.post(session, "slow", client_body("slow"))
    assert status == 200
    assert proxy.counters()["waitingRequests"] == 0


async def test_daemon_error_reaches_client_in_envelope(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    d = await proxy.daemon("res1", silent=True)
    task = asyncio.create_task(proxy.post(session, "res1", client_body("res1")))
    while not d.received:
        await asyncio.sleep(0.01)
    await d.send_raw(json.dumps({"type": "responseToClient", "requestId": d.received[0]["requestId"],
                                 "response": {}, "error": "disk on fire"}))
    status, body, _ = await task
    assert status == 200 and body["error"] == "disk on fire"


async def test_aiohttp_route_serves_what_the_fast_front_hands_off(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    await proxy.daemon("res1")
    # a query string (and HTTP/1.0, chunked bodies…) goes through aiohttp's own route
    async with session.post(f"{proxy.url}/r/res1?x=1", json=client_body("res1")) as r:
        assert r.status == 200
        assert (await r.json())["type"] == "responseToClient"

    async def chunks():  # type: ignore[no-untyped-def]
        yield json.dumps(client_body("res1")).encode()

    async with session.post(f"{proxy.url}/r/res1", data=chunks()) as r:
        assert r.status == 200
    # keep-alive connection switching from fast path to aiohttp mid-way
    async with session.post(f"{proxy.url}/r/res1", json=client_body("res1")) as r:
        assert r.status == 200
    async with session.get(f"{proxy.url}/probe") as r:
        assert await r.text() == "running."


async def test_http10_keep_alive_as_ab_sends_it(proxy: Proxy) -> None:
    """ab -k speaks HTTP/1.0 with Connection: Keep-Alive: the answers keep the connection
    and say so; an HTTP/1.0 request that does not ask is answered and the connection closed."""
    await proxy.daemon("res1")
    host, port = proxy.url.removeprefix("http://").split(":")
    body = json.dumps(client_body("res1")).encode()

    def post(connection: str) -> bytes:
        return (f"POST /r/res1 HTTP/1.0\r\nContent-Type: application/json\r\n{connection}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for _ in range(2):
            writer.write(post("Connection: Keep-Alive\r\n"))
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            assert head.startswith("http/1.1 200") and "connection: keep-alive" in head
            length = int(head.split("content-length: ")[1].split("\r\n")[0])
            assert json.loads(await reader.readexactly(length))["type"] == "responseToClient"
        writer.write(post(""))
        rest = await asyncio.wait_for(reader.read(), 5)  # read() returns at the close
        assert rest.startswith(b"HTTP/1.1 200") and b"Connection: close" in rest
    finally:
        writer.close()
    assert proxy.counters()["waitingRequests"] == 0


async def test_idle_keep_alive_connection_is_closed(make_proxy: MakeProxy,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A keep-alive connection that sends no request for IDLE_SEC is closed by the sweep;
    one waiting for its answer is not, however long the daemon takes."""
    monkeypatch.setattr(fastpath, "IDLE_SEC", 0.5)
    proxy = await make_proxy()
    daemon = await proxy.daemon("res1", silent=True)
    host, port = proxy.url.removeprefix("http://").split(":")
    body = json.dumps(client_body("res1", inner=3000, outer=4000)).encode()
    post = (f"POST /r/res1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
    idle_reader, idle_writer = await asyncio.open_connection(host, int(port))
    busy_reader, busy_writer = await asyncio.open_connection(host, int(port))
    try:
        busy_writer.write(post)  # the daemon never answers: the proxy's 504 comes at 4 s
        assert await asyncio.wait_for(idle_reader.read(), 3) == b""  # closed, idle
        head = await asyncio.wait_for(busy_reader.readuntil(b"\r\n\r\n"), 6)
        assert head.startswith(b"HTTP/1.1 504")
    finally:
        idle_writer.close()
        busy_writer.close()
    assert daemon.received  # the request did reach the daemon
