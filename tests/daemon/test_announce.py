"""The daemon's announcer against an in-process gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.daemon.announce import Announcer
from kachery_resource.daemon.uploads.gateway import DaemonGateway
from kachery_resource.gateway.announcements import all_announcements
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.registry import ClientRecord, now_ms
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

Server = Callable[..., Awaitable[TestServer]]
URL = "http://127.0.0.1:3030/r/lab"


async def gateway(tmp_path: Path, aiohttp_server: Server, keys: ClientKeys, upload: bool) -> TestServer:
    app = build_app(load_settings(storage=str(tmp_path / "storage"),
                                  overrides={"announcementTtlSec": 1.5}))
    server = await aiohttp_server(app)
    await app[ZONES_KEY]["default"].registry.put(ClientRecord(
        clientId=keys.client_id, zone="default", timestampCreated=now_ms(), approved=True,
        upload=upload))
    return server


async def test_announces_only_while_connected_and_renews(tmp_path: Path, aiohttp_server: Server) -> None:
    keys = ClientKeys.generate()
    server = await gateway(tmp_path, aiohttp_server, keys, upload=True)
    zone = server.app[ZONES_KEY]["default"]
    connected = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        announcer = Announcer(DaemonGateway(session, str(server.make_url("")), keys, "default"), URL,
                              connected)
        announcer.start()
        await asyncio.sleep(0.3)
        assert announcer.announced == 0 and await all_announcements(zone) == []
        connected.set()
        await asyncio.sleep(1.4)  # renewSec = 0.5: the first and two renewals
        assert announcer.announced >= 3
        [entry] = await all_announcements(zone)
        assert entry.resourceUrl == URL and entry.clientId == keys.client_id and entry.is_live()
        connected.clear()
        await asyncio.sleep(2.2)  # no renewal while disconnected: it expires
        [entry] = await all_announcements(zone)
        assert not entry.is_live()
        await announcer.stop()  # withdrawn: gone at once
        assert await all_announcements(zone) == []


async def test_a_refusal_ends_announcing(tmp_path: Path, aiohttp_server: Server,
                                         caplog: pytest.LogCaptureFixture) -> None:
    keys = ClientKeys.generate()
    server = await gateway(tmp_path, aiohttp_server, keys, upload=False)
    connected = asyncio.Event()
    connected.set()
    async with aiohttp.ClientSession() as session:
        announcer = Announcer(DaemonGateway(session, str(server.make_url("")), keys, "default"), URL,
                              connected)
        with caplog.at_level(logging.INFO, logger="kachery_resource"):
            await asyncio.wait_for(announcer.run(), 10)
    assert announcer.announced == 0
    assert "upload_not_allowed" in caplog.text and "refused to list this resource" in caplog.text


async def test_a_gateway_without_announcements_is_left_alone(aiohttp_server: Server) -> None:
    calls: list[str] = []

    async def info(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"requestTypes": ["findFile"]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", info)
    server = await aiohttp_server(app)
    connected = asyncio.Event()
    connected.set()
    async with aiohttp.ClientSession() as session:
        client = DaemonGateway(session, str(server.make_url("")), ClientKeys.generate(), "default")
        await asyncio.wait_for(Announcer(client, URL, connected).run(), 10)
    assert calls == ["/api/info"]
