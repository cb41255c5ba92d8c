"""Fixtures for proxy tests: an in-process proxy (fast front + aiohttp) on a free port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from kachery_resource.proxy.app import build_app
from kachery_resource.proxy.serving import RunningProxy, start_proxy
from kachery_resource.proxy.settings import ProxySettings
from kachery_resource.proxy.state import STATE, ProxyState

from .v1daemon import V1Daemon

SECRET = "shared-test-secret"
SHA_A = "a" * 40
SHA_B = "b" * 40


def client_body(name: str, sha1: str = SHA_A, *, zone: str = "default", inner: float = 5000,
                outer: float = 10000) -> dict[str, Any]:
    """The exact body kachery-cloud 0.4.10 posts."""
    return {"type": "requestFromClient", "resourceName": name, "zone": zone,
            "request": {"type": "fileUpload", "uri": f"sha1://{sha1}", "timeoutMsec": inner},
            "timeoutMsec": outer}


@dataclass
class Proxy:
    url: str
    running: RunningProxy
    daemons: list[V1Daemon]

    @property
    def state(self) -> ProxyState:
        return self.running.runner.app[STATE]

    def counters(self) -> dict[str, int]:
        return self.state.counters()

    async def daemon(self, name: str, secret: str = SECRET, **kw: Any) -> V1Daemon:
        """Connect a v1 daemon and assert it was acknowledged."""
        d = V1Daemon(self.url, name, secret, **kw)
        self.daemons.append(d)
        assert await d.connect(), f"refused: {d.close_code} {d.close_reason}"
        return d

    async def refused(self, name: str, secret: str = SECRET, **kw: Any) -> V1Daemon:
        d = V1Daemon(self.url, name, secret, **kw)
        self.daemons.append(d)
        assert not await d.connect()
        return d

    async def post(self, session: aiohttp.ClientSession, name: str,
                   body: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        async with session.post(f"{self.url}/r/{name}", data=data,
                                headers={"Content-Type": "application/json"}) as r:
            text = await r.text()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return r.status, parsed, r


MakeProxy = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def make_proxy() -> AsyncIterator[MakeProxy]:
    started: list[Proxy] = []

    async def make(**settings: Any) -> Proxy:
        values: dict[str, Any] = {"port": 0, "proxy_secret": SECRET, "access_log": "off"}
        values.update(settings)
        app = build_app(ProxySettings(**values))
        running = await start_proxy(app, "127.0.0.1", 0)
        proxy = Proxy(running.url, running, [])
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        for d in proxy.daemons:
            await d.close()
        await proxy.running.stop()


@pytest.fixture
async def proxy(make_proxy: MakeProxy) -> Proxy:
    return await make_proxy()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s
