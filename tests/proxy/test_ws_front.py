"""The lean daemon WebSocket (ws_front) and the plain-aiohttp path give the same behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any

import aiohttp
import pytest

from kachery_resource.proxy.app import build_app
from kachery_resource.proxy.settings import ProxySettings
from kachery_resource.proxy.ws_front import accept_key

from .conftest import SECRET, Proxy, client_body
from .v1daemon import V1Daemon


def _client_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    head = (0x80 if fin else 0) | opcode
    mask = os.urandom(4)
    n = len(payload)
    size = bytes([(0x80 if masked else 0) | n]) if n < 126 else \
        bytes([(0x80 if masked else 0) | 126]) + n.to_bytes(2, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([head]) + size + (mask if masked else b"") + body


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    head = sock.recv(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(sock.recv(2), "big")
    data = b""
    while len(data) < n:
        data += sock.recv(n - len(data))
    return head[0] & 0x0F, data


def _handshake(url: str) -> socket.socket:
    host, port = url[7:].split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    assert accept_key(key).encode() in head
    assert accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 example
    return sock


def _init(name: str) -> bytes:
    return json.dumps({"type": "initialize", "resourceName": name, "zone": "default",
                       "proxySecret": SECRET}).encode()


async def test_lean_socket_framing(proxy: Proxy, session: aiohttp.ClientSession) -> None:
    def run() -> list[Any]:
        sock = _handshake(proxy.url)
        init = _init("raw")
        # a fragmented initialize, a ping in between: reassembled; ping answered
        sock.sendall(_client_frame(0x1, init[:10], fin=False) + _client_frame(0x9, b"hi")
                     + _client_frame(0x0, init[10:]))
        got = [_read_frame(sock), _read_frame(sock)]
        sock.sendall(_client_frame(0x8, struct.pack("!H", 1000)))
        got.append(_read_frame(sock))
        sock.close()
        return got

    got = await asyncio.to_thread(run)
    assert (0xA, b"hi") in got
    assert (0x1, b'{"type":"acknowledge"}') in got
    assert got[-1][0] == 0x8
    for _ in range(100):
        if proxy.counters()["connectedResources"] == 0:
            break
        await asyncio.sleep(0.02)
    assert proxy.counters()["connectedResources"] == 0


async def test_unmasked_frame_is_a_protocol_error(proxy: Proxy) -> None:
    def run() -> tuple[int, bytes]:
        sock = _handshake(proxy.url)
        sock.sendall(_client_frame(0x1, _init("raw"), masked=False))
        frame = _read_frame(sock)
        sock.close()
        return frame

    opcode, payload = await asyncio.to_thread(run)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1002


async def test_initialize_timeout(make_proxy: object) -> None:
    proxy: Proxy = await make_proxy(init_timeout_sec=0.2)  # type: ignore[operator]

    def run() -> tuple[int, bytes]:
        sock = _handshake(proxy.url)
        frame = _read_frame(sock)
        sock.close()
        return frame

    opcode, payload = await asyncio.to_thread(run)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 4008


async def test_the_lean_socket_is_used(proxy: Proxy) -> None:
    await proxy.daemon("res1")
    assert type(proxy.state.registry.conns["res1"].sock).__name__ == "DaemonWebSocket"


@pytest.fixture
async def plain_aiohttp(aiohttp_server: Any) -> Any:
    """The same app on plain aiohttp (no fast front), as other code may run it."""
    return await aiohttp_server(build_app(ProxySettings(proxy_secret=SECRET, access_log="off",
                                                        heartbeat_sec=0.3)))


async def test_plain_aiohttp_app_serves_the_same_protocol(
        plain_aiohttp: Any, session: aiohttp.ClientSession) -> None:
    url = str(plain_aiohttp.make_url("")).rstrip("/")
    d = V1Daemon(url, "res1", SECRET, statuses={"a" * 40: {"status": "completed", "size": 1}})
    assert await d.connect()
    bad = V1Daemon(url, "res1", SECRET)
    assert not await bad.connect() and bad.close_code == 4002
    silent = V1Daemon(url, "silent", SECRET)
    assert await silent.connect(autoping=False)
    try:
        async with session.post(f"{url}/r/res1", json=client_body("res1")) as r:
            body = await r.json()
            assert r.status == 200 and body["response"]["status"]["size"] == 1
        async with session.post(f"{url}/r/nobody", json=client_body("nobody")) as r:
            assert r.status == 404 and (await r.json())["code"] == "resource-not-found"
        state = plain_aiohttp.app
        from kachery_resource.proxy.state import STATE
        for _ in range(60):
            if "silent" not in state[STATE].registry.conns:
                break
            await asyncio.sleep(0.05)
        assert "silent" not in state[STATE].registry.conns  # heartbeat dropped it
        assert d.violations == []
    finally:
        for x in (d, bad, silent):
            await x.close()
