"""Run an aiohttp app as a command-line server: bind, print the URL first, stop cleanly."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .errors import ConfigError

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
    access_log_class: type[AbstractAccessLogger] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM. The first line printed is the URL listened on.

    ``access_log_class`` is told of every request once its response was sent."""
    if access_log_class is None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
    else:
        runner = web.AppRunner(app, handle_signals=False, access_log_class=access_log_class)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(cannot_listen(host, port, exc)) from None
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


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    """What to tell a user whose server could not bind ``host:port``."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: {host!r} is not a name or address of this machine ({exc.strerror}); check --host"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: the port is already in use (another server, or an earlier run still "
                "stopping); choose another with --port, or --port 0 for a free one")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine; check --host"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); choose another --port"
    return f"{where}: {exc.strerror or exc}"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held together while chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
