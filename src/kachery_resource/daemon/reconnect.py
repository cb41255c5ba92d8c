"""How the daemon gets back to its proxy: the delays between attempts, which failures mean
that nothing listens at the proxy's address, and the probe that ends a wait as soon as a
restarted proxy answers again."""

from __future__ import annotations

import asyncio
import errno
import random
import time

import aiohttp

from ..env_proxy import proxy_for
from ..errors import connection_problem

PROBE_INTERVAL_SEC = 0.5  # while the proxy is away: how often to ask whether it answers again


class Backoff:
    """Exponential reconnect delays with jitter: about 1, 2, 4 … 30 s."""

    def __init__(self, first: float = 1.0, maximum: float = 30.0) -> None:
        self.first = first
        self.maximum = maximum
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.75, 1.0)


async def wait_for_listener(session: aiohttp.ClientSession, proxy_url: str, delay: float) -> None:
    """Sleep ``delay``, but come back soon after the proxy answers HTTP again: a restarted
    proxy gets its daemons back within about a second, also behind a relay or load
    balancer whose port stays open meanwhile; a proxy that answers and refuses still
    sees the full backoff."""
    url = f"{proxy_url}/api/info"
    deadline = time.monotonic() + delay
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(PROBE_INTERVAL_SEC, left))
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2),
                                   headers={"Connection": "close"}, proxy=proxy_for(url)):
                pass  # any HTTP answer: something serves there again
        except (aiohttp.ClientError, OSError, TimeoutError):
            continue
        await asyncio.sleep(random.uniform(0, PROBE_INTERVAL_SEC))  # spread a herd
        return


def is_refused(exc: BaseException) -> bool:
    """Answer whether nothing serves at the proxy's address (it is down or restarting): the
    port refuses, or a relay in front of it drops the connection before any answer."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    return isinstance(exc, ConnectionRefusedError | ConnectionResetError
                      | aiohttp.ServerDisconnectedError) or (
        isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET)


def describe_failure(exc: BaseException) -> str:
    """A connection failure in words for the log."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the proxy refused the WebSocket ({exc.status} {exc.message})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {connection_problem(exc)}"
    if isinstance(exc, TimeoutError):
        return "the proxy did not answer in time"
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return f"the connection failed: {connection_problem(exc)}"
    return str(exc) or type(exc).__name__
