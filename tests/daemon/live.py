"""Our real proxy and gateway apps served on 127.0.0.1 from a thread of their own, for
tests that drive the synchronous CLI (``init``, ``doctor``, ``share``) against them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from kachery_resource.gateway.app import ZONES_KEY
from kachery_resource.gateway.app import build_app as build_gateway
from kachery_resource.gateway.registry import ClientRecord
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys
from kachery_resource.proxy.app import build_app as build_proxy
from kachery_resource.proxy.settings import ProxySettings

T = TypeVar("T")


class ThreadedApp:
    """An aiohttp app on its own loop and thread; ``url`` once started."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self.url = ""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> ThreadedApp:
        async def main() -> None:
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.run(main())
        return self

    def stop(self) -> None:
        self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)


@contextmanager
def live_proxy(secret: str) -> Iterator[ThreadedApp]:
    app = ThreadedApp(build_proxy(ProxySettings(proxy_secret=secret, access_log="off"))).start()
    try:
        yield app
    finally:
        app.stop()


@contextmanager
def live_gateway(root: Path) -> Iterator[ThreadedApp]:
    app = ThreadedApp(build_gateway(load_settings(storage=str(root)))).start()
    try:
        yield app
    finally:
        app.stop()


def register(gateway: ThreadedApp, keys: ClientKeys, *, upload: bool = True,
             zone: str = "default") -> None:
    """An approved client record written straight into the zone's registry."""
    registry = gateway.app[ZONES_KEY][zone].registry
    gateway.run(registry.put(ClientRecord(clientId=keys.client_id, zone=zone, label="test",
                                          ownerId="t", timestampCreated=0, approved=True,
                                          upload=upload, download=True, admin=False)))
