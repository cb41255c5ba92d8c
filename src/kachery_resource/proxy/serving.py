"""Serve the proxy app behind the fast front (:mod:`.fastpath`): bind, print URL, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
import weakref
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import ConfigError
from ..servers import cannot_listen
from . import fastpath
from .fastpath import FrontProtocol
from .state import STATE


class _QuietBadRequests(logging.Filter):
    """aiohttp logs each request it cannot parse at ERROR with a traceback; that is the
    client's fault (it got a 400), so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


@dataclass
class RunningProxy:
    """A started proxy: its URL, and how to stop it."""

    url: str
    runner: web.AppRunner
    server: asyncio.Server
    clients: weakref.WeakSet[FrontProtocol]
    sweeper: asyncio.Task[None]

    async def stop(self) -> None:
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        self.server.close()
        for client in list(self.clients):
            client.close()
        await self.runner.cleanup()


_QUIET_BAD_REQUESTS = _QuietBadRequests()


async def start_proxy(app: web.Application, host: str, port: int) -> RunningProxy:
    """Start ``app`` on ``host:port`` (0 = free port) with the fast front; return it."""
    logging.getLogger("aiohttp.server").addFilter(_QUIET_BAD_REQUESTS)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    aiohttp_protocol = runner.server
    assert aiohttp_protocol is not None
    state = app[STATE]
    loop = asyncio.get_running_loop()
    clients: weakref.WeakSet[FrontProtocol] = weakref.WeakSet()

    def accept() -> FrontProtocol:
        protocol = FrontProtocol(state, aiohttp_protocol)
        clients.add(protocol)
        return protocol

    try:
        server = await loop.create_server(accept, host, port, reuse_address=True, backlog=1024)
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(cannot_listen(host, port, exc)) from None
    bound = server.sockets[0].getsockname()[1]
    sweeper = asyncio.create_task(_sweep_idle(clients))
    return RunningProxy(f"http://{host}:{bound}", runner, server, clients, sweeper)


async def _sweep_idle(clients: weakref.WeakSet[FrontProtocol]) -> None:
    """Close keep-alive connections idle longer than ``fastpath.IDLE_SEC`` (one sweep every
    fifth of it, rather than a timer armed and cancelled for every request)."""
    while True:
        idle_sec = fastpath.IDLE_SEC
        await asyncio.sleep(idle_sec / 5)
        now = time.monotonic()
        for client in list(clients):
            client.close_if_idle(now, idle_sec)


async def serve_proxy(app: web.Application, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM; the first line printed is the URL listened on."""
    running = await start_proxy(app, host, port)
    print(running.url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("shutting down", file=sys.stderr, flush=True)
        await running.stop()
