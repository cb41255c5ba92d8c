"""Bad input from daemons and clients: clear refusals, everyone else still served, no leaks."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest

from .conftest import Proxy, client_body


async def _raw_ws(proxy: Proxy, session: aiohttp.ClientSession,
                  first: str | bytes) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect("ws" + proxy.url[4:] + "/")
    if isinstance(first, bytes):
        await ws.send_bytes(first)
    else:
        await ws.send_str(first)
    return ws


@pytest.mark.parametrize(("first", "code"), [
    ("{not json", 4004),
    ('{"type":"initialize","resourceName":5,"zone":"default","proxySecret":"x"}', 4004),
    ('{"type":"hello"}', 4004),
    ('["initialize"]', 4004),
    (b"\x00\x01binary", 4004),
    (json.dumps({"type": "initialize", "resourceName": "r", "zone": "default",
                 "proxySecret": "wrong"}), 4001),
])
async def test_bad_initialize_is_refused_with_a_close_code(
        proxy: Proxy, session: aiohttp.ClientSession, first: str | bytes, code: int) -> None:
    good = await proxy.daemon("good")
    ws = await _raw_ws(proxy, session, first)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == code
    assert msg.extra  # a reason the daemon's log can show
    status, _, _ = await proxy.post(session, "good", client_body("good"))
    assert status == 200 and good.violations == []
    assert proxy.counters()["connectedResources"] == 1


async def test_huge_frame_closes_only_that_socket(make_proxy: object,
                                                  session: aiohttp.ClientSession) -> None:
    proxy: Proxy = await make_proxy(max_frame_bytes=4096)  # type: ignore[operator]
    bad = await proxy.daemon("bad")
    good = await proxy.daemon("good")
    await bad.send_raw("x" * 10000)
    await bad.wait_closed()
    assert bad.close_code == 1009  # message too big
    assert (await proxy.post(session, "good", client_body("good")))[0] == 200
    assert (await proxy.post(session, "bad", client_body("bad")))[0] == 404
    assert good.violations == []


async def test_garbage_and_unknown_messages_after_initialize_are_ignored(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    d = await proxy.daemon("res1")
    for junk in ["{oops", '{"type":"weird"}', "[]", '{"type":"responseToClient"}',
                 '{"type":"responseToClient","requestId":"nope","response":{}}',
                 '{"type":"responseToClient","requestId":7}']:
        await d.send_raw(junk)
    status, body, _ = await proxy.post(session, "res1", client_body("res1"))
    assert status == 200 and body["response"]["status"]["status"] == "not-found"
    metrics = await (await session.get(f"{proxy.url}/metrics")).text()
    assert 'kachery_proxy_daemon_events_total{event="dropped-reply"} 1.0' in metrics
    assert 'kachery_proxy_daemon_events_total{event="invalid-message"} 5.0' in metrics


async def test_bad_client_bodies(proxy: Proxy, session: aiohttp.ClientSession) -> None:
    await proxy.daemon("res1")
    good = client_body("res1")
    cases = [b"", b"[]", b'"str"', json.dumps({**good, "type": "other"}).encode(),
             json.dumps({**good, "timeoutMsec": "10"}).encode(),
             json.dumps({**good, "timeoutMsec": True}).encode(),
             json.dumps({**good, "timeoutMsec": -1}).encode(),
             json.dumps({**good, "zone": ""}).encode(),
             json.dumps({**good, "request": "x"}).encode(),
             json.dumps({**good, "request": {"type": "fileUpload", "uri": 5,
                                             "timeoutMsec": 1}}).encode(),
             json.dumps({**good, "request": {"type": "fileUpload", "uri": "sha1://x",
                                             "timeoutMsec": "1"}}).encode()]
    for raw in cases:
        status, body, _ = await proxy.post(session, "res1", raw)
        assert status == 400, raw
        assert set(body) == {"message", "code"} and body["message"].startswith("invalid request")
    assert proxy.counters()["waitingRequests"] == 0


async def test_huge_body_is_413_on_both_paths(make_proxy: object,
                                              session: aiohttp.ClientSession) -> None:
    proxy: Proxy = await make_proxy(max_body_bytes=2048)  # type: ignore[operator]
    await proxy.daemon("res1")
    body = client_body("res1")
    body["pad"] = "x" * 5000
    status, reply, _ = await proxy.post(session, "res1", body)
    assert status == 413 and reply["code"] == "body-too-large"
    assert (await proxy.post(session, "res1", client_body("res1")))[0] == 200


async def test_in_flight_limit_is_429_with_retry_after(
        make_proxy: object, session: aiohttp.ClientSession) -> None:
    proxy: Proxy = await make_proxy(max_inflight_per_resource=2)  # type: ignore[operator]
    d = await proxy.daemon("res1", silent=True)
    waiting = [asyncio.create_task(proxy.post(session, "res1", client_body("res1", outer=800)))
               for _ in range(2)]
    while len(d.received) < 2:
        await asyncio.sleep(0.01)
    status, body, response = await proxy.post(session, "res1", client_body("res1"))
    assert status == 429 and response.headers["Retry-After"] == "1"
    assert body["code"] == "too-many-requests"
    assert [s for s, _, _ in await asyncio.gather(*waiting)] == [504, 504]
    assert proxy.counters()["waitingRequests"] == 0


async def test_connections_per_ip_limit(make_proxy: object,
                                        session: aiohttp.ClientSession) -> None:
    proxy: Proxy = await make_proxy(max_connections_per_ip=2)  # type: ignore[operator]
    await proxy.daemon("res1", silent=True)  # holds one slot while connected
    waiting = asyncio.create_task(proxy.post(session, "res1", client_body("res1", outer=500)))
    await asyncio.sleep(0.1)
    status, body, _ = await proxy.post(session, "res1", client_body("res1"))
    assert status == 429 and body["code"] == "too-many-connections"
    assert (await waiting)[0] == 504
    assert proxy.counters()["openConnections"] == 1  # just the daemon


async def test_client_vanishing_mid_wait_frees_its_slot_at_once(proxy: Proxy) -> None:
    d = await proxy.daemon("res1", silent=True)
    host, port = proxy.url[7:].split(":")
    raw = json.dumps(client_body("res1", outer=20000)).encode()
    for _ in range(3):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"POST /r/res1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(raw) + raw)
        n = len(d.received)
        while len(d.received) == n:
            await asyncio.sleep(0.01)
        assert proxy.counters()["waitingRequests"] == 1
        sock.close()
        for _ in range(100):
            if proxy.counters()["waitingRequests"] == 0:
                break
            await asyncio.sleep(0.01)
        assert proxy.counters()["waitingRequests"] == 0
        assert proxy.counters()["openClientRequests"] == 0


async def test_counters_return_to_zero(proxy: Proxy, session: aiohttp.ClientSession) -> None:
    daemons = [await proxy.daemon(f"r{i}") for i in range(3)]
    await asyncio.gather(*(proxy.post(session, f"r{i % 3}", client_body(f"r{i % 3}"))
                           for i in range(30)))
    for d in daemons:
        await d.close()
    for _ in range(100):
        if proxy.counters()["connectedResources"] == 0:
            break
        await asyncio.sleep(0.02)
    await session.close()
    await asyncio.sleep(0.05)
    assert proxy.counters() == {"connectedResources": 0, "waitingRequests": 0,
                                "openClientRequests": 0, "remoteRelays": 0,
                                "openConnections": 0}


async def test_unknown_routes_and_methods_answer_the_json_shape(
        proxy: Proxy, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{proxy.url}/nope") as r:
        assert r.status == 404 and set(await r.json()) == {"message", "code"}
    async with session.get(f"{proxy.url}/r/x") as r:
        assert r.status == 405 and (await r.json())["code"] == "method-not-allowed"
