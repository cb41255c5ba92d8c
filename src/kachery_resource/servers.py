"""Run an aiohttp app as a command-line server: bind, print the URL first, stop cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop
from aiohttp import web

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a server's or the daemon's main coroutine on uvloop (a faster event loop)."""
    return uvloop.run(main)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_started: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM. The first line printed is the URL listened on."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    url = f"http://{host}:{bound_port}"
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if on_started is not None:
            await on_started(url)
        await stop.wait()
    finally:
        print("shutting down", file=sys.stderr, flush=True)
        await runner.cleanup()
