"""A real gateway (our app, over a local directory or SeaweedFS) served from a thread, so
the synchronous reader can call it; a middleware records every request it answers."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from kachery_resource.client import ClientSettings
from kachery_resource.gateway import keys
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.gateway.storage import LocalStorage

from ..servers import S3Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Served:
    """A gateway running in a background thread, and what it was asked."""

    app: web.Application
    url: str = ""
    #: (method, path, Range header) of every request, in arrival order
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    s3: S3Server | None = None

    def ranges(self) -> list[str]:
        """The Range headers of the object GETs (local backend: the gateway serves them)."""
        return [r for m, p, r in self.requests if m == "GET" and p.startswith("/files/") and r]

    def put(self, data: bytes) -> str:
        """Place ``data`` in the zone's bucket as verified content; returns its sha1."""
        sha1 = hashlib.sha1(data).hexdigest()
        zone = self.app[ZONES_KEY]["default"]
        key = keys.content_key(zone.prefix, sha1)
        if isinstance(zone.storage, LocalStorage):
            path = zone.storage.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            assert self.s3 is not None
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=key, Body=data)
        return sha1

    def object_path(self, sha1: str) -> Path:
        zone = self.app[ZONES_KEY]["default"]
        assert isinstance(zone.storage, LocalStorage)
        return zone.storage.path(keys.content_key(zone.prefix, sha1))

    def settings(self, kc_dir: Path) -> ClientSettings:
        return ClientSettings(store_dir=kc_dir, gateway_url=self.url, zone="default",
                              resource_url=None, keys=None)


def serve(app: web.Application, served: Served) -> Iterator[Served]:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        served.requests.append((request.method, request.path, request.headers.get("Range")))
        return await handler(request)

    app.middlewares.insert(0, record)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    served.url = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield served
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def gateway_ttl() -> int:
    """Lifetime of the signed download URLs (a test lowers it to see them expire)."""
    return 3600


@pytest.fixture
def local_zone(tmp_path: Path, gateway_ttl: int) -> Iterator[Served]:
    settings = load_settings(storage=str(tmp_path / "storage"),
                             overrides={"download_url_ttl_sec": gateway_ttl})
    app = build_app(settings)
    yield from serve(app, Served(app))


@pytest.fixture
def s3_zone(s3_server: S3Server, tmp_path: Path, gateway_ttl: int,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    for name, value in {**s3_server.env(), "AWS_ENDPOINT_URL": s3_server.endpoint}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(storage=f"s3://{s3_server.bucket}/{tmp_path.name}",
                             overrides={"download_url_ttl_sec": gateway_ttl})
    app = build_app(settings)
    yield from serve(app, Served(app, s3=s3_server))


@pytest.fixture(params=["local", "s3"])
def zone(request: pytest.FixtureRequest) -> Served:
    """The same tests over both backends."""
    served: Served = request.getfixturevalue(f"{request.param}_zone")
    return served


def blob(size: int, seed: int = 1) -> bytes:
    """``size`` bytes that differ at every offset (so a misplaced range is caught)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])
