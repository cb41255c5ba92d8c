"""Property-based fuzzing of every WebSocket message type a daemon sends to the proxy.

On an in-process proxy (the production fast front): generated ``initialize`` messages
(every field drawn from valid values, near misses and wrong types) each on a fresh
socket, which is acknowledged or closed with one of the documented codes (4001 not
authorized, 4002 name taken, 4003 zone, 4004 protocol); and, on one initialized
socket, generated ``responseToClient``, ``ping``, ``pong``, ``initialize``, unknown and
non-JSON messages, which never close it (but a second initialize: 4004) and never
answer a client with something the daemon did not send for its request. Afterwards a
well-behaved daemon is served and no request is left waiting.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..proxy.conftest import SECRET, MakeProxy, client_body
from .harness import budget

pytestmark = pytest.mark.timeout(300)

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                 st.lists(st.integers(), max_size=3), st.just({}))


def field(*valid: Any) -> st.SearchStrategy[Any]:
    return st.integers(0, 3).flatmap(lambda k: st.sampled_from(valid) if k else JUNK)


MISSING = object()


def with_missing(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    drawn = {k: st.integers(0, 9).flatmap(lambda n, v=v: v if n else st.just(MISSING))
             for k, v in fields.items()}
    return st.fixed_dictionaries(drawn).map(
        lambda d: {k: v for k, v in d.items() if v is not MISSING})


INITIALIZE = with_missing({
    "type": field("initialize"), "resourceName": field("fz-a", "fz-b", "", "x" * 201),
    "zone": field("default", "other", ""), "proxySecret": field(SECRET, "wrong", "", "x" * 5000),
    "protocolVersion": field(1, 2, 99, None)})
AFTER = st.one_of(
    with_missing({"type": field("responseToClient"), "requestId": field("nope", ""),
                  "response": st.one_of(JUNK, st.just({"type": "fileUpload"})),
                  "error": field("boom", None)}),
    with_missing({"type": field("ping", "pong", "initialize", "requestFromClient", "weird")}),
    st.text(max_size=40))


async def test_initialize_messages(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy()
    loop = asyncio.get_running_loop()
    codes: dict[int | str, int] = {}
    session = aiohttp.ClientSession()

    async def one_socket(message: dict[str, Any]) -> None:
        async with session.ws_connect("ws" + proxy.url[4:] + "/") as ws:
            await ws.send_str(json.dumps(message))
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.TEXT:
                assert json.loads(msg.data)["type"] == "acknowledge", msg.data
                code: int | str = "acknowledged"
            else:
                code = ws.close_code or 0
                assert code in (4001, 4002, 4003, 4004), (message, code, msg)
            codes[code] = codes.get(code, 0) + 1

    @settings(max_examples=budget(600), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(message=INITIALIZE)
    def one(message: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(one_socket(message), loop).result(20)

    try:
        await asyncio.to_thread(one)
    finally:
        await session.close()
    assert codes.get("acknowledged", 0) > 0 and codes.get(4001, 0) > 0 and codes.get(4004, 0) > 0
    await served_afterwards(proxy)


async def test_messages_after_initialize(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy()
    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession()
    ws = await session.ws_connect("ws" + proxy.url[4:] + "/")
    await ws.send_str(json.dumps({"type": "initialize", "resourceName": "fz-after",
                                  "zone": "default", "proxySecret": SECRET}))
    assert json.loads((await ws.receive(timeout=10)).data) == {"type": "acknowledge"}
    closed: list[Any] = []

    async def send(message: Any) -> None:
        nonlocal ws
        await ws.send_str(message if isinstance(message, str) else json.dumps(message))
        if isinstance(message, dict) and message.get("type") == "initialize":
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) \
                and ws.close_code == 4004, (message, msg)
            closed.append(message)
            await ws.close()
            ws = await session.ws_connect("ws" + proxy.url[4:] + "/")
            await ws.send_str(json.dumps({"type": "initialize", "resourceName": "fz-after",
                                          "zone": "default", "proxySecret": SECRET}))
            assert json.loads((await ws.receive(timeout=10)).data) == {"type": "acknowledge"}

    @settings(max_examples=budget(600), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(message=AFTER)
    def one(message: Any) -> None:
        asyncio.run_coroutine_threadsafe(send(message), loop).result(20)

    try:
        await asyncio.to_thread(one)
        # the socket is still open and still gets requests
        pending = asyncio.create_task(session.post(f"{proxy.url}/r/fz-after",
                                                   json=client_body("fz-after")))
        request = json.loads((await ws.receive(timeout=10)).data)
        assert request["type"] == "requestFromClient"
        await ws.send_str(json.dumps({"type": "responseToClient",
                                      "requestId": request["requestId"],
                                      "response": {"type": "fileUpload",
                                                   "status": {"status": "not-found"}}}))
        r = await pending
        assert r.status == 200 and (await r.json())["response"]["status"]["status"] == "not-found"
    finally:
        await ws.close()
        await session.close()
    await served_afterwards(proxy)


async def served_afterwards(proxy: Any) -> None:
    d = await proxy.daemon("fz-good", statuses={"a" * 40: {"status": "completed", "size": 1}})
    async with aiohttp.ClientSession() as s, s.post(f"{proxy.url}/r/fz-good",
                                                    json=client_body("fz-good")) as r:
        assert r.status == 200, await r.text()
    assert d.violations == []
    for _ in range(100):
        counters = proxy.counters()
        if counters["waitingRequests"] == 0:
            break
        await asyncio.sleep(0.05)
    assert proxy.counters()["waitingRequests"] == 0
